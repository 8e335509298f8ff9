//! `fuse_elementwise`: chains of elementwise ops become one loop.
//!
//! **Patterns.** `e2(e1(x…))` → `fused[identity e1 e2](x…)`, where `e1`
//! and `e2` are activations or adds (or `e1` is already a fused kernel)
//! and `e2` is the only reader of `e1`'s value (which is no graph output).
//! An `add` becomes an epilogue `add` per extra input. Repeated to a
//! fixpoint, so a chain of any length is one kernel.
//!
//! **Precondition.** A shaped, verified inference graph, best after
//! [`fuse_epilogues`](super::fuse_epilogues()), which gives chains that
//! start at a conv or linear layer to that kernel first. **Establishes.**
//! The same values at inference; no parameters touched. **Does not.** Fuse
//! a lone activation or add (one op is one kernel either way), PReLU
//! (which has a parameter), or softmax (not elementwise).

use super::fuse_epilogues::append;
use super::rewrite::to_fixpoint;
use crate::diag::Diagnostics;
use crate::ir::{Anchor, Epilogue, Fused, Graph, Node, Op};

/// Fuses the elementwise chains of `graph`. Errors only on a compiler bug
/// (a broken IR invariant).
pub fn fuse_elementwise(graph: &Graph) -> Result<Graph, Diagnostics> {
    to_fixpoint(graph, "fuse_elementwise", |g| {
        g.node_ids()
            .into_iter()
            .find_map(|id| append(g, id, as_chain))
    })
}

/// `node` as the start of an elementwise chain: a fused kernel as it is, an
/// activation or an add as an identity-anchored kernel of one step.
fn as_chain(node: &Node) -> Option<Fused> {
    let identity = |epilogue| Fused {
        anchor: Anchor::Identity,
        folded_bn: None,
        epilogue,
        pool: None,
    };
    match &node.op {
        // A pooled kernel's epilogue ends at the pool.
        Op::Fused(f) if f.pool.is_some() => None,
        Op::Fused(f) => Some(f.clone()),
        Op::Activation(a) => Some(identity(vec![Epilogue::Activation(*a)])),
        Op::Add => Some(identity(vec![
            Epilogue::Add;
            node.inputs.len().saturating_sub(1)
        ])),
        _ => None,
    }
}
