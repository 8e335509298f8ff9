//! The kernel steps of inference routines, fused and not, and the prepared
//! tensors they read: one `check` per network, written in macro syntax.

use super::{Kernel, PlanOptions, Program, build_with};

/// The program of the one network in `source`.
fn program(source: &str, options: &PlanOptions) -> Program {
    let tokens: proc_macro2::TokenStream = source.parse().expect("tokens");
    let module = crate::frontend::parse_tokens(tokens).expect("the case parses");
    let net = crate::check(&module).expect("the case checks").remove(0);
    build_with(&net.graph, options)
}

/// Checks the inference steps of `source` (their kernels' labels, one
/// `name` line per step, and the names of the prepared tensors after `|`)
/// against `expect`, with fusion and prepacking on.
fn check(source: &str, expect: &str) {
    let p = program(source, &PlanOptions::default());
    let mut got = String::new();
    for step in &p.infer.steps {
        let label = match &step.kernel {
            Kernel::Infer(op) | Kernel::Train(op) => op.label(),
            Kernel::Copy => "copy".to_string(),
        };
        let reads: Vec<&str> = [step.prepared.weight, step.prepared.bias]
            .into_iter()
            .flatten()
            .map(|i| p.prepared[i].name.as_str())
            .collect();
        got.push_str(&format!("{label} | {}\n", reads.join(" ")));
    }
    assert_eq!(got.trim(), expect.trim(), "steps of:\n{source}");
}

const BLOCK: &str = "
    block basic(x, c, stride = 1) {
        let y = x.conv2d(c, k = 3, s = stride, p = 1, bias = false).batch_norm().relu()
                 .conv2d(c, k = 3, p = 1, bias = false).batch_norm();
        let short = if stride != 1 || x.channels() != c {
            x.conv2d(c, k = 1, s = stride, bias = false).batch_norm()
        } else {
            x
        };
        (y + short).relu()
    }";

#[test]
fn basic_block_is_two_kernels() {
    check(
        &format!("{BLOCK} network Net(x: [4, 8, 8]) -> out {{ x.basic(4) }}"),
        "
fused[conv2d +bn relu] | basic0.conv2d0.weight:packed basic0.conv2d0.bias+basic0.batch_norm0
fused[conv2d +bn add relu] | basic0.conv2d1.weight:packed basic0.conv2d1.bias+basic0.batch_norm1",
    );
}

#[test]
fn downsampling_block_is_three_kernels() {
    check(
        &format!("{BLOCK} network Net(x: [4, 8, 8]) -> out {{ x.basic(8, stride = 2) }}"),
        "
fused[conv2d +bn relu] | basic0.conv2d0.weight:packed basic0.conv2d0.bias+basic0.batch_norm0
fused[conv2d +bn] | basic0.conv2d2.weight:packed basic0.conv2d2.bias+basic0.batch_norm2
fused[conv2d +bn add relu] | basic0.conv2d1.weight:packed basic0.conv2d1.bias+basic0.batch_norm1",
    );
}

#[test]
fn linear_batch_norm_folds_without_packing() {
    check(
        "network Net(x: [9]) -> out { x.linear(6).batch_norm().relu().linear(2) }",
        "
fused[linear +bn relu] | linear0.weight+batch_norm0 linear0.bias+batch_norm0
linear |",
    );
}

#[test]
fn one_position_convolutions_are_not_packed() {
    // A 5×5 window on a 5×5 input: one output position, read as stored.
    check(
        "network Net(x: [3, 5, 5]) -> out { x.conv2d(4, k = 5).relu() }",
        "fused[conv2d relu] |",
    );
}

#[test]
fn unfused_plans_keep_one_step_per_op() {
    let source = format!("{BLOCK} network Net(x: [4, 8, 8]) -> out {{ x.basic(4) }}");
    let p = program(
        &source,
        &PlanOptions {
            fuse: false,
            prepack: false,
        },
    );
    let labels: Vec<String> = p
        .infer
        .steps
        .iter()
        .map(|s| match &s.kernel {
            Kernel::Infer(op) => op.label(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(
        labels,
        [
            "conv2d",
            "batch_norm",
            "relu",
            "conv2d",
            "batch_norm",
            "add",
            "relu"
        ]
    );
    assert!(p.prepared.is_empty());
}
