//! Training-mode fusion: batch norm → ReLU keeps only what backward needs.
//!
//! **Pattern.** `r = relu(y)`, `y = batch_norm(x)` in the forward half of a
//! joint graph, where the ReLU is the batch norm's only forward reader, so
//! the backward reads `y` only in the ReLU's gradient node `g = dy ⊙ [y > 0]`,
//! and `g` only in batch norm's gradient ops
//! ([`GradOp::BatchNormParamGrads`], [`GradOp::BatchNormInput`]).
//!
//! **Rewrite.** Those gradient ops read `dy` and the ReLU's output `r` as a
//! mask instead of `g` (`relu: true`, the fused kernel
//! `norm::batch_norm_relu_backward`'s rule), and the ReLU's gradient node
//! goes. Nothing in the backward reads `y` any more, so the plan lets it die
//! right after the ReLU's forward: of conv → batch norm → ReLU, only the
//! convolution's output `x` (for batch norm's backward) and `r` (for the
//! next layer's weight gradient and the mask) are kept.
//!
//! **Precondition.** `joint` is the output of [`crate::passes::autodiff`]
//! (shaped, verified). **Invariant established.** The result is shaped,
//! passes [`verify`], and computes the same loss, parameter gradients and
//! input gradients (the interpreter agrees on both, which the tests check);
//! the forward half is unchanged (same nodes, in the same order), so
//! [`JointGraph::forward_nodes`] holds. Node order otherwise follows the
//! input graph, so the schedule does not change.
//!
//! **What it does not do.** It does not fuse the forward batch norm and
//! ReLU into one kernel (the forward still writes `y` and reads it once),
//! and it leaves a batch norm whose output has other readers (a residual
//! `add`) unfused.
//!
//! With `KILN_DEBUG=fuse_training` (or `all`) the result is printed.

use std::collections::{HashMap, HashSet};

use crate::diag::Diagnostics;
use crate::ir::{Activation, GradOp, Graph, NodeId, Op, ValueId};
use crate::passes::JointGraph;
use crate::passes::verify;

