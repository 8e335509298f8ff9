//! `fold_batch_norm`: every inference batch norm becomes part of a fused
//! kernel.
//!
//! **Pattern.** `batch_norm(conv2d(x))` or `batch_norm(linear(x))` (or of
//! a fused kernel with such an anchor, no folded batch norm and no
//! epilogue yet), where the batch norm is the anchor value's only reader →
//! `fused[conv2d +bn](x)`. A batch norm that reads anything else becomes
//! `fused[identity +bn](x)`, a per-channel scale and shift in one pass
//! (DenseNet's pre-activation batch norms, a batch norm after a ReLU).
//!
//! **Precondition.** A shaped, verified inference graph. **Establishes.**
//! No `batch_norm` op is left; the parameters keep their names, roles and
//! order (the fused node lists the anchor's, then γ, β, running mean,
//! running variance), so checkpoints of the unfused graph load unchanged.
//! The value is the same at inference: the fused kernel applies the batch
//! norm on its running statistics. **Does not.** Fold the statistics into
//! the weights: that needs the parameter values, which the compiler never
//! sees; the emitter prepares folded weights at run time. The IR has no
//! separate per-channel scale-and-shift op, so there is nothing else to
//! fold. Training graphs keep their batch norms (batch statistics).

use super::rewrite::{Patch, as_fused, sole_reader, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Anchor, FoldedBn, Fused, Graph, NodeId, Op};

/// Folds every batch norm of `graph` into a fused kernel. Errors only on a
/// compiler bug (a broken IR invariant).
pub fn fold_batch_norm(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "fold_batch_norm", |g| {
        g.node_ids()
            .into_iter()
            .find_map(|id| into_anchor(g, id).or_else(|| standalone(g, id)))
    })
}

/// `batch_norm(anchor(x))` → `fused[anchor +bn](x)`.
fn into_anchor(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    let Op::BatchNorm { eps, .. } = node.op else {
        return None;
    };
    let v = *node.inputs.first()?;
    let p = graph.producer(v);
    let mut fused = as_fused(&graph.node(p).op)?;
    if fused.anchor == Anchor::Identity
        || fused.folded_bn.is_some()
        || !fused.epilogue.is_empty()
        || sole_reader(graph, v) != Some(id)
    {
        return None;
    }
    fused.folded_bn = Some(FoldedBn {
        eps,
        layer: graph.name_of(id).to_string(),
    });
    Some(Patch::Replace {
        at: id,
        op: Box::new(Op::Fused(fused)),
        inputs: graph.node(p).inputs.clone(),
        meta_from: p,
        remove: vec![p],
    })
}

/// Any other `batch_norm(x)` → `fused[identity +bn](x)`.
fn standalone(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    let Op::BatchNorm { eps, .. } = node.op else {
        return None;
    };
    Some(Patch::Replace {
        at: id,
        op: Box::new(Op::Fused(Fused {
            anchor: Anchor::Identity,
            folded_bn: Some(FoldedBn {
                eps,
                layer: graph.name_of(id).to_string(),
            }),
            epilogue: vec![],
            pool: None,
        })),
        inputs: node.inputs.clone(),
        meta_from: id,
        remove: vec![],
    })
}
