//! The compiler never panics on input: random chains of ops with random
//! arguments (valid or not), random input shapes and random residual joins
//! go through lowering, shape inference and verification; each run either
//! checks or returns located diagnostics. The same random steps written as
//! YAML go through the front-end, the pipeline and the renderer.

mod common;

use common::*;
use kiln_compiler::ast::{Loc, Module};
use proptest::prelude::*;

const OPS: &[&str] = &[
    "conv2d",
    "conv_transpose2d",
    "linear",
    "flatten",
    "reshape",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "upsample",
    "pixel_shuffle",
    "relu",
    "leaky_relu",
    "prelu",
    "maxout",
    "softmax",
    "batch_norm",
    "lrn",
    "dropout",
    "identity",
    "nope",
    "cross_entropy",
];
const KEYS: &[&str] = &[
    "out",
    "k",
    "s",
    "p",
    "d",
    "groups",
    "bias",
    "exact",
    "ceil",
    "axis",
    "shape",
    "scale",
    "mode",
    "r",
    "alpha",
    "name",
    "in_channels",
    "zzz",
];

fn arg_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..40).prop_map(|i| i.to_string()),
        Just("2147483647".to_string()),
        Just("true".to_string()),
        Just("0.5".to_string()),
        Just("same".to_string()),
        Just("[2,3]".to_string()),
        Just("[-1]".to_string()),
        Just("x".to_string()),
    ]
}

fn step() -> impl Strategy<Value = String> {
    (
        prop::sample::select(OPS),
        prop::collection::vec(
            (prop::option::of(prop::sample::select(KEYS)), arg_value()),
            0..4,
        ),
    )
        .prop_map(|(op, args)| {
            let mut s = op.to_string();
            for (k, v) in args {
                s.push(' ');
                if let Some(k) = k {
                    s.push_str(k);
                    s.push('=');
                }
                s.push_str(&v);
            }
            s
        })
}

/// Runs the pipeline; fails only on a panic or on an error without a location.
fn check(module: Module) {
    if let Err(diags) = kiln_compiler::check(&module) {
        assert!(!diags.is_empty());
        for d in diags.iter() {
            assert!(
                matches!(d.loc, Loc::Text { .. }),
                "unlocated diagnostic: {}",
                d.message
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_chains_never_panic(
        shape in prop::collection::vec(0i64..20, 0..4),
        steps in prop::collection::vec(step(), 0..8),
        join in any::<bool>(),
    ) {
        let refs: Vec<&str> = steps.iter().map(String::as_str).collect();
        let chained = chain(name("x"), &refs, 1);
        let result = if join { plus(chained, name_at("x", 50), 50) } else { chained };
        let module = Module {
            blocks: vec![],
            networks: vec![network("R", &[("x", &shape)], body(vec![], result), &[("y", None)])],
        };
        check(module);
    }

    #[test]
    fn random_yaml_never_panics(
        shape in prop::collection::vec(0i64..20, 1..4),
        steps in prop::collection::vec(step(), 0..8),
        bind in any::<bool>(),
    ) {
        let mut yaml = format!("name: R\ninputs:\n  x: {shape:?}\nlayers:\n");
        for (i, st) in steps.iter().enumerate() {
            let mut words = st.split_whitespace();
            let op = words.next().unwrap_or("relu");
            let words: Vec<&str> = words.collect();
            let extra = if bind && i == 0 { ", as: first" } else { "" };
            let args = if words.iter().all(|w| !w.contains('=')) {
                // Positional arguments: a list.
                let items: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                format!("[{}]", items.join(", "))
            } else {
                // Named arguments: a mapping (positional ones dropped).
                let items: Vec<String> = words
                    .iter()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| format!("{k}: \"{v}\""))
                    .collect();
                format!("{{{}}}", items.join(", "))
            };
            yaml += &format!("  - {{{op}: {args}{extra}}}\n");
        }
        if bind {
            yaml += "  - {add: [first, x]}\n";
        }
        yaml += "outputs: [y]\nloss: mse\n";
        match kiln_compiler::frontend::parse_yaml(&yaml) {
            Ok(module) => {
                if let Err(d) = kiln_compiler::check(&module) {
                    let text = kiln_compiler::render::render("r.yaml", &yaml, &d);
                    prop_assert!(text.contains("r.yaml:"), "{text}");
                }
            }
            Err(d) => {
                let text = kiln_compiler::render::render("r.yaml", &yaml, &d);
                prop_assert!(text.contains("error"), "{text}");
            }
        }
    }
}
