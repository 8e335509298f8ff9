//! Shape inference: every value gets a static per-example shape and every
//! node its parameter shapes.
//!
//! Precondition: the graph is acyclic and its input values carry their
//! declared shapes. Establishes: every value has a shape and every node with
//! weights has its [`Param`]s (OIHW conv weights, `[out, in]` linear weights,
//! batch norm's γ/β as parameters and running statistics as buffers).
//! Batch is the only symbolic dim and never appears in a [`Shape`].
//!
//! Errors are collected: each names the layer, says both shapes, and points
//! at the layer's source location. A node whose input has no shape (because
//! an upstream node already failed) is skipped silently, so one mistake
//! gives one error. The pass does not check declared output shapes (lowering
//! does) and does not change the graph's structure.
//!
//! Lowering calls [`infer_node`] as it adds each node, because shape queries
//! (`x.channels()`) need shapes while blocks elaborate; the pass itself is
//! idempotent and re-derives everything.

use crate::codes;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::{Fused, Graph, NodeId, Op, Padding, Param, ParamRole, Pool2d, Shape};

/// The largest size any dim may have; larger sizes are reported, not computed.
pub const MAX_DIM: u64 = 1 << 31;

/// Infers the shapes of every value and the parameters of every node.
pub fn infer_shapes(graph: &mut Graph) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    let Some(order) = graph.topo_order() else {
        diags.push(Diagnostic::error(
            codes::INTERNAL,
            crate::ast::Loc::Synthetic,
            format!("infer_shapes: graph `{}` has a cycle", graph.name),
        ));
        return Err(diags);
    };
    for id in order {
        if let Err(d) = infer_node(graph, id) {
            diags.push(d);
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(())
    }
}

/// Infers the output shape and the parameters of one node from its inputs'
/// shapes. Does nothing (and succeeds) if an input has no shape yet.
pub fn infer_node(graph: &mut Graph, id: NodeId) -> Result<(), Diagnostic> {
    let node = graph.node(id);
    if let Op::Input { .. } = node.op {
        return Ok(());
    }
    let mut ins = Vec::with_capacity(node.inputs.len());
    for &v in &node.inputs {
        match graph.shape(v) {
            Some(s) => ins.push(s.clone()),
            None => return Ok(()),
        }
    }
    let cx = Cx {
        op: node.op.name(),
        name: graph.name_of(id).to_string(),
        graph,
        id,
    };
    let (shape, params) = rule(&cx, &node.op, &ins)?;
    if let Some(&d) = shape.0.iter().find(|&&d| d as u64 > MAX_DIM) {
        return Err(cx.err(
            codes::BAD_OUTPUT_SIZE,
            format!(
                "output shape {} has a dim of {d}, larger than kiln's limit of {MAX_DIM}",
                shape
            ),
        ));
    }
    let output = graph.node(id).output;
    graph.set_shape(output, shape);
    graph.node_mut(id).params = params;
    Ok(())
}

/// What a rule needs to word its errors.
struct Cx<'g> {
    op: &'static str,
    name: String,
    graph: &'g Graph,
    id: NodeId,
}

impl Cx<'_> {
    fn err(&self, code: Code, msg: impl AsRef<str>) -> Diagnostic {
        Diagnostic::error(
            code,
            self.graph.loc_of(self.id),
            format!("{} `{}`: {}", self.op, self.name, msg.as_ref()),
        )
    }

    fn param(&self, suffix: &str, shape: Vec<usize>, role: ParamRole) -> Param {
        Param {
            name: format!("{}.{suffix}", self.name),
            shape: Shape(shape),
            role,
        }
    }

    /// Requires an image `[C, H, W]`.
    fn image(&self, s: &Shape) -> Result<[usize; 3], Diagnostic> {
        match s.0[..] {
            [c, h, w] => Ok([c, h, w]),
            _ => Err(self.err(
                codes::WRONG_RANK,
                format!("expected an input of shape [C, H, W], found {s}"),
            )),
        }
    }
}

type RuleResult = Result<(Shape, Vec<Param>), Diagnostic>;

