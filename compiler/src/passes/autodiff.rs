//! Autodiff: builds the joint forward + backward graph from a forward graph
//! with a loss head, one gradient rule per primitive ([`rules`]).
//!
//! **Precondition.** The graph is shaped and verified (the output of
//! [`crate::check`]) and has a loss head.
//!
//! **Invariant established.** The result's graph holds the forward graph
//! unchanged (same node and value ids), followed by gradient nodes
//! ([`Op::Grad`], plus `reshape` and `add` where a gradient is a reshape or
//! a sum): for every learned parameter the loss depends on, one value holding
//! ∂L/∂parameter ([`JointGraph::param_grads`]); with
//! [`autodiff_with_input_grads`], one value per graph input holding
//! ∂L/∂input. The gradient of a value read by several nodes is the `add` of
//! its contributions. The joint graph is shaped and passes [`verify`].
//! It means training mode: batch norm uses batch statistics and dropout its
//! mask, and the gradient nodes assume so.
//!
//! **What it does not do.** It does not add the optimizer update, does not
//! eliminate forward nodes that training does not need (a second output
//! without a loss), does not fuse or schedule, and computes no gradient that
//! no parameter (or wanted input) needs: the first convolution of a network
//! gets no input gradient. A gradient that is identically zero (a parameter
//! the loss does not depend on) is left out rather than materialized.
//!
//! Errors: training through `step` (no gradient) is `K0300` at the step's
//! layer; a network without a loss head is `K0301`.
//!
//! With `KILN_DEBUG=autodiff` (or `all`) the joint graph is printed to
//! stderr.

mod rules;

use crate::ast::Loc;
use crate::codes;
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::{Graph, NodeId, NodeMeta, Op, ValueId};
use crate::passes::infer_shapes::infer_node;
use crate::passes::verify;
use std::collections::{HashMap, HashSet};

/// A forward graph with its backward half.
#[derive(Debug, Clone)]
pub struct JointGraph {
    /// The joint graph: the forward nodes first, then the gradient nodes.
    pub graph: Graph,
    /// The loss value (a scalar reduced over the batch).
    pub loss: ValueId,
    /// `(parameter name, gradient value)` for every learned parameter the
    /// loss depends on, in the order of the forward graph's nodes and of
    /// each node's parameters.
    pub param_grads: Vec<(String, ValueId)>,
    /// `(input name, gradient value)` per graph input the loss depends on
    /// (empty unless asked for with [`autodiff_with_input_grads`]).
    pub input_grads: Vec<(String, ValueId)>,
    /// The forward values that gradient nodes read (saved activations: they
    /// live until their last backward use), in value order.
    pub saved: Vec<ValueId>,
    /// How many nodes the forward half has; nodes added after are backward.
    pub forward_nodes: usize,
}