/// Fuses every batch norm → ReLU of `joint`'s backward half; see the module
/// doc.
pub fn fuse_training(joint: &JointGraph) -> Result<JointGraph, Diagnostics> {
    let g = &joint.graph;
    // Per fused pair: the gradient op to rewrite → (dy of the ReLU, r).
    let mut rewrite: HashMap<NodeId, (ValueId, ValueId)> = HashMap::new();
    let mut drop: HashSet<NodeId> = HashSet::new();
    for relu in g.node_ids() {
        if let Some((grad, dy, r, users)) = match_bn_relu(g, relu) {
            drop.insert(grad);
            for u in users {
                rewrite.insert(u, (dy, r));
            }
        }
    }
    let mut out = Graph::new(g.name.clone());
    let mut vmap: HashMap<ValueId, ValueId> = HashMap::new();
    let mut nmap: HashMap<NodeId, NodeId> = HashMap::new();
    for id in g.node_ids() {
        if drop.contains(&id) {
            continue;
        }
        let node = g.node(id);
        let meta = g.meta(id).cloned().unwrap_or_else(|| crate::ir::NodeMeta {
            name: g.name_of(id).to_string(),
            loc: g.loc_of(id),
        });
        let shape = g.shape(node.output).cloned();
        let new = if let Op::Input { index } = node.op {
            let port = &g.inputs()[index];
            let v = out.add_input(&port.name, shape.clone().unwrap_or_default(), meta.loc);
            out.producer(v)
        } else {
            let (op, inputs) = match (rewrite.get(&id), &node.op) {
                (Some(&(dy, r)), Op::Grad(GradOp::BatchNormParamGrads { .. })) => {
                    let i = &node.inputs;
                    (
                        Op::Grad(GradOp::BatchNormParamGrads { relu: true }),
                        vec![i[0], dy, i[2], r],
                    )
                }
                (Some(&(dy, r)), Op::Grad(GradOp::BatchNormInput { weight, .. })) => {
                    let i = &node.inputs;
                    (
                        Op::Grad(GradOp::BatchNormInput {
                            weight: weight.clone(),
                            relu: true,
                        }),
                        vec![i[0], dy, i[2], i[3], r],
                    )
                }
                _ => (node.op.clone(), node.inputs.clone()),
            };
            let inputs = inputs.iter().map(|v| vmap[v]).collect();
            out.add_node(op, inputs, meta)
        };
        let out_v = out.node(new).output;
        if let Some(s) = shape {
            out.set_shape(out_v, s);
        }
        out.node_mut(new).params = node.params.clone();
        vmap.insert(node.output, out_v);
        nmap.insert(id, new);
    }
    for port in g.outputs() {
        out.add_output(&port.name, vmap[&port.value]);
    }
    if let Some(l) = g.loss() {
        out.set_loss(nmap[&l]);
    }
    let forward: HashSet<NodeId> = g
        .node_ids()
        .into_iter()
        .take(joint.forward_nodes)
        .map(|id| nmap[&id])
        .collect();
    let mut saved: Vec<ValueId> = out
        .node_ids()
        .into_iter()
        .filter(|id| !forward.contains(id))
        .flat_map(|id| out.node(id).inputs.clone())
        .filter(|v| forward.contains(&out.producer(*v)))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    saved.sort();
    if let Ok(want) = std::env::var("KILN_DEBUG")
        && want.split(',').any(|w| w == "fuse_training" || w == "all")
    {
        eprintln!("// after fuse_training\n{out}");
    }
    verify(&out, "fuse_training", true)?;
    let remap = |list: &[(String, ValueId)]| -> Vec<(String, ValueId)> {
        list.iter().map(|(n, v)| (n.clone(), vmap[v])).collect()
    };
    Ok(JointGraph {
        loss: vmap[&joint.loss],
        param_grads: remap(&joint.param_grads),
        input_grads: remap(&joint.input_grads),
        saved,
        forward_nodes: joint.forward_nodes,
        graph: out,
    })
}

/// `relu` is a forward ReLU of a batch norm's output `y` that nothing else
/// reads but the ReLU's gradient node, whose result only batch norm's
/// gradient ops read: gives that gradient node, its `dy`, the ReLU's output
/// `r`, and the batch norm gradient ops to rewrite.
fn match_bn_relu(g: &Graph, relu: NodeId) -> Option<(NodeId, ValueId, ValueId, Vec<NodeId>)> {
    let node = g.node(relu);
    if node.op != Op::Activation(Activation::Relu) {
        return None;
    }
    let y = node.inputs[0];
    if !matches!(g.node(g.producer(y)).op, Op::BatchNorm { .. }) {
        return None;
    }
    let readers = g.consumers(y);
    let mut grad = None;
    for &(n, _) in &readers {
        match &g.node(n).op {
            Op::Activation(Activation::Relu) if n == relu => {}
            Op::Grad(GradOp::Activation(Activation::Relu))
                if grad.is_none() && g.node(n).inputs[0] == y =>
            {
                grad = Some(n)
            }
            _ => return None,
        }
    }
    let grad = grad?;
    let dy = g.node(grad).inputs[1];
    let g_out = g.node(grad).output;
    let mut users = Vec::new();
    for (n, slot) in g.consumers(g_out) {
        let op = &g.node(n).op;
        let bn_of_y = g.node(n).inputs[0] == g.node(g.producer(y)).inputs[0];
        match op {
            Op::Grad(GradOp::BatchNormParamGrads { relu: false })
            | Op::Grad(GradOp::BatchNormInput { relu: false, .. })
                if slot == 1 && bn_of_y =>
            {
                users.push(n)
            }
            _ => return None,
        }
    }
    (!users.is_empty()).then_some((grad, dy, node.output, users))
}
