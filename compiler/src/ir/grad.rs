//! The gradient ops: the nodes of the backward half of a joint graph.
//!
//! [`crate::passes::autodiff`] builds them, one rule per forward primitive;
//! this file says what each computes, what it reads and what shape it gives.
//! Every gradient op, like every op, produces exactly one value, so an op
//! with several gradients (a convolution's input, weight and bias) gets one
//! node per gradient.
//!
//! Conventions:
//!
//! - `dy` is the gradient of the loss with respect to the forward node's
//!   output; inputs are listed in the order each variant's doc gives.
//! - A gradient op that needs a learned parameter of its forward node (the
//!   weight of the convolution it differentiates) names it (`weight`); the
//!   parameter is read from the parameter layout, not passed as a value, just
//!   as the forward node reads it.
//! - Gradients of activations are batched like every value. Gradients of
//!   parameters ([`GradOp::is_batched`] is false) are whole tensors of the
//!   parameter's shape: summed over the batch, with no batch dimension.
//! - Ops that recompute something of the forward pass (the argmax of a max
//!   pool) read the forward input `x` again instead of a second output,
//!   which the IR does not have. Batch norm's statistics are computed once,
//!   by a [`GradOp::BatchNormStats`] node both its gradient nodes read, and
//!   its γ and β gradients in one pass, as one `[2, C]` value
//!   ([`GradOp::BatchNormParamGrads`]) whose rows ([`GradOp::Row`]) are the
//!   two parameter gradients.
//! - The training pass [`crate::passes::fuse_training`] sets `relu` on batch
//!   norm's gradient ops where a ReLU is the batch norm's only reader: they
//!   then read the ReLU's output `y` as a mask and the ReLU's own gradient
//!   node goes away.

use super::op::{Activation, Conv2d, ConvTranspose2d, Loss, Padding, Pool2d, UpsampleMode};
use super::{Arity, Shape};

