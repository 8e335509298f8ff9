//! The closed set of primitive ops, grouped by category, with their attributes.
//!
//! Every op of the language (`docs/language.md`) is one variant of [`Op`];
//! blocks, `if`, `repeat` and `identity` are gone by the time a graph exists.
//! The predicates that passes ask ("is this train-only?", "does it carry
//! parameters?", "how many inputs does it take?") live here and nowhere else.

use super::grad::GradOp;
use std::fmt;

/// A primitive op with its attributes, as the IR holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A graph input; `index` is its position in [`Graph::inputs`](super::Graph::inputs).
    Input {
        /// The position among the graph inputs.
        index: usize,
    },
    /// 2-D convolution, OIHW weights.
    Conv2d(Conv2d),
    /// 2-D transposed convolution, weights `[in, out/groups, kh, kw]`.
    ConvTranspose2d(ConvTranspose2d),
    /// Fully connected layer on a rank-1 input, weights `[out, in]`.
    Linear {
        /// Output features.
        out: usize,
        /// Whether a bias is added.
        bias: bool,
        /// The input features the user asserted (`in = ...`), if any.
        in_features: Option<usize>,
    },
    /// Collapses the example's dims into one.
    Flatten,
    /// Reshapes the example to `shape`; one entry may be `-1`.
    Reshape {
        /// The target shape as written.
        shape: Vec<i64>,
    },
    /// 2-D max pooling.
    MaxPool2d(Pool2d),
    /// 2-D average pooling.
    AvgPool2d {
        /// Window, stride, padding.
        pool: Pool2d,
        /// Whether padded zeros count in the average.
        count_pad: bool,
    },
    /// Mean over height and width: `[C, H, W] → [C]`.
    GlobalAvgPool,
    /// Upsampling by an integer factor.
    Upsample {
        /// The factor on height and width.
        scale: usize,
        /// Copy the pixel (`nearest`) or insert zeros (`zeros`).
        mode: UpsampleMode,
    },
    /// Sub-pixel shuffle: `[C·r², H, W] → [C, H·r, W·r]`.
    PixelShuffle {
        /// The factor.
        r: usize,
    },
    /// An elementwise activation without parameters.
    Activation(Activation),
    /// Leaky ReLU with a learned slope.
    Prelu {
        /// One slope per channel (`true`) or one in all.
        per_channel: bool,
    },
    /// Maximum over groups of `k` channels: `[C, ...] → [C/k, ...]`.
    Maxout {
        /// The group size.
        k: usize,
    },
    /// Softmax over one dim of the example.
    Softmax {
        /// The dim.
        axis: usize,
    },
    /// Log-softmax over one dim of the example.
    LogSoftmax {
        /// The dim.
        axis: usize,
    },
    /// Batch normalization, 1-d on `[D]` and 2-d on `[C, H, W]`. Uses batch
    /// statistics in training and the running statistics at inference.
    BatchNorm {
        /// Added to the variance.
        eps: f64,
        /// The running statistics' update rate.
        momentum: f64,
    },
    /// AlexNet's local response normalization across channels.
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
    /// Dropout; train-only (the identity at inference).
    Dropout {
        /// The probability of zeroing an element.
        p: f64,
    },
    /// Elementwise sum of two or more tensors of one shape.
    Add,
    /// Concatenation along one dim of the example.
    Concat {
        /// The dim.
        axis: usize,
    },
    /// The loss head: the output and an implicit target give a scalar.
    Loss(Loss),
    /// A gradient op of the backward half of a joint graph (built by autodiff).
    Grad(GradOp),
    /// A fused inference kernel (built by `passes::fuse_for_inference`; never
    /// in a graph that autodiff sees).
    Fused(Fused),
}

/// A fused kernel: an anchor op, an inference batch norm folded into its
/// weights, an epilogue applied to each output element while it is hot,
/// and, for a convolution, a max pool of the result.
///
/// For a node with inputs `[x, r1, r2, ...]` the value is
/// `pool(epilogue(bn_affine(anchor(x))))`, where
/// `bn_affine(v)[c] = (v − mean[c])·γ[c]/√(var[c] + eps) + β[c]` with the
/// running statistics, and each [`Epilogue::Add`] adds the next extra input
/// (`r1`, then `r2`, ...). The parameters are, in order: the anchor's
/// weight and bias (if it has one), then, with a folded batch norm, its γ,
/// β, running mean and running variance, each keeping its original name
/// and role, so the fused graph's parameter layout equals the unfused one's.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// The op that produces the first value (or the identity on input 0).
    pub anchor: Anchor,
    /// An inference batch norm applied to the anchor's output.
    pub folded_bn: Option<FoldedBn>,
    /// What is applied to each element afterwards, in order.
    pub epilogue: Vec<Epilogue>,
    /// A max pool of the epilogue's result (a conv2d anchor only, and no
    /// epilogue `add`): the kernel writes only the pooled values.
    pub pool: Option<Pool2d>,
}

