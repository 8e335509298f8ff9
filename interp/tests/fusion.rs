//! The inference fusion passes preserve meaning on every model of the zoo
//! (`models/`, the list of `kiln_models::ZOO`): the fused and the unfused
//! graph, run through the interpreter on seeded random inputs with random
//! parameters and random running statistics (means in ±0.5, variances in
//! [0.5, 1.5], so folding a batch norm is exercised), agree within 1e-5
//! relative. Models written for 224×224 inputs run at a smaller input where
//! their layers allow (global pooling makes the head size-independent), so
//! the whole zoo runs in the interpreter in seconds. Each row also states
//! the kernel counts before and after fusion. The compiler's pass
//! filetests (`compiler/tests/ir/`) run through every pass alone, too.

use kiln_compiler::diag::Diagnostics;
use kiln_compiler::ir::Graph;
use kiln_compiler::passes::{self, try_fuse_for_inference};
use kiln_compiler::summary::{Stage, kernel_count};
use kiln_interp::{Feed, Mode, Params, random_params, random_tensor, run};

/// Compiles zoo model `name` with its input replaced by `input` (or as
/// written, if `None`), fuses it, runs both graphs and compares
/// the outputs; checks the kernel counts `(shaped, fused)` against `expect`.
fn check(name: &str, input: Option<&str>, expect: (usize, usize)) {
    let path = format!("{}/../models/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Some(shape) = input {
        let at = yaml.find("  x: [").expect("the zoo's input is `x`");
        let end = at + yaml[at..].find(']').expect("a shape list") + 1;
        yaml.replace_range(at..end, &format!("  x: {shape}"));
    }
    let module = kiln_compiler::frontend::parse_yaml(&yaml).expect("zoo model parses");
    let shaped = kiln_compiler::check(&module)
        .unwrap_or_else(|d| {
            panic!(
                "{name}: {:?}",
                d.iter().map(|d| &d.message).collect::<Vec<_>>()
            )
        })
        .remove(0)
        .graph;
    let fused = try_fuse_for_inference(&shaped).unwrap_or_else(|d| {
        panic!(
            "{name}: {:?}",
            d.iter().map(|d| &d.message).collect::<Vec<_>>()
        )
    });
    let got = (
        kernel_count(&shaped, Stage::Inference),
        kernel_count(&fused, Stage::Inference),
    );
    assert_eq!(got, expect, "{name}: kernels (shaped, fused)");
    assert_eq!(
        param_set(&shaped),
        param_set(&fused),
        "{name}: the parameters (name, shape, role)"
    );
    // Batch 2 checks the batch indexing of fused kernels; the models that
    // run at a reduced input take batch 1 to keep the test short.
    agree(name, &shaped, &fused, if input.is_none() { 2 } else { 1 });
}

/// Asserts that `before` and `after` compute the same outputs within 1e-5
/// relative (to the output's largest magnitude, or the element's own), and
/// that every parameter of `after` is one of `before`'s (dead layers'
/// parameters may go).
fn agree(name: &str, before: &Graph, after: &Graph, batch: usize) {
    let all = param_set(before);
    let kept = param_set(after);
    assert!(
        kept.iter().all(|p| all.contains(p)),
        "{name}: the fused graph's parameters {kept:?} are not among {all:?}"
    );
    let params = random_params::<f64>(before, 11);
    let a = outputs(before, batch, &params);
    let b = outputs(after, batch, &params);
    assert_eq!(a.len(), b.len(), "{name}: output count");
    for ((port, x), (_, y)) in a.iter().zip(&b) {
        let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: output `{port}` is all zeros");
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(
                (u - v).abs() <= 1e-5 * scale.max(u.abs()),
                "{name}: output `{port}`[{i}]: unfused {u}, fused {v}"
            );
        }
    }
}

/// Every parameter of `graph` as `name shape role`, sorted: a fused
/// graph lists its parameters in another node order (a fused kernel sits
/// where its last step was), so the layout is compared as a set.
fn param_set(graph: &Graph) -> Vec<String> {
    let mut v: Vec<String> = graph
        .node_ids()
        .into_iter()
        .flat_map(|id| graph.node(id).params.clone())
        .map(|p| format!("{} {} {:?}", p.name, p.shape, p.role))
        .collect();
    v.sort();
    v
}

/// Every output of `graph` at inference, batch `n`, on seeded inputs, with
/// `params`.
fn outputs(graph: &Graph, n: usize, params: &Params<f64>) -> Vec<(String, Vec<f64>)> {
    let mut params = params.clone();
    let seed = 11;
    let mut feed = Feed::new(n, Mode::Inference);
    for (k, p) in graph.inputs().iter().enumerate() {
        let len = n * graph.shape(p.value).map_or(0, |s| s.numel()) as usize;
        feed = feed.input(&p.name, random_tensor(len, seed + k as u64, -1.0, 1.0));
    }
    let values = run(graph, &feed, &mut params).unwrap_or_else(|e| panic!("{e}"));
    graph
        .outputs()
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                values.output(&o.name).expect("output").to_vec(),
            )
        })
        .collect()
}