/// A gradient op with its attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum GradOp {
    /// The loss head's gradient with respect to its input, seeded with
    /// ∂L/∂L = 1 and including the batch reduction; softmax is fused for
    /// cross-entropy (`softmax(z) − onehot`). Inputs: `[output]`; reads the
    /// implicit target as the loss head does.
    Loss(Loss),
    /// conv2d's input gradient: the transposed convolution of `dy` with the
    /// forward weight. Inputs: `[dy]`.
    Conv2dData {
        /// The forward convolution.
        conv: Conv2d,
        /// The forward weight's name.
        weight: String,
        /// The forward input's shape (the result's shape).
        input: Shape,
    },
    /// conv2d's weight gradient, `Σₙ dy ⋆ x`. Inputs: `[x, dy]`; unbatched.
    Conv2dWeight {
        /// The forward convolution.
        conv: Conv2d,
    },
    /// conv_transpose2d's input gradient: the convolution of `dy` with the
    /// forward weight. Inputs: `[dy]`.
    ConvTranspose2dData {
        /// The forward transposed convolution.
        conv: ConvTranspose2d,
        /// The forward weight's name.
        weight: String,
        /// The forward input's shape (the result's shape).
        input: Shape,
    },
    /// conv_transpose2d's weight gradient. Inputs: `[x, dy]`; unbatched.
    ConvTranspose2dWeight {
        /// The forward transposed convolution.
        conv: ConvTranspose2d,
    },
    /// A bias gradient: `dy` summed over the batch and every dim but the
    /// first (channels or features). Inputs: `[dy]`; unbatched. Serves
    /// conv, transposed conv, linear and batch norm's β.
    Bias,
    /// linear's input gradient, `dy · W` (a matmul). Inputs: `[dy]`.
    LinearData {
        /// The forward weight's name.
        weight: String,
        /// The forward input features.
        in_features: usize,
    },
    /// linear's weight gradient, `dyᵀ · x` (a matmul over the batch).
    /// Inputs: `[x, dy]`; unbatched.
    LinearWeight,
    /// max_pool2d's input gradient: `dy` routed to each window's argmax,
    /// recomputed from `x` (ties to the first in row-major order).
    /// Inputs: `[x, dy]`.
    MaxPool2d(Pool2d),
    /// avg_pool2d's input gradient: `dy` spread evenly over each window.
    /// Inputs: `[dy]`.
    AvgPool2d {
        /// The forward window.
        pool: Pool2d,
        /// Whether padded zeros count in the average.
        count_pad: bool,
        /// The forward input's shape.
        input: Shape,
    },
    /// global_avg_pool's input gradient. Inputs: `[dy]`.
    GlobalAvgPool {
        /// The forward input's shape.
        input: Shape,
    },
    /// upsample's input gradient: block sums (nearest) or the corner
    /// pixels (zeros). Inputs: `[dy]`.
    Upsample {
        /// The factor.
        scale: usize,
        /// The forward mode.
        mode: UpsampleMode,
    },
    /// pixel_shuffle's input gradient: the inverse shuffle. Inputs: `[dy]`.
    PixelUnshuffle {
        /// The factor.
        r: usize,
    },
    /// An activation's input gradient, `dy ⊙ f′(x)`. Inputs: `[x, dy]`.
    /// Never [`Activation::Step`], which has no gradient.
    Activation(Activation),
    /// PReLU's input gradient. Inputs: `[x, dy]`.
    PreluData {
        /// The forward slope's name.
        weight: String,
    },
    /// PReLU's slope gradient, `Σ dy·x` over `x ≤ 0`. Inputs: `[x, dy]`;
    /// unbatched.
    PreluWeight {
        /// One slope per channel or one in all.
        per_channel: bool,
    },
    /// maxout's input gradient: `dy` routed to each group's argmax,
    /// recomputed from `x`. Inputs: `[x, dy]`.
    Maxout {
        /// The group size.
        k: usize,
    },
    /// softmax's input gradient from its output, `y ⊙ (dy − Σ dy⊙y)`.
    /// Inputs: `[y, dy]`.
    Softmax {
        /// The dim.
        axis: usize,
    },
    /// log_softmax's input gradient from its output, `dy − exp(y) Σ dy`.
    /// Inputs: `[y, dy]`.
    LogSoftmax {
        /// The dim.
        axis: usize,
    },
    /// Batch norm's batch statistics in training mode, as its forward
    /// computes them: row 0 the mean, row 1 `1/√(var + eps)` (biased
    /// variance), per channel. Inputs: `[x]`; unbatched, `[2, C]`.
    BatchNormStats {
        /// Added to the variance.
        eps: f64,
    },
    /// Batch norm's γ and β gradients in one pass: row 0 `Σ g ⊙ x̂`, row 1
    /// `Σ g`, per channel, where `g` is `dy`, or with `relu` `dy` where the
    /// ReLU output `y` is positive (else 0). Inputs: `[x, dy, stats]`, then
    /// `y` with `relu`; unbatched, `[2, C]`.
    BatchNormParamGrads {
        /// Whether `dy` is the gradient of a ReLU of the batch norm (masked
        /// by `y`).
        relu: bool,
    },
    /// Batch norm's input gradient in training mode from the statistics and
    /// the γ/β gradients, `γ·inv·(g − dβ/M − x̂·dγ/M)` with `g` as in
    /// [`GradOp::BatchNormParamGrads`]. Inputs: `[x, dy, stats, dγβ]`, then
    /// `y` with `relu`.
    BatchNormInput {
        /// The forward γ's name.
        weight: String,
        /// Whether `dy` is masked by a ReLU output `y`.
        relu: bool,
    },
    /// Row `index` of an unbatched `[rows, C]` value (a parameter gradient
    /// out of [`GradOp::BatchNormParamGrads`]). Inputs: `[v]`; unbatched,
    /// `[C]`.
    Row {
        /// Which row.
        index: usize,
    },
    /// LRN's input gradient. Inputs: `[x, dy]`.
    Lrn {
        /// The window size in channels.
        n: usize,
        /// Scale.
        alpha: f64,
        /// Exponent.
        beta: f64,
        /// Additive constant.
        k: f64,
    },
    /// Dropout's input gradient: the forward mask (same seed and counter)
    /// applied to `dy`. Inputs: `[dy]`.
    Dropout {
        /// The drop probability.
        p: f64,
        /// The forward dropout layer's name, which names its random stream.
        layer: String,
    },
    /// One input's share of a concat's gradient: `len` entries of dim
    /// `axis` from `start`. Inputs: `[dy]`.
    Slice {
        /// The dim.
        axis: usize,
        /// The first index along `axis`.
        start: usize,
        /// How many.
        len: usize,
    },
}

