//! `kilnc` end to end: exit codes, located error reports (snapshot-tested),
//! summaries in JSON, DOT graphs and `explain`.
//!
//! Each YAML file in `tests/errors/` holds one mistake (two in
//! `two_errors.yaml`); its `kilnc check` report is a snapshot in
//! `tests/snapshots/`. Refresh with `INSTA_UPDATE=always cargo test -p
//! kiln-compiler --test cli`, then review the diff.

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

/// The expected errors of a file: `(line, code)` for every line that ends
/// in a `# error: CODE` comment.
fn expected_errors(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            l.split_once("# error: ")
                .map(|(_, code)| (i + 1, code.trim().to_string()))
        })
        .collect()
}

/// Checks one error file: exit 1, and for each `# error: CODE` comment a
/// diagnostic with that code whose `file:line:col` header names that line,
/// followed by the source line; the whole report as in the snapshot.
fn check(name: &str) {
    let file = format!("tests/errors/{name}.yaml");
    let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("error file");
    let expected = expected_errors(&source);
    assert!(!expected.is_empty(), "{name}: no `# error:` comment");
    let (rc, stdout, stderr) = kilnc(&["check", &file]);
    assert_eq!(rc, 1, "{name}: exit code\n{stderr}");
    assert!(stdout.is_empty(), "{name}: nothing on stdout");
    let reports: Vec<&str> = stderr
        .split("\n\n")
        .filter(|r| r.starts_with("error["))
        .collect();
    assert_eq!(
        reports.len(),
        expected.len(),
        "{name}: one report per expected error\n{stderr}"
    );
    for ((line, code), report) in expected.iter().zip(&reports) {
        assert!(
            report.starts_with(&format!("error[{code}]")),
            "{name}: code {code}\n{report}"
        );
        assert!(
            report.contains(&format!("--> {file}:{line}:")),
            "{name}: line {line}\n{report}"
        );
        let text = source.lines().nth(line - 1).unwrap_or_default();
        assert!(
            report.contains(&format!("{line} | {text}")),
            "{name}: source line\n{report}"
        );
    }
    insta::assert_snapshot!(name, stderr);
}

#[test]
fn errors_are_located() {
    let dir = format!("{}/tests/errors", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("tests/errors")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".yaml")
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 14, "{names:?}");
    for name in &names {
        check(name);
    }
}

#[test]
fn debug_dump_after_a_pass() {
    let out = Command::new(env!("CARGO_BIN_EXE_kilnc"))
        .args(["check", "../models/lenet5.yaml"])
        .env("KILN_DEBUG", "infer_shapes")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kilnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("// after infer_shapes\ngraph LeNet5 {"),
        "{stderr}"
    );
    assert!(
        stderr.contains("%1: [6, 28, 28] = conv2d0: conv2d(%0)"),
        "{stderr}"
    );
    assert!(!stderr.contains("// after lower"), "{stderr}");
}

#[test]
fn valid_model_and_summary_json() {
    let (rc, stdout, _) = kilnc(&["check", "../models/lenet5.yaml"]);
    assert_eq!(rc, 0);
    assert!(stdout.contains("`LeNet5` is valid"), "{stdout}");
    // Several files: each is reported, and one bad file fails the run.
    let (rc, stdout, stderr) = kilnc(&["check", "../models/vgg11.yaml", "tests/errors/cycle.yaml"]);
    assert_eq!(rc, 1);
    assert!(stdout.contains("`Vgg11` is valid"), "{stdout}");
    assert!(stderr.contains("error[K0102]"), "{stderr}");

    let (rc, stdout, stderr) = kilnc(&["summary", "../models/lenet5.yaml", "--format", "json"]);
    assert_eq!(rc, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["total_params"], 61_706);
    assert_eq!(v["total_macs"], 416_520);
    let layers = v["layers"].as_array().expect("layers");
    let first = &layers[0];
    for key in ["name", "op", "output_shape", "params", "macs"] {
        assert!(first.get(key).is_some(), "layer field {key}");
    }
    assert_eq!(first["name"], "conv2d0");
    assert_eq!(first["output_shape"], serde_json::json!([6, 28, 28]));
}

#[test]
fn graph_and_usage() {
    let (rc, stdout, _) = kilnc(&["graph", "../models/lenet5.yaml"]);
    assert_eq!(rc, 0);
    assert!(stdout.starts_with("digraph \"LeNet5\""), "{stdout}");
    assert!(stdout.contains("conv2d0\\nconv2d [6, 28, 28]"), "{stdout}");

    let (rc, stdout, _) = kilnc(&["graph", "../models/lenet5.yaml", "--format", "text"]);
    assert_eq!(rc, 0);
    assert!(stdout.starts_with("graph LeNet5 {"), "{stdout}");

    assert_eq!(kilnc(&[]).0, 2);
    assert_eq!(kilnc(&["check"]).0, 2);
    assert_eq!(kilnc(&["frobnicate", "x"]).0, 2);
    assert_eq!(kilnc(&["check", "tests/errors/no_such_file.yaml"]).0, 2);
}

#[test]
fn explain() {
    let (rc, stdout, _) = kilnc(&["explain", "K0124"]);
    assert_eq!(rc, 0);
    assert!(
        stdout.starts_with("K0124: add of tensors with different shapes"),
        "{stdout}"
    );
    assert!(stdout.contains("Fix:"));
    // The front-end's codes are explained too.
    let (rc, stdout, _) = kilnc(&["explain", "K0001"]);
    assert_eq!(rc, 0);
    assert!(stdout.starts_with("K0001: "), "{stdout}");
    let (rc, _, stderr) = kilnc(&["explain", "K9999"]);
    assert_eq!(rc, 2);
    assert!(stderr.contains("not a kiln diagnostic code"));
}
