//! The interpreter itself: its errors on bad feeds (a message naming the
//! tensor or layer, never a panic), training versus inference for batch
//! norm and dropout, and `f32` against `f64`.

mod common;

use common::{compile, feed, net};
use kiln_interp::{Feed, Mode, Params, Targets, random_params, random_tensor, run};

const MLP: &str =
    "name: M\ninputs:\n  x: [4]\nlayers:\n  - linear: 3\noutputs: [logits]\nloss: cross_entropy\n";

/// Runs the MLP on a batch of 2 after `edit` changes the feed or the
/// parameters, and renders the loss or the error.
fn check(edit: impl FnOnce(&mut Feed<f64>, &mut Params<f64>), expect: &str) {
    let graph = compile(MLP).unwrap();
    let mut params = random_params(&graph, 1);
    let mut f = feed(&graph, 2, 3);
    f.targets = Some(Targets::Classes(vec![0, 2]));
    edit(&mut f, &mut params);
    let got = match run(&graph, &f, &mut params) {
        Ok(v) => v.loss.map_or("no loss".into(), |l| format!("loss {l:.6}")),
        Err(e) => format!("error {e}"),
    };
    assert_eq!(got, expect);
}

#[test]
fn feed_errors() {
    check(|_, _| {}, "loss 0.988353");
    check(
        |f, _| {
            f.inputs.clear();
        },
        "error `x`: input is not in the feed",
    );
    check(
        |f, _| {
            f.inputs.insert("x".into(), vec![0.0; 7]);
        },
        "error `x`: input has 7 values, expected 8 (batch 2 × [4])",
    );
    check(
        |f, _| f.targets = Some(Targets::Classes(vec![0, 3])),
        "error `loss (cross_entropy)`: label 3 of example 1 is not a class (expected 0..3)",
    );
    check(
        |f, _| f.targets = Some(Targets::Classes(vec![0])),
        "error `loss (cross_entropy)`: 1 labels for a batch of 2",
    );
    check(
        |f, _| f.targets = Some(Targets::Values(vec![0.0; 6])),
        "error `loss (cross_entropy)`: takes class indices as targets, found a tensor",
    );
    check(
        |_, p| {
            p.remove("linear0.bias");
        },
        "error `linear0.bias`: parameter of `linear0` is missing",
    );
    check(
        |_, p| {
            p.insert("linear0.weight".into(), vec![0.0; 3]);
        },
        "error `linear0.weight`: parameter has 3 values, expected 12",
    );
    check(|f, _| f.targets = None, "no loss");
}

#[test]
fn batch_norm_modes() {
    let graph = compile(&net("[2, 3]", "batch_norm", "mse")).unwrap();
    let x: Vec<f64> = random_tensor(12, 4, -2.0, 2.0);
    let mut params: Params<f64> = [
        ("batch_norm0.weight", vec![1.0, 1.0]),
        ("batch_norm0.bias", vec![0.0, 0.0]),
        ("batch_norm0.running_mean", vec![0.5, -0.5]),
        ("batch_norm0.running_var", vec![4.0, 1.0]),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    let eps = 1e-5f64;
    let infer = run(
        &graph,
        &Feed::new(2, Mode::Inference).input("x", x.clone()),
        &mut params,
    )
    .unwrap();
    let y = infer.output("out").unwrap();
    // Inference: the running statistics, and no update.
    for (i, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        let c = (i / 3) % 2;
        let (m, v) = ([0.5, -0.5][c], [4.0, 1.0][c]);
        assert!((yv - (xv - m) / (v + eps).sqrt()).abs() < 1e-12);
    }
    assert_eq!(params["batch_norm0.running_mean"], vec![0.5, -0.5]);
    // Training: each channel of the output has mean 0 and variance ≈ 1, and
    // the running statistics move by the momentum 0.1 toward the batch's.
    let train = run(
        &graph,
        &Feed::new(2, Mode::Training { seed: 1 }).input("x", x.clone()),
        &mut params,
    )
    .unwrap();
    let y = train.output("out").unwrap();
    for c in 0..2 {
        let vals: Vec<f64> = (0..2)
            .flat_map(|n| (0..3).map(move |s| (n * 2 + c) * 3 + s))
            .map(|i| y[i])
            .collect();
        let xs: Vec<f64> = (0..2)
            .flat_map(|n| (0..3).map(move |s| (n * 2 + c) * 3 + s))
            .map(|i| x[i])
            .collect();
        let mean = vals.iter().sum::<f64>() / 6.0;
        let var = vals.iter().map(|v| v * v).sum::<f64>() / 6.0;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-4,
            "channel {c}: {mean} {var}"
        );
        let xm = xs.iter().sum::<f64>() / 6.0;
        let want = 0.9 * [0.5, -0.5][c] + 0.1 * xm;
        assert!((params["batch_norm0.running_mean"][c] - want).abs() < 1e-12);
    }
}

