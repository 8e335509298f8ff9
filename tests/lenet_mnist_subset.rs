//! LeNet-5, compiled by `network!` and trained by generated code on a
//! 2,000-image subset of the real MNIST, classifies held-out test images.

use std::sync::Arc;

use kiln::runtime::data::{self, Normalize, Split, load_mnist};
use kiln::runtime::init::{Dist, Init, InitPolicy};
use kiln::runtime::optim::Optim;
use kiln::runtime::progress::Output;
use kiln::runtime::schedule::{Decay, Schedule};
use kiln::runtime::train::{FitConfig, fit};

kiln::network!("models/lenet5.yaml");

#[test]
fn lenet5_learns_mnist_from_2000_images() {
    let dir = data::data_dir().join("mnist");
    let prepare = |split| {
        let mut d = load_mnist(&dir, split).unwrap().padded(2);
        d.normalize(&Normalize::mnist()).unwrap();
        d
    };
    let train = prepare(Split::Train).random_subset(2000, 5);
    let held_out = prepare(Split::Test).first(2000);
    let mut net = LeNet5::new(&InitPolicy::new(Init::He(Dist::Uniform)), 1, 32).unwrap();
    let epochs = 8;
    let steps = (epochs * train.len().div_ceil(32)) as u64;
    let mut schedule = Schedule::new(0.05, Decay::Cosine { total: steps }).with_warmup(50);
    let mut opt = Optim::nesterov(0.9);
    let cfg = FitConfig {
        progress: Output::Hidden,
        ..FitConfig::new(epochs)
    };
    let history = fit(
        &mut net,
        Arc::new(train),
        &held_out,
        &mut opt,
        &mut schedule,
        &cfg,
    )
    .unwrap();
    let ev = net.evaluate(&held_out).unwrap();
    assert_eq!(history.len(), 2 * epochs);
    assert!(
        ev.accuracy >= 0.90,
        "held-out accuracy {:.2}% after {epochs} epochs on 2,000 images",
        100.0 * ev.accuracy
    );
    // The training loss fell over the run.
    assert!(history[history.len() - 2].loss < 0.5 * history[0].loss);
}
