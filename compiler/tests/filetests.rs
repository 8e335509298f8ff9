//! Filetests of the IR and its passes: each YAML file in `tests/ir/` goes
//! through the front-end, lowering and shape inference, then through the
//! passes its first line names (`# passes: fold_batch_norm, fuse_epilogues`;
//! none if it has no such line), and its IR text dump (the one `KILN_DEBUG`
//! prints) is compared with the snapshot
//! `tests/snapshots/filetests__<name>.snap`. Refresh with
//! `INSTA_UPDATE=always cargo test -p kiln-compiler --test filetests`, then
//! review the diff.

use kiln_compiler::diag::Diagnostics;
use kiln_compiler::ir::Graph;
use kiln_compiler::passes;

/// Checks the IR of `tests/ir/<name>.yaml`, after its passes, against its
/// snapshot.
fn check(name: &str) {
    let path = format!("{}/tests/ir/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("IR filetest");
    let fail =
        |d: Diagnostics| -> ! { panic!("{}", kiln_compiler::render::render(&path, &source, &d)) };
    let module = kiln_compiler::frontend::parse_yaml(&source).unwrap_or_else(|d| fail(d));
    let mut graph = kiln_compiler::check(&module)
        .unwrap_or_else(|d| fail(d))
        .remove(0)
        .graph;
    let header = source.lines().next().unwrap_or("");
    let names = header.strip_prefix("# passes:").unwrap_or("");
    for pass in names.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        graph = run(pass, &graph).unwrap_or_else(|d| fail(d));
    }
    insta::assert_snapshot!(name, graph.to_string());
}

/// Runs the pass called `name` on `graph`.
fn run(name: &str, graph: &Graph) -> Result<Graph, Diagnostics> {
    match name {
        "eliminate_dead" => passes::eliminate_dead(graph),
        "fold_constants" => passes::fold_constants(graph),
        "fold_batch_norm" => passes::fold_batch_norm(graph),
        "reorder_activation_pool" => passes::reorder_activation_pool(graph),
        "fuse_epilogues" => passes::fuse_epilogues(graph),
        "fuse_elementwise" => passes::fuse_elementwise(graph),
        "fuse_pool" => passes::fuse_pool(graph),
        "fuse_for_inference" => passes::try_fuse_for_inference(graph),
        other => panic!("filetest names an unknown pass `{other}`"),
    }
}

#[test]
fn residual() {
    check("residual");
}

#[test]
fn branches() {
    check("branches");
}

#[test]
fn fold_batch_norm() {
    check("fold_batch_norm");
}

#[test]
fn fuse_epilogues() {
    check("fuse_epilogues");
}

#[test]
fn fuse_elementwise() {
    check("fuse_elementwise");
}

#[test]
fn eliminate_dead() {
    check("eliminate_dead");
}

#[test]
fn fold_constants() {
    check("fold_constants");
}

#[test]
fn fuse_for_inference() {
    check("fuse_for_inference");
}

#[test]
fn reorder_activation_pool() {
    check("reorder_activation_pool");
}

#[test]
fn fuse_pool() {
    check("fuse_pool");
}
