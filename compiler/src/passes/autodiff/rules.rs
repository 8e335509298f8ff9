//! The gradient rules, one per forward primitive: given the gradient `dy` of
//! a node's output, the gradients of its inputs and learned parameters as
//! new nodes (tinygrad's `gradient.py`, as a table).
//!
//! Each arm reads: "the input gradient is …; the weight gradient is …".
//! Convolution backward is a transposed convolution (input) and a
//! correlation of input and `dy` (weight); linear backward is two matmuls;
//! reshapes and flattens reshape the gradient back; `add` passes `dy` to
//! every input; `concat` slices it.

use super::{Builder, Grads};
use crate::codes;
use crate::diag::Diagnostic;
use crate::ir::{Activation, GradOp, NodeId, Op, ValueId};

/// The gradients of node `id`'s inputs (where `wants`) and learned
/// parameters, given `dy`.
pub(super) fn backward(
    b: &mut Builder,
    id: NodeId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, Diagnostic> {
    let node = b.graph.node(id).clone();
    let x = node.inputs.first().copied();
    let want_x = wants.first().copied().unwrap_or(false);
    let shape_of = |b: &Builder, v: ValueId| b.graph.shape(v).cloned().unwrap_or_default();
    let param = |i: usize| node.params.get(i).map(|p| p.name.clone());
    let mut g = Grads {
        inputs: vec![None; node.inputs.len()],
        params: Vec::new(),
    };
    let grad = |op: GradOp| Op::Grad(op);
    // The one-input, optional-input-gradient rules.
    let dx_if_wanted = |b: &mut Builder, g: &mut Grads, op: Op, ins: Vec<ValueId>| {
        if want_x {
            g.inputs[0] = Some(b.emit(id, "grad_input", op, ins));
        }
    };
    let missing = || {
        Diagnostic::error(
            codes::INTERNAL,
            b.graph.loc_of(id),
            format!(
                "autodiff: `{}` ({}) has no input or parameter where its rule needs one",
                b.graph.name_of(id),
                node.op.name()
            ),
        )
    };
    let x = x.ok_or_else(missing)?;
    match &node.op {
        Op::Conv2d(c) => {
            let w = param(0).ok_or_else(missing)?;
            let input = shape_of(b, x);
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::Conv2dData {
                    conv: c.clone(),
                    weight: w.clone(),
                    input,
                }),
                vec![dy],
            );
            let dw = b.emit(
                id,
                "grad_weight",
                grad(GradOp::Conv2dWeight { conv: c.clone() }),
                vec![x, dy],
            );
            g.params.push((w, dw));
            if let Some(bias) = param(1) {
                g.params
                    .push((bias, b.emit(id, "grad_bias", grad(GradOp::Bias), vec![dy])));
            }
        }
        Op::ConvTranspose2d(c) => {
            let w = param(0).ok_or_else(missing)?;
            let input = shape_of(b, x);
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::ConvTranspose2dData {
                    conv: c.clone(),
                    weight: w.clone(),
                    input,
                }),
                vec![dy],
            );
            let dw = b.emit(
                id,
                "grad_weight",
                grad(GradOp::ConvTranspose2dWeight { conv: c.clone() }),
                vec![x, dy],
            );
            g.params.push((w, dw));
            if let Some(bias) = param(1) {
                g.params
                    .push((bias, b.emit(id, "grad_bias", grad(GradOp::Bias), vec![dy])));
            }
        }
        Op::Linear { .. } => {
            let w = param(0).ok_or_else(missing)?;
            let in_features = shape_of(b, x).dims().first().copied().unwrap_or(0);
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::LinearData {
                    weight: w.clone(),
                    in_features,
                }),
                vec![dy],
            );
            let dw = b.emit(id, "grad_weight", grad(GradOp::LinearWeight), vec![x, dy]);
            g.params.push((w, dw));
            if let Some(bias) = param(1) {
                g.params
                    .push((bias, b.emit(id, "grad_bias", grad(GradOp::Bias), vec![dy])));
            }
        }
        Op::Flatten | Op::Reshape { .. } => {
            let shape = shape_of(b, x).dims().iter().map(|&d| d as i64).collect();
            dx_if_wanted(b, &mut g, Op::Reshape { shape }, vec![dy]);
        }
        Op::MaxPool2d(p) => {
            dx_if_wanted(b, &mut g, grad(GradOp::MaxPool2d(p.clone())), vec![x, dy])
        }
        Op::AvgPool2d { pool, count_pad } => {
            let input = shape_of(b, x);
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::AvgPool2d {
                    pool: pool.clone(),
                    count_pad: *count_pad,
                    input,
                }),
                vec![dy],
            );
        }
        Op::GlobalAvgPool => {
            let input = shape_of(b, x);
            dx_if_wanted(b, &mut g, grad(GradOp::GlobalAvgPool { input }), vec![dy]);
        }
        Op::Upsample { scale, mode } => dx_if_wanted(
            b,
            &mut g,
            grad(GradOp::Upsample {
                scale: *scale,
                mode: *mode,
            }),
            vec![dy],
        ),
        Op::PixelShuffle { r } => {
            dx_if_wanted(b, &mut g, grad(GradOp::PixelUnshuffle { r: *r }), vec![dy])
        }
        Op::Activation(Activation::Step) => {
            return Err(Diagnostic::error(
                codes::NOT_DIFFERENTIABLE,
                b.graph.loc_of(id),
                format!(
                    "step `{}`: the step function has no gradient, so the loss cannot be trained through it; use `sigmoid` or `tanh` for training",
                    b.graph.name_of(id)
                ),
            ));
        }
        Op::Activation(a) => dx_if_wanted(b, &mut g, grad(GradOp::Activation(*a)), vec![x, dy]),
        Op::Prelu { per_channel } => {
            let w = param(0).ok_or_else(missing)?;
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::PreluData { weight: w.clone() }),
                vec![x, dy],
            );
            let dw = b.emit(
                id,
                "grad_weight",
                grad(GradOp::PreluWeight {
                    per_channel: *per_channel,
                }),
                vec![x, dy],
            );
            g.params.push((w, dw));
        }
        Op::Maxout { k } => dx_if_wanted(b, &mut g, grad(GradOp::Maxout { k: *k }), vec![x, dy]),
        Op::Softmax { axis } => dx_if_wanted(
            b,
            &mut g,
            grad(GradOp::Softmax { axis: *axis }),
            vec![node.output, dy],
        ),
        Op::LogSoftmax { axis } => dx_if_wanted(
            b,
            &mut g,
            grad(GradOp::LogSoftmax { axis: *axis }),
            vec![node.output, dy],
        ),
        Op::BatchNorm { eps, .. } => {
            // The statistics once; γ's and β's gradients in one pass, as the
            // two rows of one value; the input gradient from both.
            let (w, bias) = (param(0).ok_or_else(missing)?, param(1).ok_or_else(missing)?);
            let stats = b.emit(
                id,
                "grad_stats",
                grad(GradOp::BatchNormStats { eps: *eps }),
                vec![x],
            );
            let dgb = b.emit(
                id,
                "grad_params",
                grad(GradOp::BatchNormParamGrads { relu: false }),
                vec![x, dy, stats],
            );
            dx_if_wanted(
                b,
                &mut g,
                grad(GradOp::BatchNormInput {
                    weight: w.clone(),
                    relu: false,
                }),
                vec![x, dy, stats, dgb],
            );
            let dw = b.emit(id, "grad_weight", grad(GradOp::Row { index: 0 }), vec![dgb]);
            g.params.push((w, dw));
            let db = b.emit(id, "grad_bias", grad(GradOp::Row { index: 1 }), vec![dgb]);
            g.params.push((bias, db));
        }
        Op::Lrn { n, alpha, beta, k } => dx_if_wanted(
            b,
            &mut g,
            grad(GradOp::Lrn {
                n: *n,
                alpha: *alpha,
                beta: *beta,
                k: *k,
            }),
            vec![x, dy],
        ),
        Op::Dropout { p } => {
            let layer = b.graph.name_of(id).to_string();
            dx_if_wanted(b, &mut g, grad(GradOp::Dropout { p: *p, layer }), vec![dy]);
        }
        Op::Add => {
            for (i, w) in wants.iter().enumerate() {
                if *w {
                    g.inputs[i] = Some(dy);
                }
            }
        }
        Op::Concat { axis } => {
            if node.inputs.len() == 1 {
                g.inputs[0] = want_x.then_some(dy);
            } else {
                let mut start = 0;
                for (i, &v) in node.inputs.iter().enumerate() {
                    let len = shape_of(b, v).dims().get(*axis).copied().unwrap_or(0);
                    if wants[i] {
                        g.inputs[i] = Some(b.emit(
                            id,
                            &format!("grad_input{i}"),
                            grad(GradOp::Slice {
                                axis: *axis,
                                start,
                                len,
                            }),
                            vec![dy],
                        ));
                    }
                    start += len;
                }
            }
        }
        Op::Fused(_) => {
            return Err(Diagnostic::error(
                codes::INTERNAL,
                b.graph.loc_of(id),
                format!(
                    "autodiff: `{}` is a fused inference kernel; autodiff runs on the unfused graph",
                    b.graph.name_of(id)
                ),
            ));
        }
        Op::Input { .. } | Op::Loss(_) | Op::Grad(_) => {
            return Err(Diagnostic::error(
                codes::INTERNAL,
                b.graph.loc_of(id),
                format!(
                    "autodiff: `{}` ({}) is not a forward op with a gradient rule",
                    b.graph.name_of(id),
                    node.op.name()
                ),
            ));
        }
    }
    Ok(g)
}
