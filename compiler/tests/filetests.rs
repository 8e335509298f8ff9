//! Filetests of the IR: each YAML file in `tests/ir/` goes through the
//! front-end, lowering and shape inference, and its IR text dump (the one
//! `KILN_DEBUG` prints) is compared with the snapshot
//! `tests/snapshots/filetests__<name>.snap`. Refresh with
//! `INSTA_UPDATE=always cargo test -p kiln-compiler --test filetests`, then
//! review the diff.

/// Checks the IR of `tests/ir/<name>.yaml` against its snapshot.
fn check(name: &str) {
    let path = format!("{}/tests/ir/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("IR filetest");
    let module = kiln_compiler::frontend::parse_yaml(&source)
        .unwrap_or_else(|d| panic!("{}", kiln_compiler::render::render(&path, &source, &d)));
    let nets = kiln_compiler::check(&module)
        .unwrap_or_else(|d| panic!("{}", kiln_compiler::render::render(&path, &source, &d)));
    insta::assert_snapshot!(name, nets[0].graph.to_string());
}

#[test]
fn residual() {
    check("residual");
}

#[test]
fn branches() {
    check("branches");
}
