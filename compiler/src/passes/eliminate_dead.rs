//! `eliminate_dead`: an inference graph keeps only what its outputs need.
//!
//! **Removes.** The loss head (inference computes no loss); dropout, the
//! identity at inference (its readers read its input); then every node
//! whose value reaches no graph output (a branch the user left unused, the
//! head of a second output that was dropped). Graph inputs stay, used or
//! not, because they are the network's signature.
//!
//! **Precondition.** A shaped, verified graph. **Establishes.** Every node
//! but a graph input reaches an output; no dropout and no loss head.
//! The outputs' values are unchanged at inference. **Does not.** Run on
//! training graphs, where dropout and the loss are the point.

use super::rewrite::{Patch, apply, to_fixpoint};
use crate::diag::Diagnostics;
use crate::ir::{Graph, Op};
use std::collections::HashSet;

/// Removes the loss head, dropout and dead nodes of `graph`. Errors only
/// on a compiler bug (a broken IR invariant).
pub fn eliminate_dead(graph: &Graph) -> Result<Graph, Diagnostics> {
    let g = if graph.loss().is_some() {
        apply(graph, &Patch::DropLoss, "eliminate_dead")?
    } else {
        graph.clone()
    };
    let g = to_fixpoint(&g, "eliminate_dead", |g| {
        g.node_ids().into_iter().find_map(|id| {
            let node = g.node(id);
            match node.op {
                Op::Dropout { .. } => Some(Patch::Bypass {
                    node: id,
                    to: node.inputs[0],
                }),
                _ => None,
            }
        })
    })?;
    let dead = dead_nodes(&g);
    if dead.is_empty() {
        Ok(g)
    } else {
        apply(&g, &Patch::Remove(dead), "eliminate_dead")
    }
}

/// The nodes whose value reaches no graph output, graph inputs excepted.
fn dead_nodes(graph: &Graph) -> Vec<crate::ir::NodeId> {
    let mut live = HashSet::new();
    let mut work: Vec<_> = graph
        .outputs()
        .iter()
        .map(|o| graph.producer(o.value))
        .collect();
    while let Some(n) = work.pop() {
        if live.insert(n) {
            work.extend(graph.node(n).inputs.iter().map(|&v| graph.producer(v)));
        }
    }
    graph
        .node_ids()
        .into_iter()
        .filter(|id| !live.contains(id) && !matches!(graph.node(*id).op, Op::Input { .. }))
        .collect()
}