fn rule(cx: &Cx, op: &Op, ins: &[Shape]) -> RuleResult {
    let x = ins.first().cloned().unwrap_or_default();
    match op {
        Op::Input { .. } => Ok((x, vec![])),
        Op::Conv2d(c) => {
            let [ch, h, w] = cx.image(&x)?;
            if let Some(want) = c.in_channels
                && want != ch
            {
                return Err(cx.err(
                    codes::CHANNEL_MISMATCH,
                    format!(
                        "expected {} input channel{}, found {ch} (input shape {x})",
                        want,
                        if want == 1 { "" } else { "s" }
                    ),
                ));
            }
            groups_divide(cx, c.groups, ch, c.out, &x)?;
            let pads = c.padding.resolve([h, w], c.kernel, c.stride, c.dilation);
            let mut out = [0usize; 2];
            for i in 0..2 {
                out[i] = window_out(
                    cx,
                    [h, w][i],
                    c.kernel,
                    c.stride,
                    pads[i],
                    c.dilation,
                    c.exact && c.padding != Padding::Same,
                    i,
                    &x,
                )?;
            }
            let mut params = vec![cx.param(
                "weight",
                vec![c.out, ch / c.groups, c.kernel[0], c.kernel[1]],
                ParamRole::Weight,
            )];
            if c.bias {
                params.push(cx.param("bias", vec![c.out], ParamRole::Bias));
            }
            Ok((Shape(vec![c.out, out[0], out[1]]), params))
        }
        Op::ConvTranspose2d(c) => {
            let [ch, h, w] = cx.image(&x)?;
            if let Some(want) = c.in_channels
                && want != ch
            {
                return Err(cx.err(
                    codes::CHANNEL_MISMATCH,
                    format!(
                        "expected {} input channel{}, found {ch} (input shape {x})",
                        want,
                        if want == 1 { "" } else { "s" }
                    ),
                ));
            }
            groups_divide(cx, c.groups, ch, c.out, &x)?;
            let mut out = [0usize; 2];
            for i in 0..2 {
                if c.output_padding[i] >= c.stride[i].max(c.dilation[i]) {
                    return Err(cx.err(
                        codes::BAD_OUTPUT_SIZE,
                        format!(
                            "output_padding {} must be smaller than the stride or the dilation ({} and {})",
                            c.output_padding[i], c.stride[i], c.dilation[i]
                        ),
                    ));
                }
                let n = [h, w][i] as i128;
                let size = (n - 1) * c.stride[i] as i128 - 2 * c.padding[i] as i128
                    + c.dilation[i] as i128 * (c.kernel[i] as i128 - 1)
                    + c.output_padding[i] as i128
                    + 1;
                if size < 1 {
                    return Err(cx.err(
                        codes::BAD_OUTPUT_SIZE,
                        format!(
                            "the padding {} leaves no output along {} (input shape {x})",
                            c.padding[i],
                            ["height", "width"][i]
                        ),
                    ));
                }
                out[i] = clamp_dim(size);
            }
            let mut params = vec![cx.param(
                "weight",
                vec![ch, c.out / c.groups, c.kernel[0], c.kernel[1]],
                ParamRole::Weight,
            )];
            if c.bias {
                params.push(cx.param("bias", vec![c.out], ParamRole::Bias));
            }
            Ok((Shape(vec![c.out, out[0], out[1]]), params))
        }
        Op::Linear {
            out,
            bias,
            in_features,
        } => {
            let [d] = x.0[..] else {
                return Err(cx.err(
                    codes::WRONG_RANK,
                    format!("expected a rank-1 input [D], found {x}; put `flatten` before it"),
                ));
            };
            if let Some(want) = *in_features
                && want != d
            {
                return Err(cx.err(
                    codes::CHANNEL_MISMATCH,
                    format!(
                        "expected {} input feature{}, found {d} (input shape {x})",
                        want,
                        if want == 1 { "" } else { "s" }
                    ),
                ));
            }
            let mut params = vec![cx.param("weight", vec![*out, d], ParamRole::Weight)];
            if *bias {
                params.push(cx.param("bias", vec![*out], ParamRole::Bias));
            }
            Ok((Shape(vec![*out]), params))
        }
        Op::Flatten => Ok((Shape(vec![clamp_dim(x.numel() as i128)]), vec![])),
        Op::Reshape { shape } => reshape(cx, shape, &x),
        Op::MaxPool2d(p) | Op::AvgPool2d { pool: p, .. } => pool(cx, p, &x),
        Op::GlobalAvgPool => {
            let [c, _, _] = cx.image(&x)?;
            Ok((Shape(vec![c]), vec![]))
        }
        Op::Upsample { scale, .. } => {
            let [c, h, w] = cx.image(&x)?;
            let s = *scale as i128;
            Ok((
                Shape(vec![c, clamp_dim(h as i128 * s), clamp_dim(w as i128 * s)]),
                vec![],
            ))
        }
        Op::PixelShuffle { r } => {
            let [c, h, w] = cx.image(&x)?;
            let r2 = r.saturating_mul(*r);
            if !c.is_multiple_of(r2) {
                return Err(cx.err(
                    codes::CHANNEL_MISMATCH,
                    format!("{c} input channels are not divisible by r² = {r2} (input shape {x})"),
                ));
            }
            let r = *r as i128;
            Ok((
                Shape(vec![
                    c / r2,
                    clamp_dim(h as i128 * r),
                    clamp_dim(w as i128 * r),
                ]),
                vec![],
            ))
        }
        Op::Activation(_) | Op::Dropout { .. } | Op::Lrn { .. } => {
            if x.rank() == 0 {
                return Err(cx.err(codes::WRONG_RANK, "expected a tensor, found a scalar"));
            }
            Ok((x, vec![]))
        }
        Op::Prelu { per_channel } => {
            let Some(&c) = x.0.first() else {
                return Err(cx.err(codes::WRONG_RANK, "expected a tensor, found a scalar"));
            };
            let n = if *per_channel { c } else { 1 };
            Ok((
                x.clone(),
                vec![cx.param("weight", vec![n], ParamRole::Weight)],
            ))
        }
        Op::Maxout { k } => {
            let Some(&c) = x.0.first() else {
                return Err(cx.err(codes::WRONG_RANK, "expected a tensor, found a scalar"));
            };
            if !c.is_multiple_of(*k) {
                return Err(cx.err(
                    codes::CHANNEL_MISMATCH,
                    format!("{c} channels are not divisible into groups of {k} (input shape {x})"),
                ));
            }
            let mut s = x.clone();
            s.0[0] = c / k;
            Ok((s, vec![]))
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            if *axis >= x.rank() {
                return Err(cx.err(
                    codes::BAD_AXIS,
                    format!(
                        "axis {axis} is out of range for input shape {x} (rank {})",
                        x.rank()
                    ),
                ));
            }
            Ok((x, vec![]))
        }
        Op::BatchNorm { .. } => {
            let c = match x.0[..] {
                [c] | [c, _] | [c, _, _] => c,
                _ => {
                    return Err(cx.err(
                        codes::WRONG_RANK,
                        format!("expected an input of shape [D], [C, L] or [C, H, W], found {x}"),
                    ));
                }
            };
            let params = vec![
                cx.param("weight", vec![c], ParamRole::Weight),
                cx.param("bias", vec![c], ParamRole::Bias),
                cx.param("running_mean", vec![c], ParamRole::RunningMean),
                cx.param("running_var", vec![c], ParamRole::RunningVar),
            ];
            Ok((x, params))
        }
        Op::Add => {
            for (i, s) in ins.iter().enumerate().skip(1) {
                if *s != x {
                    return Err(cx.err(
                        codes::ADD_MISMATCH,
                        format!(
                            "shapes differ: input 1 is {x}, input {} is {s}; every input of `add` must have one shape",
                            i + 1
                        ),
                    ));
                }
            }
            Ok((x, vec![]))
        }
        Op::Concat { axis } => concat(cx, *axis, ins),
        Op::Fused(f) => fused(cx, f, ins),
        Op::Grad(g) => match g.output_shape(ins) {
            Ok(s) => Ok((s, vec![])),
            Err(m) => Err(cx.err(codes::INTERNAL, m)),
        },
        Op::Loss(l) => {
            if l.kind.takes_class_index() && x.rank() != 1 {
                return Err(cx.err(
                    codes::LOSS_SHAPE,
                    format!(
                        "expected class scores of shape [classes], found {x}; `{}` takes a class index as its target",
                        l.kind.name()
                    ),
                ));
            }
            Ok((Shape(vec![]), vec![]))
        }
    }
}

