//! `fold_constants`: ops that compute nothing at this graph's shapes are
//! folded away.
//!
//! kiln's IR has no constant tensors (every value depends on an input, and
//! parameters are never seen by the compiler), so what folds here is
//! structure that is constant at compile time:
//!
//! - `reshape`/`flatten` of a `reshape`/`flatten` reads the inner one's
//!   input (a chain of relabellings is one relabelling);
//! - `flatten` of a rank-1 value, and `reshape` to the input's own shape,
//!   are the identity;
//! - `dropout` with `p = 0`, `concat` of one input, `max_pool2d` and
//!   `avg_pool2d` with a 1×1 window, stride 1 and no padding, `upsample`
//!   with scale 1, `pixel_shuffle` with `r = 1` and `maxout` with `k = 1`
//!   are the identity.
//!
//! An identity's readers (and a graph output naming it) read its input.
//!
//! **Precondition.** A shaped, verified graph. **Establishes.** None of
//! the patterns above is left; every value that remains is the same, in
//! training and at inference. **Does not.** Remove dead code
//! ([`eliminate_dead`](super::eliminate_dead())) or dropout with `p > 0`.

use super::rewrite::{Patch, sole_reader, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Graph, NodeId, Op, Pool2d};

/// Folds the compile-time-constant structure of `graph`. Errors only on a
/// compiler bug (a broken IR invariant).
pub fn fold_constants(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "fold_constants", |g| {
        g.node_ids()
            .into_iter()
            .find_map(|id| identity(g, id).or_else(|| relabel_chain(g, id)))
    })
}

/// An op that is the identity at its shapes → bypassed.
fn identity(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    let x = *node.inputs.first()?;
    let same_shape = graph.shape(x) == graph.shape(node.output);
    let unit_pool = |p: &Pool2d| p.kernel == [1, 1] && p.stride == [1, 1] && p.padding == [0, 0];
    let is_identity = match &node.op {
        Op::Flatten | Op::Reshape { .. } => same_shape,
        Op::Dropout { p } => *p == 0.0,
        Op::Concat { .. } => node.inputs.len() == 1,
        Op::MaxPool2d(p) => unit_pool(p),
        Op::AvgPool2d { pool, .. } => unit_pool(pool),
        Op::Upsample { scale, .. } => *scale == 1,
        Op::PixelShuffle { r } => *r == 1,
        Op::Maxout { k } => *k == 1,
        _ => false,
    };
    (is_identity && same_shape).then_some(Patch::Bypass { node: id, to: x })
}

/// `reshape(flatten(x))` and the like → `reshape(x)`.
fn relabel_chain(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    if !matches!(node.op, Op::Flatten | Op::Reshape { .. }) {
        return None;
    }
    let v = *node.inputs.first()?;
    let p = graph.producer(v);
    let inner = graph.node(p);
    if !matches!(inner.op, Op::Flatten | Op::Reshape { .. }) || sole_reader(graph, v) != Some(id) {
        return None;
    }
    Some(Patch::Replace {
        at: id,
        op: Box::new(node.op.clone()),
        inputs: inner.inputs.clone(),
        meta_from: id,
        remove: vec![p],
    })
}
