//! Every op's gradient rule against finite differences: one row per op and
//! attribute combination, each a tiny YAML network compiled, differentiated
//! by the autodiff pass and run by the interpreter in f64 at batch 2. The
//! expected text lists the gradients the joint graph has (parameters and
//! the input `x`); a gradient that disagrees with central differences of the
//! forward loss shows up as `MISMATCH` in the diff.

mod common;

use common::{compile, gradcheck, net};

/// Compiles `input` → `layers` → `loss`, checks every gradient by finite
/// differences (up to 12 sampled coordinates per tensor) and compares the
/// list of checked gradients with `expect`.
fn check(input: &str, layers: &str, loss: &str, expect: &str) {
    let graph = compile(&net(input, layers, loss)).unwrap_or_else(|e| panic!("{e}"));
    let got = gradcheck(&graph, 2, 11, 12);
    assert_eq!(got, expect.trim(), "\n{layers}\n--- got ---\n{got}");
}

const CONV: &str = "conv2d0.bias, conv2d0.weight, x";

#[test]
fn conv2d() {
    check("[2, 6, 6]", "conv2d: {out: 3, k: 3}", "mse", CONV);
    check(
        "[2, 7, 7]",
        "conv2d: {out: 2, k: 3, s: 2, p: 1}",
        "mse",
        CONV,
    );
    check("[2, 7, 7]", "conv2d: {out: 2, k: 3, d: 2}", "mse", CONV);
    check(
        "[4, 5, 5]",
        "conv2d: {out: 4, k: 3, groups: 2}",
        "mse",
        CONV,
    );
    check(
        "[4, 5, 5]",
        "conv2d: {out: 4, k: 3, groups: 4, p: 1}",
        "mse",
        CONV,
    );
    check(
        "[2, 7, 6]",
        "conv2d: {out: 2, k: 4, s: 2, p: same}",
        "mse",
        CONV,
    );
    check(
        "[2, 5, 6]",
        "conv2d: {out: 3, k: [2, 3], s: [1, 2], p: [1, 0], bias: false}",
        "mse",
        "conv2d0.weight, x",
    );
}

#[test]
fn conv_transpose2d() {
    let t = "conv_transpose2d0.bias, conv_transpose2d0.weight, x";
    check("[2, 3, 3]", "conv_transpose2d: {out: 3, k: 3}", "mse", t);
    check(
        "[2, 3, 3]",
        "conv_transpose2d: {out: 3, k: 3, s: 2, p: 1, output_padding: 1}",
        "mse",
        t,
    );
    check(
        "[4, 3, 3]",
        "conv_transpose2d: {out: 2, k: 2, s: 2, groups: 2}",
        "mse",
        t,
    );
    check(
        "[2, 3, 3]",
        "conv_transpose2d: {out: 2, k: 3, d: 2, bias: false}",
        "mse",
        "conv_transpose2d0.weight, x",
    );
}

#[test]
fn linear_flatten_reshape() {
    check("[5]", "linear: 3", "mse", "linear0.bias, linear0.weight, x");
    check(
        "[5]",
        "linear: {out: 3, bias: false}",
        "mse",
        "linear0.weight, x",
    );
    check(
        "[2, 3, 3]",
        "flatten\nlinear: 4",
        "cross_entropy",
        "linear0.bias, linear0.weight, x",
    );
    check("[12]", "reshape: [[3, -1]]\nsoftmax: {axis: 1}", "mse", "x");
}

#[test]
fn pooling() {
    check("[2, 6, 6]", "max_pool2d: 2", "mse", "x");
    check("[2, 7, 7]", "max_pool2d: {k: 3, s: 2, p: 1}", "mse", "x");
    // Ceil mode: partial windows at the bottom and right (5 → 3).
    check("[2, 5, 5]", "max_pool2d: {k: 2, ceil: true}", "mse", "x");
    check(
        "[2, 8, 8]",
        "max_pool2d: {k: 3, s: 2, ceil: true}",
        "mse",
        "x",
    );
    check("[2, 7, 7]", "avg_pool2d: {k: 3, s: 2, p: 1}", "mse", "x");
    check(
        "[2, 7, 7]",
        "avg_pool2d: {k: 3, s: 2, p: 1, count_pad: true}",
        "mse",
        "x",
    );
    check("[3, 4, 5]", "global_avg_pool", "mse", "x");
    check(
        "[1, 6, 6]",
        "conv2d: {out: 2, k: 3}\nrelu\nmax_pool2d: 2",
        "mse",
        CONV,
    );
}