/// A fused kernel: the anchor's rule on input 0, then the folded batch
/// norm's parameters (under the batch norm's own layer name), then every
/// extra input of the epilogue's `add`s must have the anchor's output
/// shape; a fused pool's rule gives the kernel's output shape.
fn fused(cx: &Cx, f: &Fused, ins: &[Shape]) -> RuleResult {
    let x = ins.first().cloned().unwrap_or_default();
    let (shape, mut params) = match f.anchor_op() {
        Some(op) => rule(cx, &op, &ins[..1.min(ins.len())])?,
        None => (x, vec![]),
    };
    if let Some(bn) = &f.folded_bn {
        let c = match shape.0[..] {
            [c] | [c, _] | [c, _, _] => c,
            _ => {
                return Err(cx.err(
                    codes::WRONG_RANK,
                    format!(
                        "the folded batch norm expects [D], [C, L] or [C, H, W], found {shape}"
                    ),
                ));
            }
        };
        let named = |suffix: &str, role| Param {
            name: format!("{}.{suffix}", bn.layer),
            shape: Shape(vec![c]),
            role,
        };
        params.extend([
            named("weight", ParamRole::Weight),
            named("bias", ParamRole::Bias),
            named("running_mean", ParamRole::RunningMean),
            named("running_var", ParamRole::RunningVar),
        ]);
    }
    for (i, s) in ins.iter().enumerate().skip(1) {
        if *s != shape {
            return Err(cx.err(
                codes::ADD_MISMATCH,
                format!(
                    "the epilogue adds input {} of shape {s} to a value of shape {shape}",
                    i + 1
                ),
            ));
        }
    }
    if ins.len() != 1 + f.extra_inputs() {
        return Err(cx.err(
            codes::INTERNAL,
            format!(
                "has {} inputs; its epilogue reads {}",
                ins.len(),
                1 + f.extra_inputs()
            ),
        ));
    }
    let shape = match &f.pool {
        Some(p) => rule(cx, &Op::MaxPool2d(p.clone()), &[shape])?.0,
        None => shape,
    };
    Ok((shape, params))
}

