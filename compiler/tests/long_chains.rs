//! Long chains of steps in YAML: up to `MAX_STEPS` steps check (on a test
//! thread's 2 MiB stack, in release and in debug builds), and beyond it the file gets one located `K0010`
//! error instead of an AST deep enough to overflow the stack when it is
//! lowered or dropped (250,000 steps did before the cap).

use kiln_compiler::frontend::yaml::MAX_STEPS;

/// A network of `n` ReLU steps after a linear layer, checked: `expect` is
/// `ok` or the first diagnostic as `CODE line:col`.
fn check(n: usize, expect: &str) {
    let mut yaml = String::from("name: Long\ninputs:\n  x: [4]\nlayers:\n  - linear: 4\n");
    for _ in 0..n {
        yaml.push_str("  - relu\n");
    }
    yaml.push_str("outputs: [out]\n");
    let got =
        match kiln_compiler::frontend::parse_yaml(&yaml).and_then(|m| kiln_compiler::check(&m)) {
            Ok(nets) => format!("ok {} layers", nets[0].summary.layers.len()),
            Err(d) => {
                let d = d.iter().next().expect("a diagnostic");
                match d.loc {
                    kiln_compiler::ast::Loc::Text { line, col, .. } => {
                        format!("{} {line}:{col}", kiln_compiler::codes::code_str(d.code))
                    }
                    _ => format!("{} unlocated", kiln_compiler::codes::code_str(d.code)),
                }
            }
        };
    assert_eq!(got, expect, "{n} steps");
}

#[test]
fn step_cap() {
    // The linear layer is step 1.
    check(MAX_STEPS - 1, &format!("ok {MAX_STEPS} layers"));
    check(MAX_STEPS, &format!("K0010 {}:5", MAX_STEPS + 5));
    check(250_000, &format!("K0010 {}:5", MAX_STEPS + 5));
}
