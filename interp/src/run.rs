//! The evaluator: one function per op family, called in topological order,
//! each reading its inputs from the value table and returning its output.

use crate::{Error, Feed, Mode, Params, Targets, Values, dropout_seed};
use kiln_compiler::ir::{
    self, Activation, Anchor, Conv2d, ConvTranspose2d, Epilogue, Fused, GradOp, Graph, LossKind,
    NodeId, Op, Shape, UpsampleMode,
};
use kiln_runtime::activation::Activation as RtAct;
use kiln_runtime::kernels::activation::ChannelShape;
use kiln_runtime::kernels::conv::Conv2dGeometry;
use kiln_runtime::kernels::gemm::Gemm;
use kiln_runtime::kernels::loss::Reduction as RtReduction;
use kiln_runtime::kernels::lrn::Lrn;
use kiln_runtime::kernels::pool::Pool2d as RtPool;
use kiln_runtime::kernels::softmax::AxisShape;
use kiln_runtime::kernels::upsample::{PixelShuffle, Upsample};
use kiln_runtime::reference::{self as rf, Real};
use std::collections::HashMap;

/// Runs `graph` on `feed`, reading parameters (and, in training mode,
/// updating batch norm's running statistics) in `params`. Returns every
/// value computed; the loss head (and loss gradients) only with targets.
pub fn run<T: Real>(
    graph: &Graph,
    feed: &Feed<T>,
    params: &mut Params<T>,
) -> Result<Values<T>, Error> {
    let order = graph
        .topo_order()
        .ok_or_else(|| Error::new(&graph.name, "the graph has a cycle"))?;
    if let Some(id) = order
        .iter()
        .find(|&&id| graph.shape(graph.node(id).output).is_none())
    {
        return Err(Error::new(
            graph.name_of(*id),
            "the value has no shape; run shape inference first",
        ));
    }
    let mut cx = Cx {
        graph,
        feed,
        params,
        values: HashMap::new(),
    };
    let mut loss = None;
    for id in order {
        let node = graph.node(id);
        let needs_targets = matches!(node.op, Op::Loss(_) | Op::Grad(GradOp::Loss(_)));
        if needs_targets && feed.targets.is_none() {
            continue;
        }
        if node.inputs.iter().any(|v| !cx.values.contains_key(v)) {
            // An input was skipped (no targets): so is this node.
            continue;
        }
        let out = cx.eval(id)?;
        let want = cx.len_of(id)?;
        if out.len() != want {
            return Err(cx.err(
                id,
                format!("internal: produced {} values, expected {want}", out.len()),
            ));
        }
        if let Op::Loss(_) = node.op {
            loss = out.first().copied();
        }
        cx.values.insert(node.output, out);
    }
    Ok(Values {
        values: cx.values,
        outputs: graph
            .outputs()
            .iter()
            .map(|p| (p.name.clone(), p.value))
            .collect(),
        loss,
    })
}

struct Cx<'a, T> {
    graph: &'a Graph,
    feed: &'a Feed<T>,
    params: &'a mut Params<T>,
    values: HashMap<ir::ValueId, Vec<T>>,
}

fn to_rt_act(a: Activation) -> RtAct {
    match a {
        Activation::Relu => RtAct::Relu,
        Activation::LeakyRelu { alpha } => RtAct::LeakyRelu(alpha as f32),
        Activation::Elu { alpha } => RtAct::Elu(alpha as f32),
        Activation::Selu => RtAct::Selu,
        Activation::Sigmoid => RtAct::Sigmoid,
        Activation::Tanh => RtAct::Tanh,
        Activation::Swish => RtAct::Swish,
        Activation::Step => RtAct::Step,
    }
}

fn reduction(r: ir::Reduction) -> RtReduction {
    match r {
        ir::Reduction::Mean => RtReduction::Mean,
        ir::Reduction::Sum => RtReduction::Sum,
    }
}

/// An example shape as `[n, c, spatial]` (channel first).
fn ncs(n: usize, s: &Shape) -> ChannelShape {
    let d = s.dims();
    ChannelShape {
        n,
        c: d.first().copied().unwrap_or(1),
        spatial: d.iter().skip(1).product(),
    }
}

fn lrn(size: usize, alpha: f64, beta: f64, k: f64) -> Lrn {
    Lrn {
        size,
        alpha: alpha as f32,
        beta: beta as f32,
        k: k as f32,
    }
}

fn chw(s: &Shape) -> [usize; 3] {
    match s.dims() {
        [c, h, w] => [*c, *h, *w],
        _ => [0, 0, 0],
    }
}

fn conv_geometry(c: &Conv2d, n: usize, input: &Shape) -> Conv2dGeometry {
    let [ch, h, w] = chw(input);
    let pads = c.padding.resolve([h, w], c.kernel, c.stride, c.dilation);
    Conv2dGeometry {
        n,
        c_in: ch,
        h,
        w,
        c_out: c.out,
        kh: c.kernel[0],
        kw: c.kernel[1],
        stride: c.stride,
        pad: [pads[0][0], pads[1][0], pads[0][1], pads[1][1]],
        dilation: c.dilation,
        groups: c.groups,
    }
}

