//! The patch machinery the rewriting passes share: a matcher finds one
//! [`Patch`] in a graph, [`apply`] rebuilds the graph with it, and
//! [`to_fixpoint`] repeats until no matcher fires.
//!
//! A pass never edits a graph in place: the graph has no node removal, and
//! rebuilding keeps every invariant the verifier lists by construction (one
//! producer per value, edges mirroring inputs, nodes in a topological
//! order). The rebuilt graph is re-shaped by [`infer_shapes`], which also
//! re-derives every node's parameters, so a patch names only ops and
//! inputs.

use crate::diag::Diagnostics;
use crate::ir::{Anchor, Fused, Graph, NodeId, NodeMeta, Op, ValueId};
use crate::passes::{infer_shapes, verify};
use std::collections::{HashMap, HashSet};

/// One rewrite of a graph, found by a matcher.
#[derive(Debug, Clone)]
pub(crate) enum Patch {
    /// Node `at` now computes `op` on `inputs` (values of the old graph),
    /// under the layer name and location of `meta_from`; the nodes of
    /// `remove` disappear. The matcher guarantees that only nodes of the
    /// patch read the removed nodes' values and that none is a graph output.
    Replace {
        /// The node whose place and output value the new op takes.
        at: NodeId,
        /// The new op.
        op: Box<Op>,
        /// Its inputs, as values of the old graph.
        inputs: Vec<ValueId>,
        /// The node whose side-table entry the new node takes.
        meta_from: NodeId,
        /// Nodes absorbed into the new one.
        remove: Vec<NodeId>,
    },
    /// Node `node` disappears; every reader of its value (and a graph
    /// output naming it) reads `to` instead.
    Bypass {
        /// The node that is an identity.
        node: NodeId,
        /// The value it passes through.
        to: ValueId,
    },
    /// The nodes disappear; nothing reads their values.
    Remove(Vec<NodeId>),
    /// Two single-input nodes trade places: `second`, the only reader of
    /// `first`'s value, now reads `first`'s input, and `first` reads it;
    /// each keeps its op and side-table entry, and readers of `second`'s
    /// value read `first`'s.
    Swap {
        /// The node that runs first before the patch.
        first: NodeId,
        /// Its only reader.
        second: NodeId,
    },
    /// The loss head disappears (an inference graph has none).
    DropLoss,
}

/// Applies `patch` to `graph`: a new graph with the same inputs, outputs
/// and (unless dropped) loss head, re-shaped and verified.
pub(crate) fn apply(graph: &Graph, patch: &Patch, pass: &str) -> Result<Graph, Diagnostics> {
    let order = graph
        .topo_order()
        .expect("a verified graph is acyclic (verifier invariant 4)");
    let mut removed: HashSet<NodeId> = HashSet::new();
    let mut bypass: Option<(NodeId, ValueId)> = None;
    let mut replace = None;
    let mut drop_loss = false;
    let mut swap = None;
    match patch {
        Patch::Replace {
            at,
            op,
            inputs,
            meta_from,
            remove,
        } => {
            removed.extend(remove.iter().copied());
            replace = Some((*at, op, inputs, *meta_from));
        }
        Patch::Bypass { node, to } => bypass = Some((*node, *to)),
        Patch::Remove(nodes) => removed.extend(nodes.iter().copied()),
        Patch::DropLoss => drop_loss = true,
        Patch::Swap { first, second } => swap = Some((*first, *second)),
    }
    if drop_loss && let Some(l) = graph.loss() {
        removed.insert(l);
    }
    let mut out = Graph::new(graph.name.clone());
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let mut new_loss = None;
    let lookup = |map: &HashMap<ValueId, ValueId>, v: &ValueId| {
        *map.get(v)
            .expect("a patch reads only values computed before it")
    };
    for id in order {
        if removed.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        if let Some((b, to)) = bypass
            && b == id
        {
            let v = lookup(&map, &to);
            map.insert(node.output, v);
            continue;
        }
        if let Op::Input { index } = node.op {
            let port = &graph.inputs()[index];
            let shape = graph.shape(port.value).cloned().unwrap_or_default();
            let v = out.add_input(&port.name, shape, graph.loc_of(id));
            map.insert(node.output, v);
            continue;
        }
        if let Some((first, second)) = swap
            && first == id
        {
            // Both nodes are added here, in their new order.
            let inputs = node.inputs.iter().map(|v| lookup(&map, v)).collect();
            let s = graph.node(second);
            let a = out.add_node(s.op.clone(), inputs, meta_of(graph, second));
            let a_out = out.node(a).output;
            let b = out.add_node(node.op.clone(), vec![a_out], meta_of(graph, first));
            map.insert(s.output, out.node(b).output);
            continue;
        }
        if let Some((_, second)) = swap
            && second == id
        {
            continue;
        }
        let (op, inputs, meta_from) = match replace {
            Some((at, op, inputs, meta_from)) if at == id => ((**op).clone(), inputs, meta_from),
            _ => (node.op.clone(), &node.inputs, id),
        };
        let inputs: Vec<ValueId> = inputs.iter().map(|v| lookup(&map, v)).collect();
        let new = out.add_node(op, inputs, meta_of(graph, meta_from));
        map.insert(node.output, out.node(new).output);
        if graph.loss() == Some(id) {
            new_loss = Some(new);
        }
    }
    for port in graph.outputs() {
        out.add_output(&port.name, lookup(&map, &port.value));
    }
    if let Some(l) = new_loss {
        out.set_loss(l);
    }
    verify(&out, pass, false)?;
    infer_shapes(&mut out)?;
    verify(&out, pass, true)?;
    Ok(out)
}

/// A copy of the side-table entry of `id`.
fn meta_of(graph: &Graph, id: NodeId) -> NodeMeta {
    NodeMeta {
        name: graph.name_of(id).to_string(),
        loc: graph.loc_of(id),
    }
}

/// Applies the first patch `find` returns until it returns none.
pub(crate) fn to_fixpoint(
    graph: &Graph,
    pass: &str,
    find: impl Fn(&Graph) -> Option<Patch>,
) -> Result<Graph, Diagnostics> {
    let mut g = graph.clone();
    while let Some(p) = find(&g) {
        g = apply(&g, &p, pass)?;
    }
    Ok(g)
}

/// The one node that reads `v`, if exactly one node reads it, in exactly
/// one slot, and `v` is not a graph output: then `v` can live inside a
/// fused kernel without being stored.
pub(crate) fn sole_reader(graph: &Graph, v: ValueId) -> Option<NodeId> {
    if graph.outputs().iter().any(|o| o.value == v) {
        return None;
    }
    match graph.consumers(v)[..] {
        [(n, _)] => Some(n),
        _ => None,
    }
}

/// `op` as a fused kernel that later steps can extend: a fused kernel as
/// it is, a conv2d or linear layer as the anchor of an empty one. Other ops
/// have no anchored form.
pub(crate) fn as_fused(op: &Op) -> Option<Fused> {
    let plain = |anchor| Fused {
        anchor,
        folded_bn: None,
        epilogue: vec![],
        pool: None,
    };
    match op {
        // A pooled kernel's epilogue ends at the pool.
        Op::Fused(f) if f.pool.is_some() => None,
        Op::Fused(f) => Some(f.clone()),
        Op::Conv2d(c) => Some(plain(Anchor::Conv2d(c.clone()))),
        Op::Linear { out, bias, .. } => Some(plain(Anchor::Linear {
            out: *out,
            bias: *bias,
        })),
        _ => None,
    }
}
