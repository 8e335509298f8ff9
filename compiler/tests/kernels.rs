//! Kernel counts per stage, as `kilnc summary --format json` reports them
//! (`kernels`: `shaped`, `fused`, `training`), and `kilnc graph --stage`.
//!
//! The inference ResNet basic block is two kernels after fusion
//! (`fused[conv2d +bn relu]`, `fused[conv2d +bn add relu]`), three with a
//! projection shortcut; LeNet-5 and ResNet-18 are checked before and after.

use std::process::Command;

/// Runs `kilnc args` in the crate's folder; returns (exit code, stdout, stderr).
fn kilnc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kilnc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kilnc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks the kernel counts `kilnc summary` reports for `file` (relative
/// to the crate): `expect` is `(shaped, fused, training)`, training `None`
/// for a network without a training graph. The table's last line says
/// the same.
fn check(file: &str, expect: (u64, u64, Option<u64>)) {
    let (rc, stdout, stderr) = kilnc(&["summary", file, "--format", "json"]);
    assert_eq!(rc, 0, "{file}: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let k = &v["kernels"];
    let got = (
        k["shaped"].as_u64().expect("shaped"),
        k["fused"].as_u64().expect("fused"),
        k["training"].as_u64(),
    );
    assert_eq!(got, expect, "{file}: (shaped, fused, training)");
    let (rc, table, _) = kilnc(&["summary", file]);
    assert_eq!(rc, 0);
    let training = match expect.2 {
        Some(t) => format!("{t} training"),
        None => "no training graph".into(),
    };
    let line = format!(
        "kernels: {} shaped, {} fused, {training}",
        expect.0, expect.1
    );
    assert_eq!(table.lines().last(), Some(line.as_str()), "{file}");
}

#[test]
fn lenet5() {
    // conv+relu ×3, two pools, linear+relu, linear.
    check("../models/lenet5.yaml", (11, 5, Some(33)));
}

#[test]
fn resnet18() {
    // Stem conv+bn+relu, max pool, 8 blocks of 2, 3 projections, pool, fc.
    check("../models/resnet18.yaml", (68, 23, Some(230)));
}

#[test]
fn basic_block_is_two_kernels() {
    // One block with an identity shortcut: conv-bn-relu-conv-bn-add-relu.
    check("tests/data/basic_block_identity.yaml", (7, 2, Some(23)));
    // The emitter's snapshot block, with a projection, a pool and a head.
    check("tests/data/basic_block.yaml", (11, 5, Some(37)));
}

#[test]
fn graph_stages() {
    let file = "tests/data/basic_block_identity.yaml";
    let (rc, fused, _) = kilnc(&["graph", file, "--stage", "fused", "--format", "text"]);
    assert_eq!(rc, 0);
    let ops: Vec<&str> = fused.lines().filter_map(|l| l.split(": ").nth(2)).collect();
    assert_eq!(
        ops,
        [
            "input() {index=0}",
            "fused[conv2d +bn relu](%0) {out=4, k=[3, 3], s=[1, 1], p=[1, 1], d=[1, 1], groups=1, bias=false, bn=basic0.batch_norm0, eps=0.00001}",
            "fused[conv2d +bn add relu](%1, %0) {out=4, k=[3, 3], s=[1, 1], p=[1, 1], d=[1, 1], groups=1, bias=false, bn=basic0.batch_norm1, eps=0.00001}",
        ],
        "{fused}"
    );
    let (rc, shaped, _) = kilnc(&["graph", file, "--format", "text"]);
    assert_eq!(rc, 0);
    assert!(
        shaped.contains("= basic0.batch_norm1: batch_norm(%4)"),
        "{shaped}"
    );
    let (rc, training, _) = kilnc(&["graph", file, "--stage", "training", "--format", "text"]);
    assert_eq!(rc, 0);
    // After training fusion: the first batch norm and ReLU share one backward.
    assert!(
        training.contains(": batch_norm_relu_backward_input("),
        "{training}"
    );
    let (rc, dot, _) = kilnc(&["graph", file, "--stage", "fused"]);
    assert_eq!(rc, 0);
    assert!(
        dot.contains("fused[conv2d +bn add relu] [4, 8, 8]"),
        "{dot}"
    );
    let (rc, parsed, _) = kilnc(&["graph", file, "--stage", "parsed"]);
    assert_eq!(rc, 0);
    assert!(parsed.starts_with("(block basic (x c"), "{parsed}");
    let (rc, _, err) = kilnc(&["graph", file, "--stage", "parsed", "--format", "dot"]);
    assert_eq!(rc, 2);
    assert!(err.contains("text only"), "{err}");
}

#[test]
fn debug_dump_after_each_fusion_pass() {
    let out = Command::new(env!("CARGO_BIN_EXE_kilnc"))
        .args([
            "graph",
            "tests/data/basic_block_identity.yaml",
            "--stage",
            "fused",
        ])
        .env("KILN_DEBUG", "fold_batch_norm,fuse_epilogues")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kilnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dumps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("// after "))
        .collect();
    assert_eq!(
        dumps,
        ["// after fold_batch_norm", "// after fuse_epilogues"],
        "{stderr}"
    );
    // After folding, the first ReLU is still its own node; after fusing
    // epilogues it is not.
    let (folded, fused) = stderr
        .split_once("// after fuse_epilogues")
        .expect("two dumps");
    assert!(folded.contains("basic0.relu0: relu(%1)"), "{folded}");
    assert!(!fused.contains(": relu("), "{fused}");
}
