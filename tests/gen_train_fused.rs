//! The training-mode fusion pass (`passes::fuse_training`) preserves
//! meaning: the interpreter gives the same loss, parameter gradients and
//! running statistics on the joint graph before and after it (in f64, to
//! 1e-10 of each tensor's largest magnitude), and it fuses exactly the
//! batch norms whose only reader is a ReLU. The generated code (which runs
//! the fused graph) is checked against the unfused graph's interpreter in
//! `gen_train_cases.rs` and `gen_train_vs_interp.rs`.
//!
//! Each case is a network in macro syntax or a zoo file, with the number of
//! batch norm → ReLU pairs it has; `resnet20`'s joint graph node counts
//! before and after are printed (`--nocapture`).

use kiln_compiler::frontend;
use kiln_compiler::ir::{Activation, GradOp, Graph, Op};
use kiln_compiler::passes::{JointGraph, autodiff, fuse_training};
use kiln_interp::{Feed, Mode, Params, Targets, random_params, random_tensor};

/// The tolerance, relative to a tensor's largest magnitude: both graphs run
/// the same f64 references, so only summation order may differ.
const TOL: f64 = 1e-10;

/// The checked graph of `source`: macro tokens, or `file PATH` for a YAML
/// file relative to the workspace.
fn graph_of(source: &str) -> Graph {
    let module = match source.strip_prefix("file ") {
        Some(path) => {
            let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect("the model file");
            frontend::parse_yaml(&text).expect("the model parses")
        }
        None => frontend::parse_tokens(source.parse().expect("tokens")).expect("the case parses"),
    };
    kiln_compiler::check(&module)
        .expect("the case checks")
        .remove(0)
        .graph
}

/// How many nodes of `joint` run `op`s that satisfy `f`.
fn count(joint: &JointGraph, f: impl Fn(&Op) -> bool) -> usize {
    let g = &joint.graph;
    g.node_ids().iter().filter(|&&id| f(&g.node(id).op)).count()
}

/// What one interpreter run gives: the loss, every parameter gradient (by
/// name) and the parameters after the call (running statistics updated).
type Run = (f64, Vec<(String, Vec<f64>)>, Params<f64>);

/// Runs `joint` in training mode on `n` random examples.
fn run(joint: &JointGraph, graph: &Graph, n: usize, seed: u64) -> Run {
    let mut params: Params<f64> = random_params(graph, seed);
    let input = &graph.inputs()[0];
    let in_len = graph.shape(input.value).expect("shaped").numel() as usize;
    let out = graph.outputs()[0].value;
    let out_len = graph.shape(out).expect("shaped").numel() as usize;
    let classes = matches!(
        graph.node(graph.loss().expect("a loss head")).op,
        Op::Loss(l) if l.kind.takes_class_index()
    );
    let targets = if classes {
        let u: Vec<f64> = random_tensor(n, seed ^ 0x7a7, 0.0, out_len as f64);
        Targets::Classes(u.iter().map(|&c| c as u32).collect())
    } else {
        Targets::Values(random_tensor(n * out_len, seed ^ 0x7a7, -1.0, 1.0))
    };
    let feed = Feed::new(n, Mode::Training { seed })
        .input(
            &input.name,
            random_tensor(n * in_len, seed ^ 0x5eed, -1.0, 1.0),
        )
        .targets(targets);
    let values = kiln_interp::run(&joint.graph, &feed, &mut params).expect("the interpreter runs");
    let grads = joint
        .param_grads
        .iter()
        .map(|(name, v)| (name.clone(), values.get(*v).expect("the gradient").to_vec()))
        .collect();
    (values.loss.expect("the loss"), grads, params)
}

/// The largest error of `got` against `want`, relative to `want`'s largest
/// magnitude (at least 1e-12).
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths");
    let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0, f64::max)
}