/// The geometry of the convolution a transposed convolution transposes:
/// its input is the transposed convolution's output.
fn conv_t_geometry(c: &ConvTranspose2d, n: usize, input: &Shape, output: &Shape) -> Conv2dGeometry {
    let [ci, _, _] = chw(input);
    let [co, oh, ow] = chw(output);
    Conv2dGeometry {
        n,
        c_in: co,
        h: oh,
        w: ow,
        c_out: ci,
        kh: c.kernel[0],
        kw: c.kernel[1],
        stride: c.stride,
        pad: [c.padding[0], c.padding[1], c.padding[0], c.padding[1]],
        dilation: c.dilation,
        groups: c.groups,
    }
}

fn pool_geometry(p: &ir::Pool2d, n: usize, input: &Shape) -> RtPool {
    let [c, h, w] = chw(input);
    RtPool {
        n,
        c,
        h,
        w,
        kh: p.kernel[0],
        kw: p.kernel[1],
        sh: p.stride[0],
        sw: p.stride[1],
        ph: p.padding[0],
        pw: p.padding[1],
    }
}

fn axis_shape(n: usize, s: &Shape, axis: usize) -> AxisShape {
    let d = s.dims();
    AxisShape {
        outer: n * d[..axis].iter().product::<usize>(),
        dim: d[axis],
        inner: d[axis + 1..].iter().product(),
    }
}