/// Random small networks of the ops fusion touches (convolutions with and
/// without bias, batch norms, activations, dropout, a shape-keeping max
/// pool, and adds of two earlier values, some of them left unused) agree
/// fused and unfused; 120 seeds.
#[test]
fn random_networks() {
    const STEPS: &[&str] = &[
        "conv2d: {out: 4, k: 3, p: 1}",
        "conv2d: {out: 4, k: 1, bias: false}",
        "batch_norm",
        "relu",
        "tanh",
        "sigmoid",
        "leaky_relu: 0.2",
        "swish",
        "dropout: 0.3",
        "max_pool2d: {k: 3, s: 1, p: 1}",
    ];
    for seed in 0..120u64 {
        let mut rng = kiln_runtime::rng::Rng::new(seed);
        let n = 2 + rng.below(9) as usize;
        let mut yaml = String::from("name: R\ninputs:\n  x: [4, 6, 6]\nlayers:\n");
        for i in 0..n {
            let prev = if i == 0 {
                "x".to_string()
            } else {
                format!("s{}", i - 1)
            };
            let pick = rng.below(STEPS.len() as u64 + 3) as usize;
            let other = match rng.below(i as u64 + 1) {
                0 => "x".to_string(),
                j => format!("s{}", j - 1),
            };
            let step = match STEPS.get(pick) {
                Some(op) if rng.below(4) == 0 => format!("{{{op}, from: {other}, as: s{i}}}"),
                Some(op) => format!("{{{op}, from: {prev}, as: s{i}}}"),
                None => format!("{{add: [{prev}, {other}], as: s{i}}}"),
            };
            yaml.push_str(&format!("  - {step}\n"));
        }
        yaml.push_str(&format!("outputs: [s{}]\n", n - 1));
        let module = kiln_compiler::frontend::parse_yaml(&yaml)
            .unwrap_or_else(|_| panic!("seed {seed}: parses\n{yaml}"));
        let graph = kiln_compiler::check(&module)
            .unwrap_or_else(|_| panic!("seed {seed}: checks\n{yaml}"))
            .remove(0)
            .graph;
        let fused =
            try_fuse_for_inference(&graph).unwrap_or_else(|_| panic!("seed {seed}: fuses\n{yaml}"));
        agree(&format!("seed {seed}\n{yaml}"), &graph, &fused, 2);
    }
}

/// Every model of the zoo (`kiln_models::ZOO`, as `models/src/lib.rs`
/// lists it) has its row in this file.
#[test]
fn covers_the_zoo() {
    let lib = include_str!("../../models/src/lib.rs");
    let list = &lib[lib.find("zoo!(").expect("the zoo! list")..];
    let list = &list[..list.find(");").expect("its end")];
    let names: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    assert!(names.len() >= 19, "{names:?}");
    let this = include_str!("fusion.rs");
    for name in names {
        assert!(
            this.contains(&format!("check(\"{name}\", ")),
            "zoo model `{name}` has no row here"
        );
    }
}

/// A pass as the compiler exports it.
type Pass = fn(&Graph) -> Result<Graph, Diagnostics>;

/// Every pass alone, and the whole pipeline, on each pass filetest's
/// network.
#[test]
fn pass_filetests() {
    let dir = format!("{}/../compiler/tests/ir", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("compiler/tests/ir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let all: [(&str, Pass); 7] = [
        ("eliminate_dead", passes::eliminate_dead),
        ("fold_constants", passes::fold_constants),
        ("fold_batch_norm", passes::fold_batch_norm),
        ("reorder_activation_pool", passes::reorder_activation_pool),
        ("fuse_epilogues", passes::fuse_epilogues),
        ("fuse_elementwise", passes::fuse_elementwise),
        ("fuse_for_inference", try_fuse_for_inference),
    ];
    for file in &files {
        let yaml = std::fs::read_to_string(file).expect("filetest");
        let module = kiln_compiler::frontend::parse_yaml(&yaml).expect("filetest parses");
        let graph = kiln_compiler::check(&module)
            .expect("filetest checks")
            .remove(0)
            .graph;
        for (pass, run) in all {
            let name = format!("{} after {pass}", file.display());
            let after = run(&graph).unwrap_or_else(|_| panic!("{name}: the pass failed"));
            agree(&name, &graph, &after, 2);
        }
    }
}

#[test]
fn lenet5() {
    check("lenet5", None, (11, 5));
}

#[test]
fn lenet5_wide() {
    check("lenet5_wide", None, (9, 4));
}

#[test]
fn mlp_mnist() {
    check("mlp_mnist", None, (5, 3));
}

#[test]
fn alexnet() {
    check("alexnet", Some("[3, 64, 64]"), (18, 11));
}

#[test]
fn vgg11() {
    check("vgg11", Some("[3, 32, 32]"), (26, 11));
}

#[test]
fn vgg16() {
    check("vgg16", Some("[3, 32, 32]"), (36, 16));
}

#[test]
fn vgg19() {
    check("vgg19", Some("[3, 32, 32]"), (42, 19));
}

#[test]
fn googlenet() {
    check("googlenet", Some("[3, 32, 32]"), (195, 81));
}

#[test]
fn resnet18() {
    check("resnet18", Some("[3, 32, 32]"), (68, 23));
}

#[test]
fn resnet18_cifar() {
    check("resnet18_cifar", None, (67, 22));
}

#[test]
fn resnet34() {
    check("resnet34", Some("[3, 32, 32]"), (124, 39));
}

#[test]
fn resnet50() {
    check("resnet50", Some("[3, 32, 32]"), (174, 56));
}

#[test]
fn resnet101() {
    check("resnet101", Some("[3, 32, 32]"), (344, 107));
}

#[test]
fn resnet152() {
    check("resnet152", Some("[3, 32, 32]"), (514, 158));
}

#[test]
fn resnet20() {
    check("resnet20", None, (72, 23));
}

#[test]
fn resnet56() {
    check("resnet56", None, (198, 59));
}

#[test]
fn wide_resnet50_2() {
    check("wide_resnet50_2", Some("[3, 32, 32]"), (174, 56));
}

#[test]
fn resnext50_32x4d() {
    check("resnext50_32x4d", Some("[3, 32, 32]"), (174, 56));
}

#[test]
fn densenet121() {
    check("densenet121", Some("[3, 32, 32]"), (426, 246));
}
