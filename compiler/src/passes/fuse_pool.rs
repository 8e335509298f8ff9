//! `fuse_pool`: a 2×2 stride-2 max pool after a convolution joins its
//! kernel, which then writes only the pooled values.
//!
//! **Pattern.** `max_pool2d(k(x))` → `fused[k … max_pool2d](x)`, where the
//! pool is 2×2 with stride 2, no padding and floor rounding (LeNet's and
//! VGG's), `k` is a conv2d or a fused kernel anchored on one with no
//! epilogue `add` and no pool yet, and the pool is the only reader of
//! `k`'s value (which is no graph output). Run after `fuse_epilogues`, so
//! LeNet's `conv → relu → pool` becomes one kernel,
//! `fused[conv2d relu max_pool2d(2x2/2)]`; the runtime pools the
//! convolution's values in registers where its kernel can
//! (`kernels::conv_pool`), else convolves into scratch and pools that.
//!
//! **Precondition.** A shaped, verified inference graph. **Establishes.**
//! The same values (the runtime's fused path gives the unfused kernels'
//! bits); no parameters touched. **Does not.** Fuse other windows (no
//! kernel pools them in registers: fusing would only move the pool), a
//! pool after a linear layer or an elementwise chain, or an average pool;
//! after it nothing joins the kernel's epilogue (a value after the pool
//! is not the epilogue's).

use super::rewrite::{Patch, as_fused, sole_reader, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Anchor, Graph, NodeId, Op, Pool2d};

/// Fuses 2×2 stride-2 max pools into the convolutions they follow. Errors
/// only on a compiler bug (a broken IR invariant).
pub fn fuse_pool(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "fuse_pool", |g| {
        g.node_ids().into_iter().find_map(|id| matcher(g, id))
    })
}

/// Whether the runtime pools `p` in registers.
fn two_by_two(p: &Pool2d) -> bool {
    p.kernel == [2, 2] && p.stride == [2, 2] && p.padding == [0, 0] && !p.ceil
}

fn matcher(graph: &Graph, id: NodeId) -> Option<Patch> {
    let node = graph.node(id);
    let Op::MaxPool2d(p) = &node.op else {
        return None;
    };
    let v = *node.inputs.first()?;
    let k = graph.producer(v);
    let mut fused = as_fused(&graph.node(k).op)?;
    let Anchor::Conv2d(_) = fused.anchor else {
        return None;
    };
    if !two_by_two(p) || fused.extra_inputs() != 0 || sole_reader(graph, v) != Some(id) {
        return None;
    }
    fused.pool = Some(p.clone());
    Some(Patch::Replace {
        at: id,
        op: Box::new(Op::Fused(fused)),
        inputs: graph.node(k).inputs.clone(),
        meta_from: k,
        remove: vec![k],
    })
}