/// The op a [`Fused`] kernel is built around.
#[derive(Debug, Clone, PartialEq)]
pub enum Anchor {
    /// A 2-D convolution (its parameters are the node's first ones).
    Conv2d(Conv2d),
    /// A fully connected layer on a rank-1 input.
    Linear {
        /// Output features.
        out: usize,
        /// Whether the layer adds its own bias.
        bias: bool,
    },
    /// No op: the epilogue runs on input 0 itself (an elementwise chain).
    Identity,
}

/// An inference batch norm folded into a [`Fused`] kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedBn {
    /// Added to the running variance.
    pub eps: f64,
    /// The batch norm layer's name: its parameters are
    /// `<layer>.weight`, `<layer>.bias`, `<layer>.running_mean` and
    /// `<layer>.running_var`, as before folding.
    pub layer: String,
}

/// One step of a [`Fused`] kernel's epilogue.
#[derive(Debug, Clone, PartialEq)]
pub enum Epilogue {
    /// `v = act(v)`.
    Activation(Activation),
    /// `v += ` the next extra input (`inputs[1]`, `inputs[2]`, ... in order).
    Add,
    /// `v = v·s`.
    Scale(f64),
}

impl Fused {
    /// How many extra inputs the epilogue adds (its [`Epilogue::Add`] steps).
    pub fn extra_inputs(&self) -> usize {
        self.epilogue
            .iter()
            .filter(|e| matches!(e, Epilogue::Add))
            .count()
    }

    /// How many parameters the anchor owns (weight, and bias if any).
    pub fn anchor_params(&self) -> usize {
        match &self.anchor {
            Anchor::Conv2d(c) => 1 + c.bias as usize,
            Anchor::Linear { bias, .. } => 1 + *bias as usize,
            Anchor::Identity => 0,
        }
    }

    /// The anchor as the op it replaced (`None` for the identity).
    pub fn anchor_op(&self) -> Option<Op> {
        match &self.anchor {
            Anchor::Conv2d(c) => Some(Op::Conv2d(c.clone())),
            Anchor::Linear { out, bias } => Some(Op::Linear {
                out: *out,
                bias: *bias,
                in_features: None,
            }),
            Anchor::Identity => None,
        }
    }
}

impl fmt::Display for Fused {
    /// The one-line form, such as `fused[conv2d +bn relu add relu]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fused[")?;
        match &self.anchor {
            Anchor::Conv2d(_) => write!(f, "conv2d")?,
            Anchor::Linear { .. } => write!(f, "linear")?,
            Anchor::Identity => write!(f, "identity")?,
        }
        if self.folded_bn.is_some() {
            write!(f, " +bn")?;
        }
        for e in &self.epilogue {
            write!(f, " {e}")?;
        }
        if let Some(p) = &self.pool {
            write!(
                f,
                " max_pool2d({}x{}/{})",
                p.kernel[0], p.kernel[1], p.stride[0]
            )?;
        }
        write!(f, "]")
    }
}

impl fmt::Display for Epilogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Epilogue::Activation(a) => {
                write!(f, "{}", Op::Activation(*a).name())?;
                match a {
                    Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => {
                        write!(f, "({alpha})")
                    }
                    _ => Ok(()),
                }
            }
            Epilogue::Add => write!(f, "add"),
            Epilogue::Scale(s) => write!(f, "scale({s})"),
        }
    }
}

/// The attributes of `conv2d`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// Output channels.
    pub out: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: Padding,
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// Whether a bias is added.
    pub bias: bool,
    /// Whether a window that does not fit exactly is an error.
    pub exact: bool,
    /// The input channels the user asserted (`in = ...`), if any.
    pub in_channels: Option<usize>,
}

/// The attributes of `conv_transpose2d`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose2d {
    /// Output channels.
    pub out: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding `[ph, pw]`.
    pub padding: [usize; 2],
    /// Extra size added on one side of the output `[oh, ow]`.
    pub output_padding: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// Whether a bias is added.
    pub bias: bool,
    /// The input channels the user asserted (`in = ...`), if any.
    pub in_channels: Option<usize>,
}

/// Convolution padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same padding `[ph, pw]` on both sides of each dim (`valid` is `[0, 0]`).
    Explicit([usize; 2]),
    /// Output size `⌈H/s⌉`; the padding is computed from the input, the
    /// extra pixel (if the total is odd) going at the end.
    Same,
}