impl GradOp {
    /// The op's name in dumps (`conv2d_backward_data`).
    pub fn name(&self) -> &'static str {
        match self {
            GradOp::Loss(_) => "loss_backward",
            GradOp::Conv2dData { .. } => "conv2d_backward_data",
            GradOp::Conv2dWeight { .. } => "conv2d_backward_weight",
            GradOp::ConvTranspose2dData { .. } => "conv_transpose2d_backward_data",
            GradOp::ConvTranspose2dWeight { .. } => "conv_transpose2d_backward_weight",
            GradOp::Bias => "bias_backward",
            GradOp::LinearData { .. } => "linear_backward_data",
            GradOp::LinearWeight => "linear_backward_weight",
            GradOp::MaxPool2d(_) => "max_pool2d_backward",
            GradOp::AvgPool2d { .. } => "avg_pool2d_backward",
            GradOp::GlobalAvgPool { .. } => "global_avg_pool_backward",
            GradOp::Upsample { .. } => "upsample_backward",
            GradOp::PixelUnshuffle { .. } => "pixel_unshuffle",
            GradOp::Activation(_) => "activation_backward",
            GradOp::PreluData { .. } => "prelu_backward_data",
            GradOp::PreluWeight { .. } => "prelu_backward_weight",
            GradOp::Maxout { .. } => "maxout_backward",
            GradOp::Softmax { .. } => "softmax_backward",
            GradOp::LogSoftmax { .. } => "log_softmax_backward",
            GradOp::BatchNormStats { .. } => "batch_norm_stats",
            GradOp::BatchNormParamGrads { relu: false } => "batch_norm_backward_params",
            GradOp::BatchNormParamGrads { relu: true } => "batch_norm_relu_backward_params",
            GradOp::BatchNormInput { relu: false, .. } => "batch_norm_backward_input",
            GradOp::BatchNormInput { relu: true, .. } => "batch_norm_relu_backward_input",
            GradOp::Row { .. } => "row",
            GradOp::Lrn { .. } => "lrn_backward",
            GradOp::Dropout { .. } => "dropout_backward",
            GradOp::Slice { .. } => "slice",
        }
    }

    /// How many inputs the op takes.
    pub fn arity(&self) -> Arity {
        match self {
            GradOp::BatchNormParamGrads { relu } => Arity::Exactly(3 + usize::from(*relu)),
            GradOp::BatchNormInput { relu, .. } => Arity::Exactly(4 + usize::from(*relu)),
            GradOp::Conv2dWeight { .. }
            | GradOp::ConvTranspose2dWeight { .. }
            | GradOp::LinearWeight
            | GradOp::MaxPool2d(_)
            | GradOp::Activation(_)
            | GradOp::PreluData { .. }
            | GradOp::PreluWeight { .. }
            | GradOp::Maxout { .. }
            | GradOp::Softmax { .. }
            | GradOp::LogSoftmax { .. }
            | GradOp::Lrn { .. } => Arity::Exactly(2),
            _ => Arity::Exactly(1),
        }
    }

    /// Whether the result has a batch dimension. Parameter gradients are
    /// summed over the batch and do not.
    pub fn is_batched(&self) -> bool {
        !matches!(
            self,
            GradOp::Conv2dWeight { .. }
                | GradOp::ConvTranspose2dWeight { .. }
                | GradOp::Bias
                | GradOp::LinearWeight
                | GradOp::PreluWeight { .. }
                | GradOp::BatchNormStats { .. }
                | GradOp::BatchNormParamGrads { .. }
                | GradOp::Row { .. }
        )
    }

    /// The learned parameter of the forward node that the op reads, if any.
    pub fn reads_param(&self) -> Option<&str> {
        match self {
            GradOp::Conv2dData { weight, .. }
            | GradOp::ConvTranspose2dData { weight, .. }
            | GradOp::LinearData { weight, .. }
            | GradOp::PreluData { weight }
            | GradOp::BatchNormInput { weight, .. } => Some(weight),
            _ => None,
        }
    }

    /// The attributes as `key=value` pairs, in a fixed order, for the text dump.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        let pair = |p: [usize; 2]| format!("[{}, {}]", p[0], p[1]);
        let pad = |c: &Conv2d| match c.padding {
            Padding::Explicit(p) => pair(p),
            Padding::Same => "same".to_string(),
        };
        match self {
            GradOp::Loss(l) => vec![("loss", l.kind.name().to_string())],
            GradOp::Conv2dData {
                conv,
                weight,
                input,
            } => vec![
                ("k", pair(conv.kernel)),
                ("s", pair(conv.stride)),
                ("p", pad(conv)),
                ("d", pair(conv.dilation)),
                ("groups", conv.groups.to_string()),
                ("weight", weight.clone()),
                ("input", input.to_string()),
            ],
            GradOp::Conv2dWeight { conv } => vec![
                ("out", conv.out.to_string()),
                ("k", pair(conv.kernel)),
                ("s", pair(conv.stride)),
                ("p", pad(conv)),
                ("d", pair(conv.dilation)),
                ("groups", conv.groups.to_string()),
            ],
            GradOp::ConvTranspose2dData {
                conv,
                weight,
                input,
            } => vec![
                ("k", pair(conv.kernel)),
                ("s", pair(conv.stride)),
                ("p", pair(conv.padding)),
                ("groups", conv.groups.to_string()),
                ("weight", weight.clone()),
                ("input", input.to_string()),
            ],
            GradOp::ConvTranspose2dWeight { conv } => vec![
                ("out", conv.out.to_string()),
                ("k", pair(conv.kernel)),
                ("s", pair(conv.stride)),
                ("p", pair(conv.padding)),
                ("groups", conv.groups.to_string()),
            ],
            GradOp::Bias | GradOp::LinearWeight => vec![],
            GradOp::LinearData {
                weight,
                in_features,
            } => vec![("weight", weight.clone()), ("in", in_features.to_string())],
            GradOp::MaxPool2d(p) => vec![
                ("k", pair(p.kernel)),
                ("s", pair(p.stride)),
                ("p", pair(p.padding)),
            ],
            GradOp::AvgPool2d {
                pool,
                count_pad,
                input,
            } => vec![
                ("k", pair(pool.kernel)),
                ("s", pair(pool.stride)),
                ("p", pair(pool.padding)),
                ("count_pad", count_pad.to_string()),
                ("input", input.to_string()),
            ],
            GradOp::GlobalAvgPool { input } => vec![("input", input.to_string())],
            GradOp::Upsample { scale, mode } => vec![
                ("scale", scale.to_string()),
                (
                    "mode",
                    match mode {
                        UpsampleMode::Nearest => "nearest".into(),
                        UpsampleMode::Zeros => "zeros".into(),
                    },
                ),
            ],
            GradOp::PixelUnshuffle { r } => vec![("r", r.to_string())],
            GradOp::Activation(a) => vec![("of", super::Op::Activation(*a).name().to_string())],
            GradOp::PreluData { weight } => vec![("weight", weight.clone())],
            GradOp::PreluWeight { per_channel } => {
                vec![("per_channel", per_channel.to_string())]
            }
            GradOp::Maxout { k } => vec![("k", k.to_string())],
            GradOp::Softmax { axis } | GradOp::LogSoftmax { axis } => {
                vec![("axis", axis.to_string())]
            }
            GradOp::BatchNormStats { eps } => vec![("eps", eps.to_string())],
            GradOp::BatchNormParamGrads { .. } => vec![],
            GradOp::BatchNormInput { weight, .. } => vec![("weight", weight.clone())],
            GradOp::Row { index } => vec![("index", index.to_string())],
            GradOp::Lrn { n, alpha, beta, k } => vec![
                ("n", n.to_string()),
                ("alpha", alpha.to_string()),
                ("beta", beta.to_string()),
                ("k", k.to_string()),
            ],
            GradOp::Dropout { p, layer } => {
                vec![("p", p.to_string()), ("layer", layer.clone())]
            }
            GradOp::Slice { axis, start, len } => vec![
                ("axis", axis.to_string()),
                ("start", start.to_string()),
                ("len", len.to_string()),
            ],
        }
    }

    /// The result's shape from the inputs' shapes (in the variant's input
    /// order), or a message saying what does not fit. Only a pass can build
    /// a gradient op, so a mismatch is a compiler bug.
    pub fn output_shape(&self, ins: &[Shape]) -> Result<Shape, String> {
        if !self.arity().allows(ins.len()) {
            return Err(format!(
                "{} takes {} inputs, found {}",
                self.name(),
                self.arity(),
                ins.len()
            ));
        }
        let first = &ins[0];
        let same_as_x = || {
            if ins[0] == ins[1] {
                Ok(ins[0].clone())
            } else {
                Err(format!(
                    "{}: the forward tensor is {} but its gradient is {}",
                    self.name(),
                    ins[0],
                    ins[1]
                ))
            }
        };
        match self {
            GradOp::Loss(_) => Ok(first.clone()),
            GradOp::Conv2dData { input, .. }
            | GradOp::ConvTranspose2dData { input, .. }
            | GradOp::AvgPool2d { input, .. }
            | GradOp::GlobalAvgPool { input } => Ok(input.clone()),
            GradOp::Conv2dWeight { conv } => match (&ins[0].0[..], &ins[1].0[..]) {
                ([c, _, _], [o, _, _]) if *o == conv.out && c % conv.groups == 0 => {
                    Ok(Shape(vec![
                        conv.out,
                        c / conv.groups,
                        conv.kernel[0],
                        conv.kernel[1],
                    ]))
                }
                _ => Err(format!(
                    "conv2d_backward_weight: input {} and gradient {} do not fit",
                    ins[0], ins[1]
                )),
            },
            GradOp::ConvTranspose2dWeight { conv } => match (&ins[0].0[..], &ins[1].0[..]) {
                ([c, _, _], [o, _, _]) if *o == conv.out && conv.out % conv.groups == 0 => {
                    Ok(Shape(vec![
                        *c,
                        conv.out / conv.groups,
                        conv.kernel[0],
                        conv.kernel[1],
                    ]))
                }
                _ => Err(format!(
                    "conv_transpose2d_backward_weight: input {} and gradient {} do not fit",
                    ins[0], ins[1]
                )),
            },
            GradOp::Bias => match first.0.first() {
                Some(&c) => Ok(Shape(vec![c])),
                None => Err("bias_backward: the gradient is a scalar".into()),
            },
            GradOp::LinearData { in_features, .. } => Ok(Shape(vec![*in_features])),
            GradOp::LinearWeight => match (&ins[0].0[..], &ins[1].0[..]) {
                ([i], [o]) => Ok(Shape(vec![*o, *i])),
                _ => Err(format!(
                    "linear_backward_weight: input {} and gradient {} are not vectors",
                    ins[0], ins[1]
                )),
            },
            GradOp::MaxPool2d(_) => Ok(first.clone()),
            GradOp::Upsample { scale, .. } => match first.0[..] {
                [c, h, w] if *scale > 0 && h % scale == 0 && w % scale == 0 => {
                    Ok(Shape(vec![c, h / scale, w / scale]))
                }
                _ => Err(format!(
                    "upsample_backward: gradient {first} is not a multiple of {scale}"
                )),
            },
            GradOp::PixelUnshuffle { r } => match first.0[..] {
                [c, h, w] if *r > 0 && h % r == 0 && w % r == 0 => {
                    Ok(Shape(vec![c * r * r, h / r, w / r]))
                }
                _ => Err(format!(
                    "pixel_unshuffle: gradient {first} is not a multiple of {r}"
                )),
            },
            GradOp::Activation(_)
            | GradOp::PreluData { .. }
            | GradOp::Softmax { .. }
            | GradOp::LogSoftmax { .. }
            | GradOp::Lrn { .. } => same_as_x(),
            GradOp::PreluWeight { per_channel } => match first.0.first() {
                Some(&c) => Ok(Shape(vec![if *per_channel { c } else { 1 }])),
                None => Err("prelu_backward_weight: the input is a scalar".into()),
            },
            GradOp::Maxout { k } => {
                let mut want = ins[0].clone();
                if let Some(c) = want.0.first_mut() {
                    *c /= (*k).max(1);
                }
                if want == ins[1] {
                    Ok(ins[0].clone())
                } else {
                    Err(format!(
                        "maxout_backward: input {} does not give gradient {}",
                        ins[0], ins[1]
                    ))
                }
            }
            GradOp::BatchNormStats { .. } => match first.0.first() {
                Some(&c) => Ok(Shape(vec![2, c])),
                None => Err("batch_norm_stats: the input is a scalar".into()),
            },
            GradOp::BatchNormParamGrads { relu } | GradOp::BatchNormInput { relu, .. } => {
                let c = first.0.first().copied().unwrap_or(0);
                let stats = Shape(vec![2, c]);
                let params = matches!(self, GradOp::BatchNormParamGrads { .. });
                let tail = if params { 3 } else { 4 };
                let fits = c > 0
                    && ins[1] == *first
                    && ins[2] == stats
                    && (params || ins[3] == stats)
                    && (!relu || ins[tail] == *first);
                if !fits {
                    return Err(format!(
                        "{}: inputs {} do not fit a batch norm over {first}",
                        self.name(),
                        ins.iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Ok(if params { stats } else { first.clone() })
            }
            GradOp::Row { index } => match first.0[..] {
                [rows, c] if *index < rows => Ok(Shape(vec![c])),
                _ => Err(format!("row: no row {index} in {first}")),
            },
            GradOp::Dropout { .. } => Ok(first.clone()),
            GradOp::Slice { axis, start, len } => match first.0.get(*axis) {
                Some(&d) if start + len <= d => {
                    let mut s = first.clone();
                    s.0[*axis] = *len;
                    Ok(s)
                }
                _ => Err(format!(
                    "slice: [{start}, {}) is out of range along axis {axis} of {first}",
                    start + len
                )),
            },
        }
    }
}