/// Fuses `source`'s joint graph, expects `pairs` batch norm → ReLU pairs
/// fused, and compares both graphs in the interpreter on 3 examples.
/// Returns the node counts before and after.
fn check(case: &str, source: &str, pairs: usize) -> (usize, usize) {
    let graph = graph_of(source);
    let joint = autodiff(&graph).unwrap_or_else(|d| panic!("{case}: autodiff: {d:?}"));
    let fused = fuse_training(&joint).unwrap_or_else(|d| panic!("{case}: fuse: {d:?}"));
    let relu_grad = |op: &Op| *op == Op::Grad(GradOp::Activation(Activation::Relu));
    let fused_op = |op: &Op| {
        matches!(
            op,
            Op::Grad(GradOp::BatchNormParamGrads { relu: true })
                | Op::Grad(GradOp::BatchNormInput { relu: true, .. })
        )
    };
    let params_op = |op: &Op| matches!(op, Op::Grad(GradOp::BatchNormParamGrads { relu: true }));
    assert_eq!(count(&fused, params_op), pairs, "{case}: fused pairs");
    assert_eq!(
        count(&joint, relu_grad) - count(&fused, relu_grad),
        pairs,
        "{case}: ReLU gradient nodes removed"
    );
    assert_eq!(
        joint.graph.node_count() - fused.graph.node_count(),
        pairs,
        "{case}: one node fewer per pair"
    );
    assert_eq!(count(&joint, fused_op), 0, "{case}: autodiff fuses nothing");
    assert_eq!(fused.forward_nodes, joint.forward_nodes, "{case}");
    assert!(
        fused.saved.len() <= joint.saved.len(),
        "{case}: saves no more"
    );
    for seed in [1u64, 2] {
        let (l0, g0, p0) = run(&joint, &graph, 3, seed);
        let (l1, g1, p1) = run(&fused, &graph, 3, seed);
        assert!(
            (l0 - l1).abs() <= TOL * l0.abs().max(1e-12),
            "{case}: loss {l1} vs {l0}"
        );
        assert_eq!(g0.len(), g1.len(), "{case}: gradients");
        for ((name, want), (name1, got)) in g0.iter().zip(&g1) {
            assert_eq!(name, name1, "{case}: gradient order");
            let e = rel_err(got, want);
            assert!(e <= TOL, "{case}: ∂L/∂{name} differs by {e:.2e}");
        }
        for (name, want) in &p0 {
            let e = rel_err(&p1[name], want);
            assert!(e <= TOL, "{case}: {name} after the step differs by {e:.2e}");
        }
    }
    (joint.graph.node_count(), fused.graph.node_count())
}

#[test]
fn conv_bn_relu_chain() {
    check(
        "conv_bn_relu_chain",
        "network Net(x: [3, 8, 8]) -> out {
            x.conv2d(4, k = 3, p = 1, bias = false).batch_norm().relu()
             .conv2d(4, k = 3, s = 2, p = 1).batch_norm().relu().global_avg_pool().linear(3)
        } loss cross_entropy;",
        2,
    );
}

#[test]
fn batch_norm_1d_relu() {
    check(
        "batch_norm_1d_relu",
        "network Net(x: [7]) -> out { x.linear(5).batch_norm().relu().linear(3) } loss mse;",
        1,
    );
}

#[test]
fn batch_norm_read_twice_is_not_fused() {
    // The ReLU is not the batch norm's only reader: its output goes to the
    // sum too, so the backward needs `y`'s full gradient.
    check(
        "batch_norm_read_twice",
        "network Net(x: [2, 5, 5]) -> out {
            let y = x.conv2d(3, k = 3, p = 1).batch_norm();
            y.relu() + y
        } loss mse;",
        0,
    );
}

#[test]
fn relu_of_a_sum_is_not_fused() {
    check(
        "relu_of_a_sum",
        "network Net(x: [2, 5, 5]) -> out {
            let a = x.conv2d(2, k = 1).batch_norm();
            let b = x.conv2d(2, k = 3, p = 1).batch_norm();
            (a + b).relu()
        } loss mse;",
        0,
    );
}

#[test]
fn batch_norm_of_the_input() {
    // No input gradient is wanted: only the parameter-gradient op is fused.
    check(
        "batch_norm_of_the_input",
        "network Net(x: [2, 4, 4]) -> out { x.batch_norm().relu().conv2d(2, k = 1) } loss mse;",
        1,
    );
}

#[test]
fn resnet20() {
    let (before, after) = check("resnet20", "file models/resnet20.yaml", 10);
    println!("resnet20 joint graph: {before} nodes unfused, {after} after fuse_training");
}
