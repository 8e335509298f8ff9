//! The IR verifier: checks every invariant a well-formed [`Graph`] keeps,
//! and names the pass after which one broke.
//!
//! The invariants, each checked here:
//!
//! 1. **Ids resolve.** Every input of every node is a value of the graph,
//!    every graph input, output and the loss head name existing values/nodes.
//! 2. **One producer.** Every value is the output of exactly one node, and
//!    that node lists it as its output.
//! 3. **Edges mirror inputs.** A node's incoming edges are exactly its input
//!    list: one edge per slot, from the value's producer, carrying that value.
//! 4. **Acyclic.** The graph has no directed cycle.
//! 5. **Arity.** Every node has as many inputs as its op takes
//!    ([`Op::arity`]).
//! 6. **Inputs are input nodes.** [`Op::Input`] nodes are exactly the graph
//!    inputs, with matching indices.
//! 7. **Side table complete.** Every node has a [`NodeMeta`](crate::ir::NodeMeta)
//!    entry with a non-empty layer name, and layer names are unique.
//! 8. **Parameter names unique** across the graph.
//! 9. **Loss head last.** The loss node, if any, is a loss op, reads a graph
//!    output, and nothing reads its value; loss ops appear nowhere else.
//! 10. **Shaped** (only when asked, i.e. after shape inference): every value
//!     has a shape, and every conv/linear/batch-norm/PReLU node its parameters.
//! 11. **Gradient ops read real parameters.** A gradient op that names a
//!     forward parameter ([`GradOp::reads_param`](crate::ir::GradOp::reads_param))
//!     names a learned parameter of some node, and gradient ops carry no
//!     parameters of their own.
//! 12. **Fused kernels are inference-only and keep the layout.** A graph
//!     with gradient ops holds no [`Op::Fused`]; a fused node reads one
//!     extra input per epilogue `add` (checked by 5), and once shaped its
//!     parameters are the anchor's weight (and bias), then, with a folded
//!     batch norm, γ, β, running mean and running variance, with those roles.
//!
//! A broken invariant is a compiler bug, never a user mistake, so the
//! verifier reports code `K0190` and the pass that ran last.

use crate::ast::Loc;
use crate::codes;
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::{Category, Graph, Op, ParamRole};
use std::collections::HashSet;

