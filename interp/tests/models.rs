//! Whole networks through autodiff and the interpreter at batch 2: LeNet-5,
//! `lenet5_wide` and `mlp_mnist` from `models/`, and a small ResNet with
//! basic blocks (batch norm, identity and projection shortcuts) built from
//! `resnet20.yaml`'s block. Every parameter's gradient (and the input's) is
//! checked against central finite differences at a few sampled coordinates.

mod common;

use common::{compile, gradcheck};

/// Checks `yaml`'s gradients at `samples` coordinates per tensor and
/// compares the list of checked gradients with `expect`.
fn check(yaml: &str, samples: usize, expect: &str) {
    let graph = compile(yaml).unwrap_or_else(|e| panic!("{e}"));
    let got = gradcheck(&graph, 2, 5, samples);
    assert_eq!(got, expect.trim(), "\n--- got ---\n{got}");
}

#[test]
fn lenet5() {
    check(
        include_str!("../../models/lenet5.yaml"),
        6,
        "conv2d0.bias, conv2d0.weight, conv2d1.bias, conv2d1.weight, conv2d2.bias, conv2d2.weight, \
         linear0.bias, linear0.weight, linear1.bias, linear1.weight, x",
    );
}

#[test]
fn lenet5_wide() {
    check(
        include_str!("../../models/lenet5_wide.yaml"),
        4,
        "conv2d0.bias, conv2d0.weight, conv2d1.bias, conv2d1.weight, \
         linear0.bias, linear0.weight, linear1.bias, linear1.weight, x",
    );
}

#[test]
fn mlp_mnist() {
    check(
        include_str!("../../models/mlp_mnist.yaml"),
        6,
        "linear0.bias, linear0.weight, linear1.bias, linear1.weight, linear2.bias, linear2.weight, x",
    );
}

#[test]
fn resnet_basic_blocks() {
    let zoo = include_str!("../../models/resnet20.yaml");
    let blocks = &zoo[zoo.find("blocks:").unwrap()..zoo.find("  stage:").unwrap()];
    let yaml = format!(
        "name: Tiny
inputs:
  x: [3, 8, 8]
{blocks}layers:
  - conv2d: {{out: 4, k: 3, p: 1, bias: false}}
  - batch_norm
  - relu
  - basic: {{c: 4}}
  - basic: {{c: 6, stride: 2}}
  - global_avg_pool
  - linear: 3
outputs: [logits]
loss: cross_entropy
"
    );
    let bn = |p: &str| format!("{p}.bias, {p}.weight");
    let expect = [
        bn("basic0.batch_norm0"),
        bn("basic0.batch_norm1"),
        "basic0.conv2d0.weight, basic0.conv2d1.weight".into(),
        bn("basic1.batch_norm0"),
        bn("basic1.batch_norm1"),
        bn("basic1.batch_norm2"),
        "basic1.conv2d0.weight, basic1.conv2d1.weight, basic1.conv2d2.weight".into(),
        bn("batch_norm0"),
        "conv2d0.weight, linear0.bias, linear0.weight, x".into(),
    ]
    .join(", ");
    check(&yaml, 6, &expect);
}