impl<T: Real> Cx<'_, T> {
    fn err(&self, id: NodeId, msg: impl Into<String>) -> Error {
        Error::new(
            format!(
                "{} ({})",
                self.graph.name_of(id),
                self.graph.node(id).op.name()
            ),
            msg,
        )
    }

    fn shape(&self, v: ir::ValueId) -> Shape {
        self.graph.shape(v).cloned().unwrap_or_default()
    }

    /// How many values node `id`'s output holds.
    fn len_of(&self, id: NodeId) -> Result<usize, Error> {
        let node = self.graph.node(id);
        let s = self
            .graph
            .shape(node.output)
            .ok_or_else(|| self.err(id, "the value has no shape; run shape inference first"))?;
        let per = s.numel() as usize;
        Ok(match node.op {
            Op::Loss(_) => 1,
            _ if node.op.is_batched() => self.feed.batch * per,
            _ => per,
        })
    }

    fn input(&self, id: NodeId, slot: usize) -> Result<&[T], Error> {
        let v = self.graph.node(id).inputs.get(slot).copied();
        v.and_then(|v| self.values.get(&v))
            .map(Vec::as_slice)
            .ok_or_else(|| self.err(id, format!("input {slot} was not computed")))
    }

    fn param(&self, id: NodeId, name: &str, len: usize) -> Result<&[T], Error> {
        match self.params.get(name) {
            None => Err(Error::new(
                name,
                format!("parameter of `{}` is missing", self.graph.name_of(id)),
            )),
            Some(p) if p.len() != len => Err(Error::new(
                name,
                format!("parameter has {} values, expected {len}", p.len()),
            )),
            Some(p) => Ok(p),
        }
    }

    fn param_of(&self, id: NodeId, i: usize) -> Result<&[T], Error> {
        let p = self
            .graph
            .node(id)
            .params
            .get(i)
            .ok_or_else(|| self.err(id, format!("has no parameter {i}")))?;
        self.param(id, &p.name, p.numel() as usize)
    }

    /// The parameter named `name`, with the length the graph gives it.
    fn named_param(&self, id: NodeId, name: &str) -> Result<&[T], Error> {
        let len = self
            .graph
            .node_ids()
            .iter()
            .flat_map(|&n| self.graph.node(n).params.iter())
            .find(|p| p.name == name)
            .map(|p| p.numel() as usize)
            .ok_or_else(|| self.err(id, format!("reads parameter `{name}`, which no layer has")))?;
        self.param(id, name, len)
    }

    fn in_shape(&self, id: NodeId, slot: usize) -> Shape {
        self.shape(self.graph.node(id).inputs[slot])
    }

    fn out_shape(&self, id: NodeId) -> Shape {
        self.shape(self.graph.node(id).output)
    }

    fn eval(&mut self, id: NodeId) -> Result<Vec<T>, Error> {
        let node = self.graph.node(id);
        let n = self.feed.batch;
        match &node.op {
            Op::Input { index } => {
                let port = self
                    .graph
                    .inputs()
                    .get(*index)
                    .ok_or_else(|| self.err(id, "is not a graph input"))?;
                let data = self
                    .feed
                    .inputs
                    .get(&port.name)
                    .ok_or_else(|| Error::new(&port.name, "input is not in the feed"))?;
                let want = n * self.shape(port.value).numel() as usize;
                if data.len() != want {
                    return Err(Error::new(
                        &port.name,
                        format!(
                            "input has {} values, expected {want} (batch {n} × {})",
                            data.len(),
                            self.shape(port.value)
                        ),
                    ));
                }
                Ok(data.clone())
            }
            Op::Conv2d(c) => self.conv2d(id, c),
            Op::ConvTranspose2d(c) => {
                let g = conv_t_geometry(c, n, &self.in_shape(id, 0), &self.out_shape(id));
                self.check_conv_t(id, &g)?;
                let w = self.param_of(id, 0)?;
                let b = if c.bias {
                    Some(self.param_of(id, 1)?)
                } else {
                    None
                };
                Ok(rf::conv::conv_transpose2d_forward(
                    &g,
                    self.input(id, 0)?,
                    w,
                    b,
                ))
            }
            Op::Linear { out, bias, .. } => self.linear(id, *out, *bias),
            Op::Flatten | Op::Reshape { .. } => Ok(self.input(id, 0)?.to_vec()),
            Op::MaxPool2d(p) if p.ceil => self.max_pool_ceil(id, p),
            Op::MaxPool2d(p) => {
                let g = pool_geometry(p, n, &self.in_shape(id, 0));
                let mut y = vec![T::ZERO; g.output_len()];
                let mut arg = vec![0u32; g.output_len()];
                rf::pool::max_pool2d_forward(self.input(id, 0)?, &mut y, &mut arg, g);
                Ok(y)
            }
            Op::AvgPool2d { pool, count_pad } => {
                let g = pool_geometry(pool, n, &self.in_shape(id, 0));
                let mut y = vec![T::ZERO; g.output_len()];
                rf::pool::avg_pool2d_forward(self.input(id, 0)?, &mut y, g, *count_pad);
                Ok(y)
            }
            Op::GlobalAvgPool => {
                let [c, h, w] = chw(&self.in_shape(id, 0));
                let mut y = vec![T::ZERO; n * c];
                rf::pool::global_avg_pool_forward(self.input(id, 0)?, &mut y, n * c, h * w);
                Ok(y)
            }
            Op::Upsample { scale, mode } => {
                let [c, h, w] = chw(&self.in_shape(id, 0));
                let g = Upsample {
                    planes: n * c,
                    h,
                    w,
                    scale: *scale,
                };
                let mut y = vec![T::ZERO; g.output_len()];
                match mode {
                    UpsampleMode::Nearest => {
                        rf::upsample::upsample_nearest_forward(self.input(id, 0)?, &mut y, g)
                    }
                    UpsampleMode::Zeros => {
                        rf::upsample::upsample_zeros_forward(self.input(id, 0)?, &mut y, g)
                    }
                }
                Ok(y)
            }
            Op::PixelShuffle { r } => {
                let [c, h, w] = chw(&self.in_shape(id, 0));
                let g = PixelShuffle {
                    n,
                    c: c / (r * r),
                    h,
                    w,
                    r: *r,
                };
                let mut y = vec![T::ZERO; self.input(id, 0)?.len()];
                rf::upsample::pixel_shuffle(self.input(id, 0)?, &mut y, g);
                Ok(y)
            }
            Op::Activation(a) => {
                let x = self.input(id, 0)?;
                let mut y = vec![T::ZERO; x.len()];
                rf::activation::activation_forward(to_rt_act(*a), x, &mut y);
                Ok(y)
            }
            Op::Prelu { .. } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let x = self.input(id, 0)?;
                let mut y = vec![T::ZERO; x.len()];
                let shape = g;
                rf::activation::prelu_forward(x, &mut y, shape, self.param_of(id, 0)?);
                Ok(y)
            }
            Op::Maxout { k } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let shape = g;
                let mut y = vec![T::ZERO; shape.len() / k];
                let mut arg = vec![0u32; y.len()];
                rf::activation::maxout_forward(self.input(id, 0)?, &mut y, &mut arg, shape, *k);
                Ok(y)
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let s = axis_shape(n, &self.in_shape(id, 0), *axis);
                let x = self.input(id, 0)?;
                let mut y = vec![T::ZERO; x.len()];
                if let Op::Softmax { .. } = node.op {
                    rf::softmax::softmax_forward(x, &mut y, s);
                } else {
                    rf::softmax::log_softmax_forward(x, &mut y, s);
                }
                Ok(y)
            }
            Op::BatchNorm { eps, momentum } => self.batch_norm(id, *eps, *momentum),
            Op::Lrn {
                n: size,
                alpha,
                beta,
                k,
            } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let x = self.input(id, 0)?;
                let mut y = vec![T::ZERO; x.len()];
                rf::lrn::lrn_forward(x, &mut y, g, lrn(*size, *alpha, *beta, *k));
                Ok(y)
            }
            Op::Dropout { p } => {
                let x = self.input(id, 0)?;
                match self.feed.mode {
                    Mode::Inference => Ok(x.to_vec()),
                    Mode::Training { seed } => {
                        let mut y = vec![T::ZERO; x.len()];
                        let s = dropout_seed(seed, self.graph.name_of(id));
                        rf::elementwise::dropout(x, &mut y, *p as f32, s, 0);
                        Ok(y)
                    }
                }
            }
            Op::Add => {
                let ins: Vec<&[T]> = (0..node.inputs.len())
                    .map(|i| self.input(id, i))
                    .collect::<Result<_, _>>()?;
                let mut y = vec![T::ZERO; ins[0].len()];
                rf::elementwise::add(&ins, &mut y);
                Ok(y)
            }
            Op::Concat { axis } => {
                let ins: Vec<&[T]> = (0..node.inputs.len())
                    .map(|i| self.input(id, i))
                    .collect::<Result<_, _>>()?;
                let sizes: Vec<usize> = (0..node.inputs.len())
                    .map(|i| self.in_shape(id, i).dims()[*axis])
                    .collect();
                let s = axis_shape(n, &self.out_shape(id), *axis);
                let mut y = vec![T::ZERO; self.len_of(id)?];
                rf::elementwise::concat(&ins, &sizes, s.outer, s.inner, &mut y);
                Ok(y)
            }
            Op::Loss(l) => {
                let (value, _) = self.loss(id, *l)?;
                Ok(vec![value])
            }
            Op::Grad(g) => self.grad(id, g),
            Op::Fused(f) => self.fused(id, f),
        }
    }

    /// Max pooling in ceil mode: the input padded explicitly with −∞ up to
    /// the extent the last (partial) window reaches, then pooled without
    /// padding, so the references need no ceil mode of their own.
    fn max_pool_ceil(&self, id: NodeId, p: &ir::Pool2d) -> Result<Vec<T>, Error> {
        let (padded, g) = self.ceil_padded(id, p, &self.out_shape(id))?;
        let mut y = vec![T::ZERO; g.output_len()];
        let mut arg = vec![0u32; g.output_len()];
        rf::pool::max_pool2d_forward(&padded, &mut y, &mut arg, g);
        Ok(y)
    }

    /// Max pooling's gradient in ceil mode (input 0 is `x`, input 1 `dy`):
    /// the padded pooling's gradient, cropped back to `x`.
    fn max_pool_ceil_backward(&self, id: NodeId, p: &ir::Pool2d) -> Result<Vec<T>, Error> {
        let (padded, g) = self.ceil_padded(id, p, &self.in_shape(id, 1))?;
        let mut y = vec![T::ZERO; g.output_len()];
        let mut arg = vec![0u32; g.output_len()];
        rf::pool::max_pool2d_forward(&padded, &mut y, &mut arg, g);
        let mut dxp = vec![T::ZERO; g.input_len()];
        rf::pool::max_pool2d_backward(self.input(id, 1)?, &arg, &mut dxp, g);
        let [c, h, w] = chw(&self.in_shape(id, 0));
        let [ph, pw] = p.padding;
        let mut dx = vec![T::ZERO; self.feed.batch * c * h * w];
        for plane in 0..self.feed.batch * c {
            for i in 0..h.min(g.h.saturating_sub(ph)) {
                for j in 0..w.min(g.w.saturating_sub(pw)) {
                    dx[(plane * h + i) * w + j] = dxp[(plane * g.h + i + ph) * g.w + j + pw];
                }
            }
        }
        Ok(dx)
    }

    /// Input 0 padded with −∞ for a ceil-mode pool whose output is `out`,
    /// and the unpadded geometry that pools it.
    fn ceil_padded(
        &self,
        id: NodeId,
        p: &ir::Pool2d,
        out: &Shape,
    ) -> Result<(Vec<T>, RtPool), Error> {
        let [c, h, w] = chw(&self.in_shape(id, 0));
        let [_, oh, ow] = chw(out);
        if oh == 0 || ow == 0 {
            return Err(self.err(id, "a ceil-mode pool with an empty output"));
        }
        let (hp, wp) = (
            (oh - 1) * p.stride[0] + p.kernel[0],
            (ow - 1) * p.stride[1] + p.kernel[1],
        );
        let [ph, pw] = p.padding;
        let x = self.input(id, 0)?;
        let planes = self.feed.batch * c;
        let mut padded = vec![T::from_f64(f64::NEG_INFINITY); planes * hp * wp];
        for plane in 0..planes {
            for i in 0..h.min(hp.saturating_sub(ph)) {
                for j in 0..w.min(wp.saturating_sub(pw)) {
                    padded[(plane * hp + i + ph) * wp + j + pw] = x[(plane * h + i) * w + j];
                }
            }
        }
        let g = RtPool {
            n: self.feed.batch,
            c,
            h: hp,
            w: wp,
            kh: p.kernel[0],
            kw: p.kernel[1],
            sh: p.stride[0],
            sw: p.stride[1],
            ph: 0,
            pw: 0,
        };
        Ok((padded, g))
    }

    /// A convolution on input 0 with the node's first parameters.
    fn conv2d(&self, id: NodeId, c: &Conv2d) -> Result<Vec<T>, Error> {
        let g = conv_geometry(c, self.feed.batch, &self.in_shape(id, 0));
        let w = self.param_of(id, 0)?;
        let b = if c.bias {
            Some(self.param_of(id, 1)?)
        } else {
            None
        };
        Ok(rf::conv::conv2d_forward(&g, self.input(id, 0)?, w, b))
    }

    /// A linear layer on input 0 with the node's first parameters.
    fn linear(&self, id: NodeId, out: usize, bias: bool) -> Result<Vec<T>, Error> {
        let n = self.feed.batch;
        let i = self.in_shape(id, 0).numel() as usize;
        let w = self.param_of(id, 0)?;
        // y = x · Wᵀ: [n × in] · [in × out].
        let mut y = rf::gemm::matmul(&Gemm::new(n, out, i).transpose_b(), self.input(id, 0)?, w);
        if bias {
            let b = self.param_of(id, 1)?;
            for (k, v) in y.iter_mut().enumerate() {
                *v += b[k % out];
            }
        }
        Ok(y)
    }

    /// A fused kernel, composed from the references: the anchor, then the
    /// batch norm on its running statistics, then each epilogue step.
    fn fused(&self, id: NodeId, f: &Fused) -> Result<Vec<T>, Error> {
        if let Mode::Training { .. } = self.feed.mode {
            return Err(self.err(
                id,
                "a fused kernel is inference-only; train the unfused graph",
            ));
        }
        let mut v = match &f.anchor {
            Anchor::Conv2d(c) => self.conv2d(id, c)?,
            Anchor::Linear { out, bias } => self.linear(id, *out, *bias)?,
            Anchor::Identity => self.input(id, 0)?.to_vec(),
        };
        // The anchor's own output shape (a fused pool changes the node's).
        let shape = match (&f.anchor, &f.pool) {
            (Anchor::Conv2d(c), Some(_)) => {
                let g = conv_geometry(c, self.feed.batch, &self.in_shape(id, 0));
                Shape(vec![g.c_out, g.out_h(), g.out_w()])
            }
            _ => self.out_shape(id),
        };
        if let Some(bn) = &f.folded_bn {
            let k = f.anchor_params();
            let g = ncs(self.feed.batch, &shape);
            let mut y = vec![T::ZERO; v.len()];
            rf::norm::batch_norm_inference(
                &v,
                &mut y,
                g,
                self.param_of(id, k)?,
                self.param_of(id, k + 1)?,
                self.param_of(id, k + 2)?,
                self.param_of(id, k + 3)?,
                bn.eps,
            );
            v = y;
        }
        let mut extra = 1;
        for e in &f.epilogue {
            match e {
                Epilogue::Activation(a) => {
                    let mut y = vec![T::ZERO; v.len()];
                    rf::activation::activation_forward(to_rt_act(*a), &v, &mut y);
                    v = y;
                }
                Epilogue::Add => {
                    let r = self.input(id, extra)?;
                    if r.len() != v.len() {
                        return Err(self.err(
                            id,
                            format!("input {extra} has {} values, expected {}", r.len(), v.len()),
                        ));
                    }
                    let mut y = vec![T::ZERO; v.len()];
                    rf::elementwise::add(&[&v, r], &mut y);
                    v = y;
                    extra += 1;
                }
                Epilogue::Scale(s) => {
                    let s = T::from_f64(*s);
                    for x in &mut v {
                        *x = *x * s;
                    }
                }
            }
        }
        if let Some(p) = &f.pool {
            let g = pool_geometry(p, self.feed.batch, &shape);
            let mut y = vec![T::ZERO; g.output_len()];
            let mut arg = vec![0u32; g.output_len()];
            rf::pool::max_pool2d_forward(&v, &mut y, &mut arg, g.ceil_mode(p.ceil));
            v = y;
        }
        Ok(v)
    }

    fn check_conv_t(&self, id: NodeId, g: &Conv2dGeometry) -> Result<(), Error> {
        let [_, h, w] = chw(&self.in_shape(id, 0));
        if g.out_h() != h || g.out_w() != w {
            return Err(self.err(
                id,
                "this output_padding/dilation combination has no reference transposed convolution",
            ));
        }
        Ok(())
    }

    fn batch_norm(&mut self, id: NodeId, eps: f64, momentum: f64) -> Result<Vec<T>, Error> {
        let g = ncs(self.feed.batch, &self.in_shape(id, 0));
        let x = self.input(id, 0)?;
        let gamma = self.param_of(id, 0)?;
        let beta = self.param_of(id, 1)?;
        let mut mean = self.param_of(id, 2)?.to_vec();
        let mut var = self.param_of(id, 3)?.to_vec();
        let mut y = vec![T::ZERO; x.len()];
        match self.feed.mode {
            Mode::Inference => {
                rf::norm::batch_norm_inference(x, &mut y, g, gamma, beta, &mean, &var, eps);
            }
            Mode::Training { .. } => {
                rf::norm::batch_norm_train_forward(
                    x, &mut y, g, gamma, beta, eps, momentum, &mut mean, &mut var,
                );
                let node = self.graph.node(id);
                for (p, stat) in node.params[2..4].iter().zip([mean, var]) {
                    self.params.insert(p.name.clone(), stat);
                }
            }
        }
        Ok(y)
    }

    /// The loss head's value and its gradient with respect to its input.
    fn loss(&self, id: NodeId, l: ir::Loss) -> Result<(T, Vec<T>), Error> {
        let n = self.feed.batch;
        let o = self.input(id, 0)?;
        let per = self.in_shape(id, 0).numel() as usize;
        let mut grad = vec![T::ZERO; o.len()];
        let r = reduction(l.reduction);
        let targets = self
            .feed
            .targets
            .as_ref()
            .ok_or_else(|| self.err(id, "needs targets, and the feed has none"))?;
        let bad = |e: kiln_runtime::kernels::loss::LossError| self.err(id, e.to_string());
        let value = match (l.kind.takes_class_index(), targets) {
            (true, Targets::Classes(labels)) => {
                if labels.len() != n {
                    return Err(self.err(id, format!("{} labels for a batch of {n}", labels.len())));
                }
                match l.kind {
                    LossKind::CrossEntropy => {
                        rf::loss::cross_entropy(o, labels, per, r, &mut grad).map_err(bad)?
                    }
                    LossKind::Nll => rf::loss::nll(o, labels, per, r, &mut grad).map_err(bad)?,
                    LossKind::MulticlassHinge { margin } => {
                        rf::loss::multiclass_hinge(o, labels, per, margin, r, &mut grad)
                            .map_err(bad)?
                    }
                    _ => unreachable!("takes_class_index covers exactly these"),
                }
            }
            (false, Targets::Values(t)) => {
                if t.len() != o.len() {
                    return Err(self.err(
                        id,
                        format!(
                            "{} target values, expected {} (batch {n} × {per})",
                            t.len(),
                            o.len()
                        ),
                    ));
                }
                match l.kind {
                    LossKind::Mse => rf::loss::mse(o, t, n, r, &mut grad),
                    LossKind::L1 => rf::loss::l1(o, t, n, r, &mut grad),
                    LossKind::Huber { delta } => rf::loss::huber(o, t, n, delta, r, &mut grad),
                    LossKind::BinaryCrossEntropy { from_logits: false } => {
                        rf::loss::binary_cross_entropy(o, t, n, r, &mut grad).map_err(bad)?
                    }
                    LossKind::BinaryCrossEntropy { from_logits: true } => {
                        rf::loss::binary_cross_entropy_with_logits(o, t, n, r, &mut grad)
                            .map_err(bad)?
                    }
                    _ => unreachable!("the others take class indices"),
                }
            }
            (true, _) => return Err(self.err(id, "takes class indices as targets, found a tensor")),
            (false, _) => {
                return Err(self.err(id, "takes a tensor as targets, found class indices"));
            }
        };
        Ok((value, grad))
    }

    fn grad(&mut self, id: NodeId, op: &GradOp) -> Result<Vec<T>, Error> {
        let n = self.feed.batch;
        match op {
            GradOp::Loss(l) => {
                // The gradient node reads the loss head's input; it is
                // evaluated as that loss would be.
                Ok(self.loss(id, *l)?.1)
            }
            GradOp::Conv2dData {
                conv,
                weight,
                input,
            } => {
                let g = conv_geometry(conv, n, input);
                let w = self.named_param(id, weight)?;
                Ok(rf::conv::conv2d_backward_data(&g, w, self.input(id, 0)?))
            }
            GradOp::Conv2dWeight { conv } => {
                let g = conv_geometry(conv, n, &self.in_shape(id, 0));
                Ok(rf::conv::conv2d_backward_weight(
                    &g,
                    self.input(id, 0)?,
                    self.input(id, 1)?,
                ))
            }
            GradOp::ConvTranspose2dData {
                conv,
                weight,
                input,
            } => {
                let g = conv_t_geometry(conv, n, input, &self.in_shape(id, 0));
                let w = self.named_param(id, weight)?;
                Ok(rf::conv::conv_transpose2d_backward_data(
                    &g,
                    w,
                    self.input(id, 0)?,
                ))
            }
            GradOp::ConvTranspose2dWeight { conv } => {
                let g = conv_t_geometry(conv, n, &self.in_shape(id, 0), &self.in_shape(id, 1));
                Ok(rf::conv::conv_transpose2d_backward_weight(
                    &g,
                    self.input(id, 0)?,
                    self.input(id, 1)?,
                ))
            }
            GradOp::Bias => {
                let g = ncs(n, &self.in_shape(id, 0));
                let dy = self.input(id, 0)?;
                let mut db = vec![0.0f64; g.c];
                for (i, v) in dy.iter().enumerate() {
                    db[(i / g.spatial) % g.c] += v.to_f64();
                }
                Ok(db.into_iter().map(T::from_f64).collect())
            }
            GradOp::LinearData {
                weight,
                in_features,
            } => {
                let o = self.in_shape(id, 0).numel() as usize;
                let w = self.named_param(id, weight)?;
                // dx = dy · W: [n × out] · [out × in].
                Ok(rf::gemm::matmul(
                    &Gemm::new(n, *in_features, o),
                    self.input(id, 0)?,
                    w,
                ))
            }
            GradOp::LinearWeight => {
                let i = self.in_shape(id, 0).numel() as usize;
                let o = self.in_shape(id, 1).numel() as usize;
                // dW = dyᵀ · x: [out × n] · [n × in].
                Ok(rf::gemm::matmul(
                    &Gemm::new(o, i, n).transpose_a(),
                    self.input(id, 1)?,
                    self.input(id, 0)?,
                ))
            }
            GradOp::MaxPool2d(p) if p.ceil => self.max_pool_ceil_backward(id, p),
            GradOp::MaxPool2d(p) => {
                let g = pool_geometry(p, n, &self.in_shape(id, 0));
                let mut y = vec![T::ZERO; g.output_len()];
                let mut arg = vec![0u32; g.output_len()];
                rf::pool::max_pool2d_forward(self.input(id, 0)?, &mut y, &mut arg, g);
                let mut dx = vec![T::ZERO; g.input_len()];
                rf::pool::max_pool2d_backward(self.input(id, 1)?, &arg, &mut dx, g);
                Ok(dx)
            }
            GradOp::AvgPool2d {
                pool,
                count_pad,
                input,
            } => {
                let g = pool_geometry(pool, n, input);
                let mut dx = vec![T::ZERO; g.input_len()];
                rf::pool::avg_pool2d_backward(self.input(id, 0)?, &mut dx, g, *count_pad);
                Ok(dx)
            }
            GradOp::GlobalAvgPool { input } => {
                let [c, h, w] = chw(input);
                let mut dx = vec![T::ZERO; n * c * h * w];
                rf::pool::global_avg_pool_backward(self.input(id, 0)?, &mut dx, n * c, h * w);
                Ok(dx)
            }
            GradOp::Upsample { scale, mode } => {
                let [c, h, w] = chw(&self.out_shape(id));
                let g = Upsample {
                    planes: n * c,
                    h,
                    w,
                    scale: *scale,
                };
                let mut dx = vec![T::ZERO; g.input_len()];
                match mode {
                    UpsampleMode::Nearest => {
                        rf::upsample::upsample_nearest_backward(self.input(id, 0)?, &mut dx, g)
                    }
                    UpsampleMode::Zeros => {
                        rf::upsample::upsample_zeros_backward(self.input(id, 0)?, &mut dx, g)
                    }
                }
                Ok(dx)
            }
            GradOp::PixelUnshuffle { r } => {
                let [c, h, w] = chw(&self.out_shape(id));
                let g = PixelShuffle {
                    n,
                    c: c / (r * r),
                    h,
                    w,
                    r: *r,
                };
                let dy = self.input(id, 0)?;
                let mut dx = vec![T::ZERO; dy.len()];
                rf::upsample::pixel_unshuffle(dy, &mut dx, g);
                Ok(dx)
            }
            GradOp::Activation(a) => {
                let x = self.input(id, 0)?;
                let mut dx = vec![T::ZERO; x.len()];
                rf::activation::activation_backward(to_rt_act(*a), x, self.input(id, 1)?, &mut dx);
                Ok(dx)
            }
            GradOp::PreluData { .. } | GradOp::PreluWeight { .. } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let shape = g;
                // The slope gradient does not depend on the slope's value.
                let (w, want_data) = match op {
                    GradOp::PreluData { weight } => (self.named_param(id, weight)?.to_vec(), true),
                    GradOp::PreluWeight { per_channel } => {
                        (vec![T::ZERO; if *per_channel { g.c } else { 1 }], false)
                    }
                    _ => unreachable!("matched above"),
                };
                let x = self.input(id, 0)?;
                let mut dx = vec![T::ZERO; x.len()];
                let mut dw = vec![T::ZERO; w.len()];
                rf::activation::prelu_backward(x, self.input(id, 1)?, &mut dx, &mut dw, shape, &w);
                Ok(if want_data { dx } else { dw })
            }
            GradOp::Maxout { k } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let shape = g;
                let mut y = vec![T::ZERO; shape.len() / k];
                let mut arg = vec![0u32; y.len()];
                rf::activation::maxout_forward(self.input(id, 0)?, &mut y, &mut arg, shape, *k);
                let mut dx = vec![T::ZERO; shape.len()];
                rf::activation::maxout_backward(self.input(id, 1)?, &arg, &mut dx, shape, *k);
                Ok(dx)
            }
            GradOp::Softmax { axis } | GradOp::LogSoftmax { axis } => {
                let s = axis_shape(n, &self.in_shape(id, 0), *axis);
                let y = self.input(id, 0)?;
                let mut dx = vec![T::ZERO; y.len()];
                if let GradOp::Softmax { .. } = op {
                    rf::softmax::softmax_backward(y, self.input(id, 1)?, &mut dx, s);
                } else {
                    rf::softmax::log_softmax_backward(y, self.input(id, 1)?, &mut dx, s);
                }
                Ok(dx)
            }
            GradOp::BatchNormStats { eps } => {
                // The statistics of the reference's training forward; γ, β
                // and the running averages do not enter them.
                let g = ncs(n, &self.in_shape(id, 0));
                let x = self.input(id, 0)?;
                let mut y = vec![T::ZERO; x.len()];
                let (mut rm, mut rv) = (vec![T::ZERO; g.c], vec![T::ZERO; g.c]);
                let (gamma, beta) = (vec![T::ONE; g.c], vec![T::ZERO; g.c]);
                let (mean, inv) = rf::norm::batch_norm_train_forward(
                    x, &mut y, g, &gamma, &beta, *eps, 0.0, &mut rm, &mut rv,
                );
                Ok([mean, inv].concat())
            }
            GradOp::BatchNormParamGrads { relu } | GradOp::BatchNormInput { relu, .. } => {
                // The reference backward on `dy` (masked by the ReLU output
                // with `relu`) with the given statistics; the input
                // gradient recomputes γ's and β's rather than reading them.
                let params = matches!(op, GradOp::BatchNormParamGrads { .. });
                let g = ncs(n, &self.in_shape(id, 0));
                let x = self.input(id, 0)?;
                let mut dy = self.input(id, 1)?.to_vec();
                if *relu {
                    let y = self.input(id, if params { 3 } else { 4 })?;
                    for (d, &m) in dy.iter_mut().zip(y) {
                        if m <= T::ZERO {
                            *d = T::ZERO;
                        }
                    }
                }
                let (mean, inv) = self.input(id, 2)?.split_at(g.c);
                let gamma = match op {
                    GradOp::BatchNormInput { weight, .. } => self.named_param(id, weight)?.to_vec(),
                    _ => vec![T::ONE; g.c],
                };
                let mut dx = vec![T::ZERO; x.len()];
                let (mut dgamma, mut dbeta) = (vec![T::ZERO; g.c], vec![T::ZERO; g.c]);
                rf::norm::batch_norm_backward(
                    x,
                    &dy,
                    &mut dx,
                    &mut dgamma,
                    &mut dbeta,
                    g,
                    &gamma,
                    mean,
                    inv,
                );
                Ok(if params { [dgamma, dbeta].concat() } else { dx })
            }
            GradOp::Row { index } => {
                let c = self.out_shape(id).numel() as usize;
                let v = self.input(id, 0)?;
                v.get(index * c..(index + 1) * c)
                    .map(<[T]>::to_vec)
                    .ok_or_else(|| self.err(id, format!("has no row {index}")))
            }
            GradOp::Lrn {
                n: size,
                alpha,
                beta,
                k,
            } => {
                let g = ncs(n, &self.in_shape(id, 0));
                let x = self.input(id, 0)?;
                let mut dx = vec![T::ZERO; x.len()];
                let p = lrn(*size, *alpha, *beta, *k);
                rf::lrn::lrn_backward(x, self.input(id, 1)?, &mut dx, g, p);
                Ok(dx)
            }
            GradOp::Dropout { p, layer } => {
                let dy = self.input(id, 0)?;
                match self.feed.mode {
                    Mode::Inference => Ok(dy.to_vec()),
                    Mode::Training { seed } => {
                        let mut dx = vec![T::ZERO; dy.len()];
                        rf::elementwise::dropout(
                            dy,
                            &mut dx,
                            *p as f32,
                            dropout_seed(seed, layer),
                            0,
                        );
                        Ok(dx)
                    }
                }
            }
            GradOp::Slice { axis, start, len } => {
                let s = axis_shape(n, &self.in_shape(id, 0), *axis);
                let dy = self.input(id, 0)?;
                let mut out = Vec::with_capacity(s.outer * len * s.inner);
                for o in 0..s.outer {
                    let base = (o * s.dim + start) * s.inner;
                    out.extend_from_slice(&dy[base..base + len * s.inner]);
                }
                Ok(out)
            }
        }
    }
}
