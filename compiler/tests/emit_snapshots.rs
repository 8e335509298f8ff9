//! Snapshots of the generated code (`plan::build` + `emit::cpu::emit`,
//! formatted by `prettyplease`) for LeNet-5 and one ResNet basic block with
//! batch norm: a change to the emitter shows up as a reviewed diff.

use kiln_compiler::emit::cpu::{TypeInfo, emit};
use kiln_compiler::{frontend, plan};

/// The formatted code generated for the model file at `path` (relative to
/// the compiler crate).
fn generated(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    let module = frontend::parse_yaml(&text).expect("the model parses");
    let net = kiln_compiler::check(&module)
        .expect("the model checks")
        .remove(0);
    let info = TypeInfo {
        docs: vec![format!(" The `{}` network.", net.name)],
        public: true,
        span: proc_macro2::Span::call_site(),
    };
    let tokens = emit(&plan::build(&net.graph), &info).expect("the emitter takes the model");
    prettyplease::unparse(&syn::parse2(tokens).expect("the generated code parses"))
}

/// Snapshots the code generated for `path` under `name`.
fn check(name: &str, path: &str) {
    insta::assert_snapshot!(name, generated(path));
}

#[test]
fn lenet5() {
    check("lenet5", "../models/lenet5.yaml");
}

#[test]
fn resnet_basic_block() {
    check("basic_block", "tests/data/basic_block.yaml");
}