#[test]
fn dropout_modes() {
    let graph = compile(&net("[1000]", "dropout: 0.25", "mse")).unwrap();
    let x = vec![1.0f64; 1000];
    let mut params = Params::new();
    let infer = run(
        &graph,
        &Feed::new(1, Mode::Inference).input("x", x.clone()),
        &mut params,
    )
    .unwrap();
    assert_eq!(infer.output("out").unwrap(), &x[..]);
    let a = run(
        &graph,
        &Feed::new(1, Mode::Training { seed: 9 }).input("x", x.clone()),
        &mut params,
    )
    .unwrap();
    let b = run(
        &graph,
        &Feed::new(1, Mode::Training { seed: 10 }).input("x", x.clone()),
        &mut params,
    )
    .unwrap();
    let ya = a.output("out").unwrap();
    let kept = ya.iter().filter(|&&v| v != 0.0).count();
    assert!(
        (700..800).contains(&kept),
        "{kept} of 1000 kept at p = 0.25"
    );
    assert!(
        ya.iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
    );
    assert_ne!(ya, b.output("out").unwrap(), "another seed, another mask");
}

#[test]
fn f32_matches_f64() {
    let graph = compile(include_str!("../../models/lenet5.yaml")).unwrap();
    let p64: Params<f64> = random_params(&graph, 2);
    let mut p32: Params<f32> = random_params(&graph, 2);
    let x64: Vec<f64> = random_tensor(2 * 32 * 32, 5, -1.0, 1.0);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    for (k, v) in &p64 {
        assert_eq!(p32[k], v.iter().map(|&w| w as f32).collect::<Vec<_>>());
    }
    let y64 = run(
        &graph,
        &Feed::new(2, Mode::Inference).input("x", x64),
        &mut p64.clone(),
    )
    .unwrap();
    let y32 = run(
        &graph,
        &Feed::new(2, Mode::Inference).input("x", x32),
        &mut p32,
    )
    .unwrap();
    for (a, b) in y64
        .output("logits")
        .unwrap()
        .iter()
        .zip(y32.output("logits").unwrap())
    {
        assert!(
            (a - *b as f64).abs() <= 1e-4 * (1.0 + a.abs()),
            "{a} vs {b}"
        );
    }
}

#[test]
fn flat_params_round_trip() {
    use kiln_runtime::params::{ParamLayout, Params as Flat};
    let graph = compile(&net("[2, 3]", "batch_norm\nflatten\nlinear: 2", "mse")).unwrap();
    let (mut layout, mut buffers) = (ParamLayout::new(), ParamLayout::new());
    for id in graph.node_ids() {
        for p in &graph.node(id).params {
            let l = if p.role.is_learned() {
                &mut layout
            } else {
                &mut buffers
            };
            l.push(&p.name, p.shape.dims()).unwrap();
        }
    }
    let mut flat = Flat::new(layout, buffers).unwrap();
    let params: Params<f32> = random_params(&graph, 8);
    assert!(kiln_interp::params_into_flat(&params, &mut flat).is_empty());
    let back: Params<f32> = kiln_interp::params_from_flat(&flat);
    assert_eq!(back, params);
    let mut short = params.clone();
    short.remove("linear0.bias");
    assert_eq!(
        kiln_interp::params_into_flat(&short, &mut flat),
        ["linear0.bias"]
    );
}

#[test]
fn unshaped_graph_is_an_error() {
    use kiln_compiler::ast::Loc;
    use kiln_compiler::ir::{Graph, NodeMeta, Op, Shape};
    let mut g = Graph::new("U");
    let x = g.add_input("x", Shape(vec![2]), Loc::Synthetic);
    let meta = NodeMeta {
        name: "relu0".into(),
        loc: Loc::Synthetic,
    };
    g.add_node(
        Op::Activation(kiln_compiler::ir::Activation::Relu),
        vec![x],
        meta,
    );
    let err = run(
        &g,
        &Feed::new(1, Mode::Inference).input("x", vec![1.0f64, -1.0]),
        &mut Params::new(),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "`relu0`: the value has no shape; run shape inference first"
    );
}

#[test]
fn ceil_mode_max_pool() {
    // A 5×5 plane of 0..24 in 2×2 windows, stride 2, ceil mode: the last
    // row and column of windows are partial and take the max of what they
    // cover (PyTorch's ceil_mode=True).
    let yaml = net("[1, 5, 5]", "max_pool2d: {k: 2, ceil: true}", "mse");
    let graph = compile(&yaml).unwrap();
    let x: Vec<f64> = (0..25).map(f64::from).collect();
    let f = Feed::new(1, Mode::Inference).input("x", x);
    let v = run(&graph, &f, &mut Params::new()).unwrap();
    assert_eq!(
        v.output("out").unwrap(),
        [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]
    );
    // With padding 1 (k 3, s 2): 5 + 2 − 3 = 4, even, so ceil and floor
    // agree on 3×3.
    let yaml = net(
        "[1, 5, 5]",
        "max_pool2d: {k: 3, s: 2, p: 1, ceil: true}",
        "mse",
    );
    let graph = compile(&yaml).unwrap();
    let x: Vec<f64> = (0..25).map(f64::from).collect();
    let f = Feed::new(1, Mode::Inference).input("x", x);
    let v = run(&graph, &f, &mut Params::new()).unwrap();
    assert_eq!(
        v.output("out").unwrap(),
        [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]
    );
}