/// Checks every invariant of `graph`; `after` names the pass that just ran,
/// and `shaped` asks for invariant 10 too.
pub fn verify(graph: &Graph, after: &str, shaped: bool) -> Result<(), Diagnostics> {
    let mut errors: Vec<String> = Vec::new();
    let ids = graph.node_ids();

    // 1, 2: values and producers.
    let mut produced = vec![0usize; graph.value_count()];
    for &id in &ids {
        let n = graph.node(id);
        if !graph.contains_value(n.output) {
            errors.push(format!(
                "node `{}` outputs a missing value",
                graph.name_of(id)
            ));
            continue;
        }
        produced[n.output_index()] += 1;
        if graph.producer(n.output) != id {
            errors.push(format!(
                "value {} is listed as the output of `{}` but records another producer",
                n.output,
                graph.name_of(id)
            ));
        }
        for v in &n.inputs {
            if !graph.contains_value(*v) {
                errors.push(format!(
                    "node `{}` reads a missing value {v}",
                    graph.name_of(id)
                ));
            }
        }
    }
    for (i, &count) in produced.iter().enumerate() {
        if count != 1 {
            errors.push(format!("value %{i} has {count} producers, not 1"));
        }
    }
    for p in graph.inputs().iter().chain(graph.outputs()) {
        if !graph.contains_value(p.value) {
            errors.push(format!("port `{}` names a missing value", p.name));
        }
    }
    if !errors.is_empty() {
        return report(graph, after, errors);
    }

    // 3: edges mirror inputs.
    for &id in &ids {
        let n = graph.node(id);
        let edges = graph.in_edges(id);
        let expect: Vec<_> = n
            .inputs
            .iter()
            .enumerate()
            .map(|(slot, &v)| (v, slot, graph.producer(v)))
            .collect();
        if edges != expect {
            errors.push(format!(
                "the edges into `{}` do not match its input list",
                graph.name_of(id)
            ));
        }
    }

    // 4: acyclic.
    if graph.is_cyclic() {
        errors.push("the graph has a cycle".into());
    }

    // 5, 6: arity, input nodes.
    let mut input_nodes = 0;
    for &id in &ids {
        let n = graph.node(id);
        if !n.op.arity().allows(n.inputs.len()) {
            errors.push(format!(
                "`{}` ({}) has {} inputs; the op takes {}",
                graph.name_of(id),
                n.op.name(),
                n.inputs.len(),
                n.op.arity()
            ));
        }
        if let Op::Input { index } = n.op {
            input_nodes += 1;
            match graph.inputs().get(index) {
                Some(p) if p.value == n.output => {}
                _ => errors.push(format!(
                    "input node `{}` is not graph input {index}",
                    graph.name_of(id)
                )),
            }
        }
    }
    if input_nodes != graph.inputs().len() {
        errors.push(format!(
            "{} input nodes for {} graph inputs",
            input_nodes,
            graph.inputs().len()
        ));
    }

    // 7, 8: names.
    let mut names = HashSet::new();
    let mut params = HashSet::new();
    for &id in &ids {
        match graph.meta(id) {
            None => errors.push(format!("node {id:?} has no side-table entry")),
            Some(m) if m.name.is_empty() => errors.push(format!("node {id:?} has an empty name")),
            Some(m) => {
                if !names.insert(m.name.clone()) {
                    errors.push(format!("two nodes are named `{}`", m.name));
                }
            }
        }
        for p in &graph.node(id).params {
            if !params.insert(p.name.clone()) {
                errors.push(format!("two parameters are named `{}`", p.name));
            }
        }
    }

    // 9: the loss head.
    for &id in &ids {
        let is_loss = graph.node(id).op.category() == Category::Loss;
        if is_loss && graph.loss() != Some(id) {
            errors.push(format!(
                "loss op `{}` is not the graph's loss head",
                graph.name_of(id)
            ));
        }
    }
    if let Some(l) = graph.loss() {
        if !graph.contains_node(l) {
            errors.push("the loss head is not a node".into());
        } else {
            let n = graph.node(l);
            if n.op.category() != Category::Loss {
                errors.push(format!("loss head `{}` is not a loss op", graph.name_of(l)));
            }
            if !n
                .inputs
                .iter()
                .all(|v| graph.outputs().iter().any(|o| o.value == *v))
            {
                errors.push("the loss head does not read a graph output".into());
            }
            if !graph.consumers(n.output).is_empty() {
                errors.push("the loss head's value is read by another node".into());
            }
        }
    }

    // 10: shapes and parameters.
    if shaped {
        for &id in &ids {
            let n = graph.node(id);
            if graph.shape(n.output).is_none() {
                errors.push(format!("`{}` has no output shape", graph.name_of(id)));
            }
            let needs_params = matches!(
                n.op,
                Op::Conv2d(_)
                    | Op::ConvTranspose2d(_)
                    | Op::Linear { .. }
                    | Op::BatchNorm { .. }
                    | Op::Prelu { .. }
            );
            if needs_params && n.params.is_empty() {
                errors.push(format!("`{}` has no parameters", graph.name_of(id)));
            }
        }
    }

    // 11: gradient ops and parameters.
    let learned: HashSet<&str> = ids
        .iter()
        .flat_map(|&id| graph.node(id).params.iter())
        .filter(|p| p.role.is_learned())
        .map(|p| p.name.as_str())
        .collect();
    for &id in &ids {
        let n = graph.node(id);
        if let Op::Grad(g) = &n.op {
            if let Some(p) = g.reads_param()
                && !learned.contains(p)
            {
                errors.push(format!(
                    "gradient op `{}` reads `{p}`, which is no learned parameter",
                    graph.name_of(id)
                ));
            }
            if !n.params.is_empty() {
                errors.push(format!(
                    "gradient op `{}` carries parameters",
                    graph.name_of(id)
                ));
            }
        }
    }

    // 12: fused kernels.
    let has_grad = ids
        .iter()
        .any(|&id| matches!(graph.node(id).op, Op::Grad(_)));
    for &id in &ids {
        let n = graph.node(id);
        let Op::Fused(f) = &n.op else { continue };
        if has_grad {
            errors.push(format!(
                "fused kernel `{}` is in a graph with gradient ops; fusion is for inference only",
                graph.name_of(id)
            ));
        }
        if shaped {
            let mut want = vec![ParamRole::Weight; f.anchor_params()];
            if f.anchor_params() == 2 {
                want[1] = ParamRole::Bias;
            }
            if f.folded_bn.is_some() {
                want.extend([
                    ParamRole::Weight,
                    ParamRole::Bias,
                    ParamRole::RunningMean,
                    ParamRole::RunningVar,
                ]);
            }
            let have: Vec<ParamRole> = n.params.iter().map(|p| p.role).collect();
            if have != want {
                errors.push(format!(
                    "fused kernel `{}` has parameters {have:?}; its anchor and batch norm take {want:?}",
                    graph.name_of(id)
                ));
            }
        }
    }

    report(graph, after, errors)
}

fn report(graph: &Graph, after: &str, errors: Vec<String>) -> Result<(), Diagnostics> {
    if errors.is_empty() {
        return Ok(());
    }
    let mut diags = Diagnostics::new();
    for e in errors {
        diags.push(
            Diagnostic::error(
                codes::INTERNAL,
                Loc::Synthetic,
                format!(
                    "internal compiler error: IR invariant broken after pass `{after}` in graph `{}`: {e}",
                    graph.name
                ),
            )
            .with_note("this is a bug in kiln, not in your network; please report it"),
        );
    }
    Err(diags)
}