/// Clamps a computed size into `usize`; sizes beyond [`MAX_DIM`] are
/// reported by the caller's bound check.
fn clamp_dim(v: i128) -> usize {
    v.clamp(0, (MAX_DIM + 1) as i128) as usize
}

fn groups_divide(
    cx: &Cx,
    groups: usize,
    ch: usize,
    out: usize,
    x: &Shape,
) -> Result<(), Diagnostic> {
    if !ch.is_multiple_of(groups) {
        return Err(cx.err(
            codes::CHANNEL_MISMATCH,
            format!("{ch} input channels are not divisible by groups = {groups} (input shape {x})"),
        ));
    }
    if !out.is_multiple_of(groups) {
        return Err(cx.err(
            codes::CHANNEL_MISMATCH,
            format!("{out} output channels are not divisible by groups = {groups}"),
        ));
    }
    Ok(())
}

/// The output size of a sliding window along dim `i` (0 = height, 1 = width):
/// `⌊(n + pb + pe − d(k − 1) − 1)/s⌋ + 1`.
fn window_out(
    cx: &Cx,
    n: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    exact: bool,
    i: usize,
    x: &Shape,
) -> Result<usize, Diagnostic> {
    let dim = ["height", "width"][i];
    let padded = n as i128 + pad[0] as i128 + pad[1] as i128;
    let span = dilation[i] as i128 * (kernel[i] as i128 - 1) + 1;
    if span > padded {
        let what = if dilation[i] > 1 {
            format!("the dilated kernel spans {span}")
        } else {
            format!("the kernel {} is", kernel[i])
        };
        return Err(cx.err(
            codes::BAD_OUTPUT_SIZE,
            format!("{what} larger than the padded input {dim} {padded} (input shape {x})"),
        ));
    }
    let s = stride[i] as i128;
    let rest = (padded - span) % s;
    if exact && rest != 0 {
        return Err(cx.err(
            codes::INEXACT_FIT,
            format!(
                "the window does not fit exactly along {dim}: ({n} + {} − {span}) is not divisible by the stride {s} (input shape {x}, {rest} left over)",
                pad[0] + pad[1]
            ),
        ));
    }
    Ok(clamp_dim((padded - span) / s + 1))
}

