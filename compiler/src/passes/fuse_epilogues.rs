//! `fuse_epilogues`: activations and residual adds after a convolution or
//! linear layer join its kernel's epilogue.
//!
//! **Patterns.** `act(k(x))` → `fused[k … act](x)`, and
//! `add(k(x), r…)` → `fused[k … add](x, r…)`, where `k` is a conv2d, a
//! linear layer or a fused kernel and the add or activation is `k`'s
//! value's only reader (and that value is no graph output). Repeated to a
//! fixpoint, so the inference ResNet basic block `conv-bn-relu-conv-bn-add-
//! relu` becomes `fused[conv2d +bn relu]` and `fused[conv2d +bn add relu]`:
//! two kernels (three with a projection shortcut, whose conv and batch norm
//! stay a kernel of their own). Of an `add`'s inputs the first that
//! qualifies is absorbed; the others become the kernel's extra inputs, in
//! their order.
//!
//! **Precondition.** A shaped, verified inference graph, best after
//! [`fold_batch_norm`](super::fold_batch_norm()) (a batch norm between the
//! conv and the activation blocks the pattern). **Establishes.** The same
//! values at inference; the parameters unchanged (a conv keeps its own
//! bias). **Does not.** Fuse into a transposed convolution (no anchor for
//! it), fuse PReLU (it has a parameter), or reorder ops.

use super::rewrite::{Patch, as_fused, sole_reader, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Epilogue, Fused, Graph, Node, NodeId, Op};

/// Fuses activations and adds into the producing conv/linear kernels of
/// `graph`. Errors only on a compiler bug (a broken IR invariant).
pub fn fuse_epilogues(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "fuse_epilogues", |g| {
        g.node_ids()
            .into_iter()
            .find_map(|id| append(g, id, |n| as_fused(&n.op)))
    })
}

/// Appends node `id` (an activation, or an add) to the kernel producing one
/// of its inputs, if `absorb` gives that producer a fused form and `id` is
/// the only reader of its value. Shared with
/// [`fuse_elementwise`](super::fuse_elementwise()).
pub(crate) fn append(
    graph: &Graph,
    id: NodeId,
    absorb: impl Fn(&Node) -> Option<Fused>,
) -> Option<Patch> {
    let node = graph.node(id);
    let step = match node.op {
        Op::Activation(a) => Epilogue::Activation(a),
        Op::Add => Epilogue::Add,
        _ => return None,
    };
    let (slot, p, mut fused) = node.inputs.iter().enumerate().find_map(|(slot, &v)| {
        let p = graph.producer(v);
        let f = absorb(graph.node(p))?;
        (sole_reader(graph, v) == Some(id)).then_some((slot, p, f))
    })?;
    let mut inputs = graph.node(p).inputs.clone();
    for (i, &v) in node.inputs.iter().enumerate() {
        if i != slot {
            fused.epilogue.push(step.clone());
            inputs.push(v);
        }
    }
    if let Epilogue::Activation(_) = step {
        fused.epilogue.push(step);
    }
    Some(Patch::Replace {
        at: id,
        op: Box::new(Op::Fused(fused)),
        inputs,
        meta_from: p,
        remove: vec![p],
    })
}