impl Padding {
    /// The padding `[[top, bottom], [left, right]]` for an input of
    /// `[h, w]`, given the kernel, stride and dilation.
    pub fn resolve(
        self,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [[usize; 2]; 2] {
        match self {
            Padding::Explicit([ph, pw]) => [[ph, ph], [pw, pw]],
            Padding::Same => {
                let mut out = [[0; 2]; 2];
                for i in 0..2 {
                    let o = input[i].div_ceil(stride[i]);
                    let span = dilation[i] * (kernel[i] - 1) + 1;
                    let total = ((o - 1) * stride[i] + span).saturating_sub(input[i]);
                    out[i] = [total / 2, total - total / 2];
                }
                out
            }
        }
    }
}

/// The attributes shared by max and average pooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool2d {
    /// Window `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding `[ph, pw]`.
    pub padding: [usize; 2],
    /// Whether a window that does not fit exactly is an error.
    pub exact: bool,
    /// Whether the output size rounds up (PyTorch's `ceil_mode`): a last,
    /// partial window is kept if it starts inside the input or left padding.
    pub ceil: bool,
}

/// How `upsample` fills the new pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsampleMode {
    /// Copies each pixel into its `scale × scale` square.
    Nearest,
    /// Puts each pixel at the square's corner and zeros elsewhere (bed of nails).
    Zeros,
}

/// The elementwise activations without parameters of their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `alpha·x`.
    LeakyRelu {
        /// The negative slope.
        alpha: f64,
    },
    /// `x` if positive, else `alpha·(eˣ − 1)`.
    Elu {
        /// The negative scale.
        alpha: f64,
    },
    /// Self-normalizing ELU with the standard constants.
    Selu,
    /// `1/(1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `x·sigmoid(x)` (also called SiLU).
    Swish,
    /// The perceptron's step: `1` if `x > 0`, else `0`; forward only.
    Step,
}

/// The loss head's kind and reduction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    /// Which loss.
    pub kind: LossKind,
    /// Mean or sum over the batch.
    pub reduction: Reduction,
}

/// The losses of the language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    /// Softmax cross-entropy from logits; class-index target.
    CrossEntropy,
    /// Negative log-likelihood of log-probabilities; class-index target.
    Nll,
    /// The multiclass SVM loss; class-index target.
    MulticlassHinge {
        /// The margin.
        margin: f64,
    },
    /// `½‖o − y‖²`; target of the output's shape.
    Mse,
    /// `‖o − y‖₁`; target of the output's shape.
    L1,
    /// Smooth L1; target of the output's shape.
    Huber {
        /// Where the quadratic part ends.
        delta: f64,
    },
    /// Binary cross-entropy; target of the output's shape in `[0, 1]`.
    BinaryCrossEntropy {
        /// Whether the input is logits (sigmoid fused) or probabilities.
        from_logits: bool,
    },
}

impl LossKind {
    /// Whether the target is a class index (rather than a tensor of the
    /// output's shape).
    pub fn takes_class_index(self) -> bool {
        matches!(
            self,
            LossKind::CrossEntropy | LossKind::Nll | LossKind::MulticlassHinge { .. }
        )
    }

    /// The loss's name in the language.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "cross_entropy",
            LossKind::Nll => "nll",
            LossKind::MulticlassHinge { .. } => "multiclass_hinge",
            LossKind::Mse => "mse",
            LossKind::L1 => "l1",
            LossKind::Huber { .. } => "huber",
            LossKind::BinaryCrossEntropy { .. } => "binary_cross_entropy",
        }
    }
}

/// How a loss reduces over the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over the batch.
    Mean,
    /// The sum over the batch.
    Sum,
}

/// The categories the ops fall into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Graph inputs.
    Input,
    /// Convolutions and fully connected layers: the ops that do multiply-adds.
    ConvLinear,
    /// Max, average and global pooling.
    Pooling,
    /// Upsampling and pixel shuffle.
    Resampling,
    /// Elementwise activations, PReLU, maxout, softmax.
    Activation,
    /// Batch norm, LRN, dropout.
    Normalization,
    /// Flatten, reshape, add, concat.
    Structural,
    /// The loss head.
    Loss,
    /// Gradient ops (the backward half of a joint graph).
    Gradient,
    /// Fused inference kernels.
    Fused,
}

/// How many inputs an op takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
}

impl Arity {
    /// Whether `n` inputs are allowed.
    pub fn allows(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(k) => write!(f, "{k}"),
            Arity::AtLeast(k) => write!(f, "at least {k}"),
        }
    }
}