fn pool(cx: &Cx, p: &Pool2d, x: &Shape) -> RuleResult {
    let [c, h, w] = cx.image(x)?;
    for i in 0..2 {
        if p.padding[i] * 2 > p.kernel[i] {
            return Err(cx.err(
                codes::BAD_OUTPUT_SIZE,
                format!(
                    "padding {} is more than half the window {}",
                    p.padding[i], p.kernel[i]
                ),
            ));
        }
    }
    let mut out = [0usize; 2];
    for i in 0..2 {
        out[i] = window_out(
            cx,
            [h, w][i],
            p.kernel,
            p.stride,
            [p.padding[i]; 2],
            [1, 1],
            p.exact,
            i,
            x,
        )?;
        // Ceil mode keeps a last partial window that starts inside the
        // input or the left padding.
        let n = [h, w][i] + p.padding[i];
        let rest = ([h, w][i] + 2 * p.padding[i] - p.kernel[i]) % p.stride[i];
        if p.ceil && rest != 0 && out[i] * p.stride[i] < n {
            out[i] += 1;
        }
    }
    Ok((Shape(vec![c, out[0], out[1]]), vec![]))
}

fn reshape(cx: &Cx, target: &[i64], x: &Shape) -> RuleResult {
    let total = x.numel() as i128;
    let mut known: i128 = 1;
    let mut hole = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if hole.is_none() => hole = Some(i),
            -1 => {
                return Err(cx.err(codes::RESHAPE_MISMATCH, "only one dim may be -1"));
            }
            d if d > 0 => known = known.saturating_mul(d as i128),
            d => {
                return Err(cx.err(
                    codes::RESHAPE_MISMATCH,
                    format!("dim {d} is invalid; dims are positive, or -1 once"),
                ));
            }
        }
    }
    let mut dims: Vec<usize> = target.iter().map(|&d| clamp_dim(d as i128)).collect();
    let written = format!("{target:?}");
    match hole {
        Some(i) => {
            if total % known != 0 {
                return Err(cx.err(
                    codes::RESHAPE_MISMATCH,
                    format!("cannot reshape {x} ({total} elements) to {written}: {total} is not divisible by {known}"),
                ));
            }
            dims[i] = clamp_dim(total / known);
        }
        None => {
            if known != total {
                return Err(cx.err(
                    codes::RESHAPE_MISMATCH,
                    format!(
                        "cannot reshape {x} ({total} elements) to {written} ({known} elements)"
                    ),
                ));
            }
        }
    }
    Ok((Shape(dims), vec![]))
}

fn concat(cx: &Cx, axis: usize, ins: &[Shape]) -> RuleResult {
    let first = &ins[0];
    for (i, s) in ins.iter().enumerate() {
        if axis >= s.rank() {
            return Err(cx.err(
                codes::CONCAT_MISMATCH,
                format!(
                    "axis {axis} is out of range for input {} of shape {s} (rank {})",
                    i + 1,
                    s.rank()
                ),
            ));
        }
        if s.rank() != first.rank() {
            return Err(cx.err(
                codes::CONCAT_MISMATCH,
                format!(
                    "inputs have different ranks: input 1 is {first}, input {} is {s}",
                    i + 1
                ),
            ));
        }
        for d in 0..s.rank() {
            if d != axis && s.0[d] != first.0[d] {
                return Err(cx.err(
                    codes::CONCAT_MISMATCH,
                    format!(
                        "inputs differ in dim {d}, which is not the concat axis {axis}: input 1 is {first}, input {} is {s}",
                        i + 1
                    ),
                ));
            }
        }
    }
    let mut out = first.clone();
    out.0[axis] = clamp_dim(ins.iter().map(|s| s.0[axis] as i128).sum());
    Ok((out, vec![]))
}
