//! `kilnc emit` and `kilnc summary --memory`, run as the binary a user runs:
//! a snapshot of LeNet-5's memory report, resnet18's inference arena against
//! its lower bound, the emitted code parsing as Rust, and usage errors.

use std::process::Command;

/// Runs `kilnc` with `args` (from the workspace root); returns the exit
/// status, stdout and stderr.
fn kilnc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kilnc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("kilnc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `kilnc args` and checks its status and that stderr contains
/// `stderr_has`; returns stdout.
fn check(args: &[&str], status: i32, stderr_has: &str) -> String {
    let (code, out, err) = kilnc(args);
    assert_eq!(code, status, "kilnc {args:?}: status; stderr: {err}");
    assert!(
        err.contains(stderr_has),
        "kilnc {args:?}: stderr {err:?} lacks {stderr_has:?}"
    );
    out
}

#[test]
fn summary_memory_lenet5() {
    let out = check(&["summary", "--memory", "models/lenet5.yaml"], 0, "");
    insta::assert_snapshot!(out);
}

#[test]
fn summary_memory_scales_with_the_batch() {
    let one = check(&["summary", "--memory", "models/lenet5.yaml"], 0, "");
    let four = check(
        &[
            "summary",
            "--memory",
            "models/lenet5.yaml",
            "--batch",
            "4",
            "--train-batch",
            "8",
        ],
        0,
        "",
    );
    // 6,336 B per example of inference (the snapshot), 4 examples.
    assert!(one.contains("batch    1: arena         6,336 B"), "{one}");
    assert!(four.contains("batch    4: arena        25,344 B"), "{four}");
    assert!(four.contains("training  batch    8:"), "{four}");
}

/// Parses the number of bytes after `label` in a `summary --memory` line.
fn bytes_after(line: &str, label: &str) -> u64 {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {label} in {line}"))
}

#[test]
fn resnet18_inference_arena_is_near_the_lower_bound() {
    let out = check(&["summary", "--memory", "models/resnet18.yaml"], 0, "");
    let line = out
        .lines()
        .find(|l| l.contains("inference"))
        .expect("the inference line");
    let arena = bytes_after(line, "arena");
    let lower = bytes_after(line, "lower bound");
    let none = bytes_after(line, "no reuse");
    assert!(lower > 0 && lower <= arena && arena <= none, "{line}");
    assert!(
        arena as f64 <= 1.15 * lower as f64,
        "resnet18 inference arena {arena} B is over 1.15x its lower bound {lower} B"
    );
}

#[test]
fn emit_prints_rust_that_parses() {
    let out = check(&["emit", "models/lenet5.yaml"], 0, "");
    let file: syn::File = syn::parse_str(&out).expect("kilnc emit prints a Rust file");
    let names: Vec<String> = file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Struct(s) => Some(s.ident.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["LeNet5"]);
    for f in [
        "pub fn forward",
        "pub fn train_step",
        "pub const PARAM_COUNT: usize = 61706usize",
    ] {
        assert!(out.contains(f), "kilnc emit lacks `{f}`");
    }
}

#[test]
fn usage_errors() {
    check(
        &["emit", "no/such/model.yaml"],
        2,
        "cannot read no/such/model.yaml",
    );
    check(
        &["summary", "--memory", "models/lenet5.yaml", "--batch", "0"],
        2,
        "--batch",
    );
    check(
        &["summary", "--memory", "models/lenet5.yaml", "--batch", "x"],
        2,
        "invalid value",
    );
    check(
        &["summary", "models/lenet5.yaml", "--batch", "4"],
        2,
        "--memory",
    );
    check(
        &[
            "summary",
            "--memory",
            "models/lenet5.yaml",
            "--format",
            "json",
        ],
        2,
        "cannot be used",
    );
}

#[test]
fn emit_reports_an_unsupported_layer_located() {
    // Training through a transposed convolution is not emitted yet.
    let dir = std::env::temp_dir().join(format!("kilnc-emit-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("up.yaml");
    let model = "name: Up\ninputs:\n  x: [2, 3, 3]\nlayers:\n  - conv_transpose2d: {out: 2, k: 3, s: 2, p: 1}\noutputs:\n  y: [2, 5, 5]\nloss: mse\n";
    std::fs::write(&file, model).unwrap();
    let path = file.display().to_string();
    let (code, out, err) = kilnc(&["emit", &path]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1, "stderr: {err}");
    assert!(out.is_empty());
    assert!(
        err.contains("up.yaml:5:5") && err.contains("conv_transpose2d0"),
        "{err}"
    );
}

#[test]
fn emit_reports_a_model_error_located() {
    let dir = std::env::temp_dir().join(format!("kilnc-emit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: Bad\ninputs:\n  x: [4]\nlayers:\n  - linear: 0\noutputs: [y]\n",
    )
    .unwrap();
    let path = bad.display().to_string();
    let (code, out, err) = kilnc(&["emit", &path]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1, "stderr: {err}");
    assert!(out.is_empty());
    assert!(err.contains("bad.yaml:"), "{err}");
}