impl Op {
    /// The op's name in the language (`conv2d`, `relu`, `cross_entropy`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Conv2d(_) => "conv2d",
            Op::ConvTranspose2d(_) => "conv_transpose2d",
            Op::Linear { .. } => "linear",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Upsample { .. } => "upsample",
            Op::PixelShuffle { .. } => "pixel_shuffle",
            Op::Activation(a) => match a {
                Activation::Relu => "relu",
                Activation::LeakyRelu { .. } => "leaky_relu",
                Activation::Elu { .. } => "elu",
                Activation::Selu => "selu",
                Activation::Sigmoid => "sigmoid",
                Activation::Tanh => "tanh",
                Activation::Swish => "swish",
                Activation::Step => "step",
            },
            Op::Prelu { .. } => "prelu",
            Op::Maxout { .. } => "maxout",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Lrn { .. } => "lrn",
            Op::Dropout { .. } => "dropout",
            Op::Add => "add",
            Op::Concat { .. } => "concat",
            Op::Loss(l) => l.kind.name(),
            Op::Grad(g) => g.name(),
            Op::Fused(_) => "fused",
        }
    }

    /// The op as the text dump writes it: its name, or for a fused kernel
    /// its one-line form (`fused[conv2d +bn add relu]`).
    pub fn label(&self) -> String {
        match self {
            Op::Fused(f) => f.to_string(),
            _ => self.name().to_string(),
        }
    }

    /// The op's category.
    pub fn category(&self) -> Category {
        match self {
            Op::Input { .. } => Category::Input,
            Op::Conv2d(_) | Op::ConvTranspose2d(_) | Op::Linear { .. } => Category::ConvLinear,
            Op::MaxPool2d(_) | Op::AvgPool2d { .. } | Op::GlobalAvgPool => Category::Pooling,
            Op::Upsample { .. } | Op::PixelShuffle { .. } => Category::Resampling,
            Op::Activation(_)
            | Op::Prelu { .. }
            | Op::Maxout { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. } => Category::Activation,
            Op::BatchNorm { .. } | Op::Lrn { .. } | Op::Dropout { .. } => Category::Normalization,
            Op::Flatten | Op::Reshape { .. } | Op::Add | Op::Concat { .. } => Category::Structural,
            Op::Loss(_) => Category::Loss,
            Op::Grad(_) => Category::Gradient,
            Op::Fused(_) => Category::Fused,
        }
    }

    /// How many inputs the op takes.
    pub fn arity(&self) -> Arity {
        match self {
            Op::Input { .. } => Arity::Exactly(0),
            Op::Add => Arity::AtLeast(2),
            Op::Concat { .. } => Arity::AtLeast(1),
            Op::Grad(g) => g.arity(),
            Op::Fused(f) => Arity::Exactly(1 + f.extra_inputs()),
            _ => Arity::Exactly(1),
        }
    }

    /// Whether the op exists only in training (dropout: the identity at
    /// inference).
    pub fn is_train_only(&self) -> bool {
        matches!(self, Op::Dropout { .. })
    }

    /// Whether the op computes differently in training and at inference
    /// (dropout; batch norm's batch versus running statistics).
    pub fn has_train_mode(&self) -> bool {
        matches!(self, Op::Dropout { .. } | Op::BatchNorm { .. })
    }

    /// Whether the value has a batch dimension: every value but the loss
    /// (a scalar reduced over the batch) and parameter gradients.
    pub fn is_batched(&self) -> bool {
        match self {
            Op::Loss(_) => false,
            Op::Grad(g) => g.is_batched(),
            _ => true,
        }
    }

    /// Whether the output has the input's shape and each element depends
    /// only on the same element of the input.
    pub fn is_elementwise(&self) -> bool {
        match self {
            Op::Activation(_) | Op::Prelu { .. } | Op::Dropout { .. } => true,
            Op::Fused(f) => f.anchor == Anchor::Identity && f.extra_inputs() == 0,
            _ => false,
        }
    }

    /// Whether the op counts multiply-adds in summaries (convolutions and
    /// linear layers only, as the seeds count, and fused kernels built
    /// around one).
    pub fn counts_macs(&self) -> bool {
        match self {
            Op::Fused(f) => f.anchor != Anchor::Identity,
            _ => self.category() == Category::ConvLinear,
        }
    }

    /// Whether the op only relabels its input's memory (flatten, reshape)
    /// or is the identity at inference (dropout): no kernel runs for it
    /// when a network predicts.
    pub fn is_inference_alias(&self) -> bool {
        matches!(self, Op::Flatten | Op::Reshape { .. } | Op::Dropout { .. })
    }

    /// The attributes as `key=value` pairs, in a fixed order, for the text dump.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        fn pair(p: [usize; 2]) -> String {
            format!("[{}, {}]", p[0], p[1])
        }
        match self {
            Op::Input { index } => vec![("index", index.to_string())],
            Op::Conv2d(c) => {
                let mut v = vec![
                    ("out", c.out.to_string()),
                    ("k", pair(c.kernel)),
                    ("s", pair(c.stride)),
                    (
                        "p",
                        match c.padding {
                            Padding::Explicit(p) => pair(p),
                            Padding::Same => "same".into(),
                        },
                    ),
                    ("d", pair(c.dilation)),
                    ("groups", c.groups.to_string()),
                    ("bias", c.bias.to_string()),
                ];
                if c.exact {
                    v.push(("exact", "true".into()));
                }
                v
            }
            Op::ConvTranspose2d(c) => vec![
                ("out", c.out.to_string()),
                ("k", pair(c.kernel)),
                ("s", pair(c.stride)),
                ("p", pair(c.padding)),
                ("output_padding", pair(c.output_padding)),
                ("d", pair(c.dilation)),
                ("groups", c.groups.to_string()),
                ("bias", c.bias.to_string()),
            ],
            Op::Linear { out, bias, .. } => {
                vec![("out", out.to_string()), ("bias", bias.to_string())]
            }
            Op::Flatten | Op::GlobalAvgPool | Op::Add => vec![],
            Op::Reshape { shape } => vec![("shape", format!("{shape:?}"))],
            Op::MaxPool2d(p) => pool_attrs(p),
            Op::AvgPool2d { pool, count_pad } => {
                let mut v = pool_attrs(pool);
                v.push(("count_pad", count_pad.to_string()));
                v
            }
            Op::Upsample { scale, mode } => vec![
                ("scale", scale.to_string()),
                (
                    "mode",
                    match mode {
                        UpsampleMode::Nearest => "nearest".into(),
                        UpsampleMode::Zeros => "zeros".into(),
                    },
                ),
            ],
            Op::PixelShuffle { r } => vec![("r", r.to_string())],
            Op::Activation(Activation::LeakyRelu { alpha } | Activation::Elu { alpha }) => {
                vec![("alpha", alpha.to_string())]
            }
            Op::Activation(_) => vec![],
            Op::Prelu { per_channel } => vec![("per_channel", per_channel.to_string())],
            Op::Maxout { k } => vec![("k", k.to_string())],
            Op::Softmax { axis } | Op::LogSoftmax { axis } | Op::Concat { axis } => {
                vec![("axis", axis.to_string())]
            }
            Op::BatchNorm { eps, momentum } => {
                vec![("eps", eps.to_string()), ("momentum", momentum.to_string())]
            }
            Op::Lrn { n, alpha, beta, k } => vec![
                ("n", n.to_string()),
                ("alpha", alpha.to_string()),
                ("beta", beta.to_string()),
                ("k", k.to_string()),
            ],
            Op::Dropout { p } => vec![("p", p.to_string())],
            Op::Loss(l) => {
                let mut v = match l.kind {
                    LossKind::MulticlassHinge { margin } => vec![("margin", margin.to_string())],
                    LossKind::Huber { delta } => vec![("delta", delta.to_string())],
                    LossKind::BinaryCrossEntropy { from_logits } => {
                        vec![("from_logits", from_logits.to_string())]
                    }
                    _ => vec![],
                };
                v.push((
                    "reduction",
                    match l.reduction {
                        Reduction::Mean => "mean".into(),
                        Reduction::Sum => "sum".into(),
                    },
                ));
                v
            }
            Op::Grad(g) => g.attrs(),
            Op::Fused(f) => {
                let mut v = f.anchor_op().map(|a| a.attrs()).unwrap_or_default();
                if let Some(bn) = &f.folded_bn {
                    v.push(("bn", bn.layer.clone()));
                    v.push(("eps", bn.eps.to_string()));
                }
                v
            }
        }
    }
}

fn pool_attrs(p: &Pool2d) -> Vec<(&'static str, String)> {
    let pair = |p: [usize; 2]| format!("[{}, {}]", p[0], p[1]);
    let mut v = vec![
        ("k", pair(p.kernel)),
        ("s", pair(p.stride)),
        ("p", pair(p.padding)),
    ];
    if p.exact {
        v.push(("exact", "true".into()));
    }
    if p.ceil {
        v.push(("ceil", "true".into()));
    }
    v
}