impl JointGraph {
    /// The gradient value of the parameter `name`, if the loss depends on it.
    pub fn param_grad(&self, name: &str) -> Option<ValueId> {
        self.param_grads
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The gradient value of the graph input `name`, if it was asked for.
    pub fn input_grad(&self, name: &str) -> Option<ValueId> {
        self.input_grads
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// Builds the joint graph with the gradient of every learned parameter.
pub fn autodiff(graph: &Graph) -> Result<JointGraph, Diagnostics> {
    build(graph, false)
}

/// Builds the joint graph with the gradients of the parameters and of every
/// graph input (for gradient checks and saliency).
pub fn autodiff_with_input_grads(graph: &Graph) -> Result<JointGraph, Diagnostics> {
    build(graph, true)
}

/// What a rule gives back: a gradient per forward input (`None` where not
/// wanted) and per learned parameter.
#[derive(Debug, Default)]
struct Grads {
    inputs: Vec<Option<ValueId>>,
    params: Vec<(String, ValueId)>,
}

/// The graph being extended, with the bookkeeping rules need.
struct Builder {
    graph: Graph,
    names: HashSet<String>,
    errors: Vec<Diagnostic>,
}

impl Builder {
    /// Adds `op` applied to `inputs` as a gradient node of `fwd`, named
    /// `<layer>.<suffix>` (made unique), at the forward layer's location, and
    /// infers its shape.
    fn emit(&mut self, fwd: NodeId, suffix: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let base = format!("{}.{suffix}", self.graph.name_of(fwd));
        let mut name = base.clone();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{base}#{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        let loc = self.graph.loc_of(fwd);
        let id = self.graph.add_node(op, inputs, NodeMeta { name, loc });
        if let Err(d) = infer_node(&mut self.graph, id) {
            self.errors.push(d);
        }
        self.graph.node(id).output
    }

    /// The sum of `parts`: the one part, or an `add` node.
    fn sum(&mut self, fwd: NodeId, parts: Vec<ValueId>) -> ValueId {
        if parts.len() == 1 {
            parts[0]
        } else {
            self.emit(fwd, "grad_sum", Op::Add, parts)
        }
    }
}

fn build(forward: &Graph, with_inputs: bool) -> Result<JointGraph, Diagnostics> {
    let mut diags = Diagnostics::new();
    let Some(loss_node) = forward.loss() else {
        diags.push(Diagnostic::error(
            codes::NO_LOSS_HEAD,
            forward
                .outputs()
                .first()
                .map(|o| forward.loc_of(forward.producer(o.value)))
                .unwrap_or(Loc::Synthetic),
            format!(
                "network `{}` has no loss head, so it cannot be trained; add `loss: ...`",
                forward.name
            ),
        ));
        return Err(diags);
    };
    let Some(order) = forward.topo_order() else {
        diags.push(Diagnostic::error(
            codes::INTERNAL,
            Loc::Synthetic,
            format!("autodiff: graph `{}` has a cycle", forward.name),
        ));
        return Err(diags);
    };

    // Which values need a gradient: those downstream of a learned parameter
    // (or of a wanted input) and upstream of the loss.
    let mut requires: HashSet<ValueId> = HashSet::new();
    for &id in &order {
        let n = forward.node(id);
        let req = match n.op {
            Op::Input { .. } => with_inputs,
            _ => {
                n.params.iter().any(|p| p.role.is_learned())
                    || n.inputs.iter().any(|v| requires.contains(v))
            }
        };
        if req {
            requires.insert(n.output);
        }
    }
    let mut reaches: HashSet<NodeId> = HashSet::new();
    reaches.insert(loss_node);
    for &id in order.iter().rev() {
        if reaches.contains(&id) {
            for &v in &forward.node(id).inputs {
                reaches.insert(forward.producer(v));
            }
        }
    }

    let mut b = Builder {
        names: forward
            .node_ids()
            .iter()
            .map(|&n| forward.name_of(n).to_string())
            .collect(),
        graph: forward.clone(),
        errors: Vec::new(),
    };
    let forward_nodes = forward.node_count();
    let mut contrib: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    let mut grads_of: HashMap<ValueId, ValueId> = HashMap::new();
    let mut param_grads = Vec::new();

    // The seed: the loss head's gradient with respect to its input.
    let head = forward.node(loss_node).clone();
    if let (Op::Loss(l), [o]) = (&head.op, &head.inputs[..])
        && requires.contains(o)
    {
        let g = b.emit(
            loss_node,
            "grad",
            Op::Grad(crate::ir::GradOp::Loss(*l)),
            vec![*o],
        );
        contrib.entry(*o).or_default().push(g);
    }

    for &id in order.iter().rev() {
        let n = forward.node(id).clone();
        if id == loss_node || !reaches.contains(&id) || !requires.contains(&n.output) {
            continue;
        }
        let Some(parts) = contrib.remove(&n.output) else {
            continue;
        };
        let dy = b.sum(id, parts);
        grads_of.insert(n.output, dy);
        if let Op::Input { .. } = n.op {
            continue;
        }
        let wants: Vec<bool> = n.inputs.iter().map(|v| requires.contains(v)).collect();
        match rules::backward(&mut b, id, dy, &wants) {
            Ok(g) => {
                for (v, gv) in n.inputs.iter().zip(g.inputs) {
                    if let Some(gv) = gv {
                        contrib.entry(*v).or_default().push(gv);
                    }
                }
                param_grads.extend(g.params);
            }
            Err(d) => diags.push(d),
        }
    }
    for d in b.errors.drain(..) {
        diags.push(d);
    }
    if diags.has_errors() {
        return Err(diags);
    }

    // Parameters in forward order.
    let rank: HashMap<&str, usize> = order
        .iter()
        .flat_map(|&id| forward.node(id).params.iter())
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    param_grads.sort_by_key(|(name, _): &(String, ValueId)| rank.get(name.as_str()).copied());
    let input_grads = if with_inputs {
        forward
            .inputs()
            .iter()
            .filter_map(|p| grads_of.get(&p.value).map(|g| (p.name.clone(), *g)))
            .collect()
    } else {
        Vec::new()
    };
    let graph = b.graph;
    let fwd_ids: HashSet<NodeId> = forward.node_ids().into_iter().collect();
    let mut saved: Vec<ValueId> = graph
        .node_ids()
        .into_iter()
        .filter(|id| !fwd_ids.contains(id))
        .flat_map(|id| graph.node(id).inputs.clone())
        .filter(|v| fwd_ids.contains(&graph.producer(*v)))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    saved.sort();
    let loss = graph.node(loss_node).output;
    if let Ok(want) = std::env::var("KILN_DEBUG")
        && want.split(',').any(|w| w == "autodiff" || w == "all")
    {
        eprintln!("// after autodiff\n{graph}");
    }
    verify(&graph, "autodiff", true)?;
    Ok(JointGraph {
        graph,
        loss,
        param_grads,
        input_grads,
        saved,
        forward_nodes,
    })
}
