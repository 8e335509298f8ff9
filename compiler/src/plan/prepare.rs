//! Prepared tensors: what inference reads instead of raw parameters.
//!
//! A prepared tensor is derived from parameters and buffers by a fixed
//! [`Recipe`]: batch norm folded into the weight and bias of the layer
//! before it, or a convolution's weights put once into the packed panels
//! its GEMM reads. The generated type holds them all in one vector beside
//! the parameters and recomputes them, in place, whenever something may
//! have changed the parameters or buffers; inference steps name the
//! prepared tensors they read in [`StepPrepared`].
//!
//! A *transient* prepared tensor is only an intermediate of the
//! computation (a folded convolution weight that is then packed): all of
//! them share one region at the end of the vector, so the folded copy costs
//! no memory beyond the largest one. A recipe reads only parameters,
//! buffers and transient tensors listed before it.

use super::{Kernel, Program, Step};
use crate::ir::{self, Op, Shape};

/// What `plan::build_with` does besides lowering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Run `passes::fuse_for_inference` on the inference routine's graph
    /// (training always runs on the unfused graph, which autodiff needs).
    pub fuse: bool,
    /// Pack convolution weights for the GEMM once, as prepared tensors,
    /// instead of at every call.
    pub prepack: bool,
}

impl Default for PlanOptions {
    /// Fused, with prepacked weights.
    fn default() -> Self {
        PlanOptions {
            fuse: true,
            prepack: true,
        }
    }
}

/// One tensor derived from the parameters and buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// A readable name (`conv2d0.weight+bn`, `conv2d0.weight:packed`), for
    /// comments in generated code.
    pub name: String,
    /// How it is computed.
    pub recipe: Recipe,
    /// Whether it is only an intermediate of a later recipe (see the
    /// module doc).
    pub transient: bool,
}

/// How a prepared tensor is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// `w'[o, …] = w[o, …]·γ[o]/√(var[o] + ε)`, `w` the parameter at this
    /// index of [`Program::params`].
    FoldWeight {
        /// The layer's weight.
        weight: usize,
        /// The batch norm folded into it.
        bn: FoldBn,
    },
    /// `b'[o] = (b[o] − mean[o])·γ[o]/√(var[o] + ε) + β[o]` (`b` zero when
    /// the layer has no bias).
    FoldBias {
        /// The layer's bias, if it has one.
        bias: Option<usize>,
        /// The batch norm folded into it.
        bn: FoldBn,
    },
    /// A convolution's weights packed for its forward GEMM
    /// (`kernels::conv::conv2d_pack_weights`); the length depends on the
    /// kernel variant chosen at run time.
    PackConv {
        /// Where the OIHW weights are.
        weight: Source,
        /// The convolution.
        conv: ir::Conv2d,
        /// Its per-example input shape.
        input: Shape,
        /// Its per-example output shape.
        output: Shape,
    },
}

/// The batch norm of a fold: indices of γ and β into [`Program::params`],
/// of the running mean and variance into [`Program::buffers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldBn {
    /// γ.
    pub gamma: usize,
    /// β.
    pub beta: usize,
    /// The running mean.
    pub mean: usize,
    /// The running variance.
    pub var: usize,
    /// Added to the variance.
    pub eps: f64,
}

/// Where a recipe reads a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A parameter ([`Program::params`] index).
    Param(usize),
    /// An earlier prepared tensor ([`Program::prepared`] index).
    Prepared(usize),
}

/// The prepared tensors one inference step reads instead of its raw
/// parameters ([`Program::prepared`] indices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepPrepared {
    /// The weight: packed (a [`Recipe::PackConv`]) or folded.
    pub weight: Option<usize>,
    /// The bias (a [`Recipe::FoldBias`]).
    pub bias: Option<usize>,
}

impl Program {
    /// Whether prepared tensor `i` is a packed convolution weight.
    pub fn is_packed(&self, i: usize) -> bool {
        matches!(self.prepared[i].recipe, Recipe::PackConv { .. })
    }
}

/// Decides the prepared tensors of the inference routine and points its
/// steps at them.
pub(super) fn prepare(program: &mut Program, options: &PlanOptions) {
    let mut prepared = Vec::new();
    let mut steps = std::mem::take(&mut program.infer.steps);
    for step in &mut steps {
        let Kernel::Infer(op) = &step.kernel else {
            continue;
        };
        let (conv, folded, has_bias) = match op {
            Op::Conv2d(c) => (Some(c.clone()), None, c.bias),
            Op::Fused(f) => match &f.anchor {
                ir::Anchor::Conv2d(c) => (Some(c.clone()), f.folded_bn.clone(), c.bias),
                ir::Anchor::Linear { bias, .. } => (None, f.folded_bn.clone(), *bias),
                ir::Anchor::Identity => continue,
            },
            _ => continue,
        };
        let pack = options.prepack && conv.is_some() && worth_prepacking(step);
        let weight = step.params[0];
        let mut source = Source::Param(weight);
        if let Some(fb) = folded {
            // Learned: weight, bias (if any), γ, β; buffers: mean, variance.
            let bn = FoldBn {
                gamma: step.params[1 + usize::from(has_bias)],
                beta: step.params[2 + usize::from(has_bias)],
                mean: step.buffers[0],
                var: step.buffers[1],
                eps: fb.eps,
            };
            let bias = has_bias.then(|| step.params[1]);
            let base = &program.params[weight].name;
            prepared.push(Prepared {
                name: format!("{base}+{}", fb.layer),
                recipe: Recipe::FoldWeight { weight, bn },
                transient: pack,
            });
            source = Source::Prepared(prepared.len() - 1);
            step.prepared.weight = Some(prepared.len() - 1);
            let bias_name = match bias {
                Some(b) => program.params[b].name.clone(),
                None => format!("{base}:bias"),
            };
            prepared.push(Prepared {
                name: format!("{bias_name}+{}", fb.layer),
                recipe: Recipe::FoldBias { bias, bn },
                transient: false,
            });
            step.prepared.bias = Some(prepared.len() - 1);
        }
        if let (true, Some(conv)) = (pack, conv) {
            let base = &program.params[weight].name;
            prepared.push(Prepared {
                name: format!("{base}:packed"),
                recipe: Recipe::PackConv {
                    weight: source,
                    conv,
                    input: step.inputs[0].shape.clone(),
                    output: step.output.shape.clone(),
                },
                transient: false,
            });
            step.prepared.weight = Some(prepared.len() - 1);
        }
    }
    program.infer.steps = steps;
    program.prepared = prepared;
}

/// Whether packing the step's convolution weights once pays: the forward
/// pass packs them at every call exactly when each image's product has
/// more than one column (one output position takes the matrix-vector path,
/// which reads the weights as stored).
fn worth_prepacking(step: &Step) -> bool {
    let d = step.output.shape.dims();
    d.iter().skip(1).product::<usize>() > 1
}
