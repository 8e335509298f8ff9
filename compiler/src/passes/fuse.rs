//! The inference fusion pipeline: the passes that turn a shaped graph into
//! the one inference runs, in order.
//!
//! [`try_fuse_for_inference`] reads like a table of contents:
//! `eliminate_dead` (the loss head and dropout go) → `fold_constants` →
//! `fold_batch_norm` → `reorder_activation_pool` → `fuse_epilogues` →
//! `fuse_elementwise` → `fuse_pool` → `eliminate_dead`. Every pass re-shapes and
//! re-verifies the graph it builds, and with `KILN_DEBUG=<pass>` (or `all`)
//! the graph is printed to stderr after it. The result computes the same
//! outputs at inference as its input, with the same parameters under the
//! same names and roles (those of dead layers excepted); their order along
//! the nodes can differ (a fused kernel sits where its last step was), so a
//! parameter layout is taken from the unfused graph, by name. It is for
//! inference only: autodiff runs on the unfused graph, and training's own
//! rewrites are [`fuse_training`](super::fuse_training()).

use super::{
    eliminate_dead, fold_batch_norm, fold_constants, fuse_elementwise, fuse_epilogues, fuse_pool,
    reorder_activation_pool, verify,
};
use crate::diag::Diagnostics;
use crate::ir::Graph;
use crate::pipeline::debug_dump;

/// The fused inference graph of a shaped, verified `graph`. A pass can
/// fail only on a compiler bug; then the unfused graph, which means the
/// same, is returned (use [`try_fuse_for_inference`] to see the error).
pub fn fuse_for_inference(graph: &Graph) -> Graph {
    try_fuse_for_inference(graph).unwrap_or_else(|_| graph.clone())
}

/// The fused inference graph of a shaped, verified `graph`, or the
/// internal error (`K0190`) of the pass that broke an IR invariant.
pub fn try_fuse_for_inference(graph: &Graph) -> Result<Graph, Diagnostics> {
    verify(graph, "check (the input of fuse_for_inference)", true)?;
    let g = step(graph, "eliminate_dead", eliminate_dead)?;
    let g = step(&g, "fold_constants", fold_constants)?;
    let g = step(&g, "fold_batch_norm", fold_batch_norm)?;
    let g = step(&g, "reorder_activation_pool", reorder_activation_pool)?;
    let g = step(&g, "fuse_epilogues", fuse_epilogues)?;
    let g = step(&g, "fuse_elementwise", fuse_elementwise)?;
    let g = step(&g, "fuse_pool", fuse_pool)?;
    step(&g, "eliminate_dead", eliminate_dead)
}

/// Runs `pass` on `graph` and prints the result if `KILN_DEBUG` names it.
fn step(
    graph: &Graph,
    name: &str,
    pass: fn(&Graph) -> Result<Graph, Diagnostics>,
) -> Result<Graph, Diagnostics> {
    let g = pass(graph)?;
    debug_dump(&g, name);
    Ok(g)
}
