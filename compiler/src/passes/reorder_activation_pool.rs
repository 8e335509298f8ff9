//! `reorder_activation_pool`: a monotone activation after a max pool moves
//! before it, where it can then join the producing kernel's epilogue.
//!
//! **Pattern.** `act(max_pool2d(k(x)))` → `max_pool2d(act(k(x)))`, where
//! `act` is nondecreasing (ReLU, leaky ReLU with α ≥ 0, ELU with α ≥ 0,
//! sigmoid, tanh, step), so `max(act(a), act(b)) = act(max(a, b))` and the
//! values are the same; `k` is a conv2d, a linear layer or a fused kernel
//! whose value only the pool reads, and the activation is the pool value's
//! only reader. Afterwards `fuse_epilogues` gives the activation to `k`:
//! `conv → pool → relu` is two kernels instead of three.
//!
//! **Precondition.** A shaped, verified inference graph. **Establishes.**
//! The same values; no parameters touched. **Does not.** Move an
//! activation that would gain nothing (a pool whose input no kernel can
//! take an epilogue into: the activation would only run on more elements),
//! touch average pooling (which does not commute with a nonlinearity), or
//! move swish, SELU or ELU with α < 0 (not monotone).

use super::rewrite::{Patch, as_fused, sole_reader, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Activation, Graph, NodeId, Op};

/// Moves monotone activations before the max pools they follow, where the
/// pool's input is a kernel with an epilogue. Errors only on a compiler bug
/// (a broken IR invariant).
pub fn reorder_activation_pool(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "reorder_activation_pool", |g| {
        g.node_ids().into_iter().find_map(|id| matcher(g, id))
    })
}

fn monotone(a: Activation) -> bool {
    match a {
        Activation::Relu | Activation::Sigmoid | Activation::Tanh | Activation::Step => true,
        Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => alpha >= 0.0,
        Activation::Selu | Activation::Swish => false,
    }
}

fn matcher(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    let Op::Activation(a) = node.op else {
        return None;
    };
    let pooled = *node.inputs.first()?;
    let pool = graph.producer(pooled);
    let Op::MaxPool2d(_) = graph.node(pool).op else {
        return None;
    };
    let v = *graph.node(pool).inputs.first()?;
    let k = graph.producer(v);
    let absorbs = as_fused(&graph.node(k).op).is_some();
    (monotone(a)
        && absorbs
        && sole_reader(graph, pooled) == Some(id)
        && sole_reader(graph, v) == Some(pool))
    .then_some(Patch::Swap {
        first: pool,
        second: id,
    })
}
