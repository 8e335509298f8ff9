//! The generated training step: LeNet-5 learning, its gradients against
//! the interpreter, and a smooth network's gradients against central
//! differences. (The seeds' worked backpropagation example runs with the
//! rest of the worked examples in `gen_train_worked.rs`.)

use kiln::runtime::init::{Dist, Init, InitPolicy};
use kiln::runtime::optim::Optim;

kiln::network!("models/lenet5.yaml");

#[test]
fn lenet5_loss_falls_on_a_fixed_batch() {
    let init = InitPolicy::new(Init::He(Dist::Normal));
    let mut net = LeNet5::new(&init, 3, 8).unwrap();
    let x: Vec<f32> = (0..8 * LeNet5::INPUT_LEN)
        .map(|i| ((i * 7919 + 13) % 251) as f32 / 251.0)
        .collect();
    let y: Vec<u32> = (0..8).map(|i| i % 10).collect();
    let mut opt = Optim::momentum(0.9);
    let first = net.train_step(&x, &y, &mut opt, 0.01).unwrap();
    let mut last = first;
    for _ in 0..60 {
        last = net.train_step(&x, &y, &mut opt, 0.01).unwrap();
    }
    assert!(last < 0.2 * first, "loss {first} -> {last}");
    // The training-mode logits now classify the batch it memorized.
    let out = net.train_output(8).to_vec();
    let hits = out
        .chunks(10)
        .zip(&y)
        .filter(|(row, c)| {
            let best = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == **c as usize
        })
        .count();
    assert!(hits >= 7, "{hits} of 8");
    assert!(net.train_step(&x, &y[..3], &mut opt, 0.01).is_err());
}

/// The generated gradients of LeNet-5 against the interpreter's joint graph
/// (whose every rule is checked against finite differences in f64), on the
/// same weights and batch.
#[test]
fn lenet5_gradients_match_the_interpreter() {
    use kiln_compiler::frontend;
    use kiln_interp::{Feed, Mode, Targets, params_from_flat, run};
    let init = InitPolicy::new(Init::Glorot(Dist::Uniform));
    let mut net = LeNet5::new(&init, 11, 2).unwrap();
    let x: Vec<f32> = (0..2 * LeNet5::INPUT_LEN)
        .map(|i| ((i * 31 + 7) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let y = [3u32, 8];
    let loss = net.loss_and_grads(&x, &y).unwrap();

    let src = include_str!("../models/lenet5.yaml");
    let (module, diags) = frontend::yaml::parse(src);
    assert!(!diags.has_errors());
    let checked = kiln_compiler::check(&module).unwrap();
    let joint = kiln_compiler::passes::autodiff(&checked[0].graph).unwrap();
    let mut params = params_from_flat::<f64>(net.params());
    let feed = Feed::new(2, Mode::Training { seed: 0 })
        .input("x", x.iter().map(|&v| v as f64).collect())
        .targets(Targets::Classes(y.to_vec()));
    let values = run(&joint.graph, &feed, &mut params).unwrap();
    let want_loss = values.loss.unwrap();
    assert!((loss as f64 - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0));
    for (name, v) in &joint.param_grads {
        let want = values.get(*v).unwrap();
        let got = net.params().grad(name).unwrap();
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-3);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * scale + 1e-6,
                "{name}[{i}]: generated {g}, interpreter {w}"
            );
        }
    }
}

kiln::network! {
    /// A smooth network (no kinks), so that central differences in f32 are
    /// accurate enough to check the generated gradients directly.
    network Smooth(x: [2, 6, 6]) -> [4] {
        x.conv2d(3, k = 3, p = 1).tanh().avg_pool2d(2).flatten().linear(5).sigmoid().linear(4)
    }
    loss cross_entropy;
}

/// The generated training step's gradients against central differences of
/// the generated loss itself, on every coordinate of every parameter.
#[test]
fn generated_gradients_pass_a_finite_difference_check() {
    let init = InitPolicy::new(Init::Glorot(Dist::Uniform)).rule("*.bias", Init::Constant(0.1));
    let mut net = Smooth::new(&init, 5, 2).unwrap();
    let x: Vec<f32> = (0..2 * Smooth::INPUT_LEN)
        .map(|i| ((i * 37 + 11) % 23) as f32 / 23.0 - 0.5)
        .collect();
    let y = [1u32, 3];
    net.loss_and_grads(&x, &y).unwrap();
    let grads = net.params().grads.clone();
    let h = 1e-2f32;
    let mut worst = (0.0f32, String::new());
    for i in 0..grads.len() {
        let w = net.params().values[i];
        net.params_mut().values[i] = w + h;
        let up = net.loss_and_grads(&x, &y).unwrap();
        net.params_mut().values[i] = w - h;
        let down = net.loss_and_grads(&x, &y).unwrap();
        net.params_mut().values[i] = w;
        let numeric = (up - down) / (2.0 * h);
        let err = (numeric - grads[i]).abs() / numeric.abs().max(grads[i].abs()).max(1e-2);
        if err > worst.0 {
            let (slot, k) = net.params().layout.locate(i).unwrap();
            worst = (
                err,
                format!(
                    "{}[{k}]: numeric {numeric}, generated {}",
                    slot.name, grads[i]
                ),
            );
        }
    }
    assert!(
        worst.0 < 1e-2,
        "worst relative error {}: {}",
        worst.0,
        worst.1
    );
}