#[test]
fn resampling() {
    check("[2, 3, 3]", "upsample: 2", "mse", "x");
    check("[2, 3, 3]", "upsample: {scale: 3, mode: zeros}", "mse", "x");
    check("[8, 2, 3]", "pixel_shuffle: 2", "mse", "x");
}

#[test]
fn activations() {
    for act in [
        "relu",
        "leaky_relu: {alpha: 0.1}",
        "elu: {alpha: 0.7}",
        "selu",
        "sigmoid",
        "tanh",
        "swish",
    ] {
        check("[3, 2, 2]", act, "mse", "x");
    }
    check("[3, 2, 2]", "prelu", "mse", "prelu0.weight, x");
    check(
        "[3, 2, 2]",
        "prelu: {per_channel: false}",
        "mse",
        "prelu0.weight, x",
    );
    check("[4, 3, 3]", "maxout: 2", "mse", "x");
    check("[6]", "maxout: 3", "mse", "x");
}

#[test]
fn softmax_family() {
    check("[4]", "softmax", "mse", "x");
    check("[2, 3, 3]", "softmax: {axis: 1}", "mse", "x");
    check("[5]", "log_softmax", "nll", "x");
    check("[2, 3, 2]", "log_softmax: {axis: 2}", "mse", "x");
}

#[test]
fn normalization() {
    let bn = "batch_norm0.bias, batch_norm0.weight, x";
    check("[3, 4, 4]", "batch_norm", "mse", bn);
    check("[5]", "batch_norm", "mse", bn);
    check("[3, 4]", "batch_norm", "mse", bn);
    check(
        "[2, 5, 5]",
        "conv2d: {out: 3, k: 3, bias: false}\nbatch_norm\nrelu",
        "mse",
        "batch_norm0.bias, batch_norm0.weight, conv2d0.weight, x",
    );
    check(
        "[5, 3, 3]",
        "lrn: {n: 3, alpha: 0.5, beta: 0.75, k: 2.0}",
        "mse",
        "x",
    );
    check(
        "[6, 2, 2]",
        "lrn: {n: 4, alpha: 0.3, beta: 0.6, k: 1.0}",
        "mse",
        "x",
    );
    check("[4, 3, 3]", "dropout: 0.3", "mse", "x");
    check(
        "[8]",
        "linear: 6\ndropout: 0.5\nlinear: 3",
        "cross_entropy",
        "linear0.bias, linear0.weight, linear1.bias, linear1.weight, x",
    );
}

#[test]
fn structural() {
    // Fan-out: x feeds the convolution and the residual add.
    check(
        "[2, 4, 4]",
        "{conv2d: {out: 2, k: 3, p: 1}, as: y}\n{add: [x, y]}\nrelu",
        "mse",
        CONV,
    );
    check(
        "[2, 4, 4]",
        "{conv2d: {out: 3, k: 1}, from: x, as: a}\n{conv2d: {out: 1, k: 3, p: 1}, from: x, as: b}\n{concat: [[a, x, b]]}",
        "mse",
        "conv2d0.bias, conv2d0.weight, conv2d1.bias, conv2d1.weight, x",
    );
    check(
        "[2, 3, 4]",
        "{tanh, as: a}\n{concat: [[a, x], 2]}",
        "mse",
        "x",
    );
    // One value read twice by one node, and three times in all.
    check("[3]", "{sigmoid, as: s}\n{add: [s, s, x]}", "mse", "x");
}

#[test]
fn two_inputs() {
    let yaml = "name: Two
inputs:
  x: [3]
  y: [3]
layers:
  - {add: [x, y]}
  - linear: 2
outputs: [out]
loss: mse
";
    let graph = compile(yaml).unwrap();
    assert_eq!(
        gradcheck(&graph, 2, 3, 12),
        "linear0.bias, linear0.weight, x, y"
    );
}

#[test]
fn losses() {
    for loss in [
        "cross_entropy",
        "{cross_entropy: {reduction: sum}}",
        "multiclass_hinge",
        "{multiclass_hinge: {margin: 0.5}}",
        "mse",
        "{mse: {reduction: sum}}",
        "l1",
        "{huber: {delta: 0.3}}",
        "{binary_cross_entropy: {from_logits: true}}",
    ] {
        check("[4]", "linear: 3", loss, "linear0.bias, linear0.weight, x");
    }
    check(
        "[4]",
        "linear: 3\nsigmoid",
        "binary_cross_entropy",
        "linear0.bias, linear0.weight, x",
    );
    check(
        "[4]",
        "linear: 3\nlog_softmax",
        "nll",
        "linear0.bias, linear0.weight, x",
    );
}
