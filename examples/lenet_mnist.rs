//! The main job: trains LeNet-5 (compiled from `models/lenet5.yaml` by
//! `kiln::network!`) on the real MNIST, committed in `data/mnist/`.
//!
//! Prints per-epoch loss, train and test accuracy and images/s, writes the
//! metrics CSV, loss and accuracy plots (PNG and SVG) and a safetensors
//! checkpoint under `runs/lenet_mnist/`, and ends with one line
//! `test accuracy: NN.NN%`.
//!
//! `cargo run --release --example lenet_mnist -- [EPOCHS] [TRAIN_SUBSET]`

use std::path::PathBuf;
use std::sync::Arc;

use kiln::runtime::data::{self, Normalize, Split, load_mnist};
use kiln::runtime::init::{Dist, Init, InitPolicy};
use kiln::runtime::optim::Optim;
use kiln::runtime::schedule::{Decay, Schedule};
use kiln::runtime::train::{FitConfig, fit};

kiln::network!("models/lenet5.yaml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(6);
    let subset: Option<usize> = args.next().map(|a| a.parse()).transpose()?;
    let dir = data::data_dir().join("mnist");
    // LeNet-5 takes 32×32: pad MNIST's 28×28 by 2, then normalize.
    let prepare = |split| -> Result<_, Box<dyn std::error::Error>> {
        let mut d = load_mnist(&dir, split)?.padded(2);
        d.normalize(&Normalize::mnist())?;
        Ok(d)
    };
    let mut train = prepare(Split::Train)?;
    if let Some(n) = subset {
        train = train.random_subset(n, 1);
    }
    let test = prepare(Split::Test)?;
    println!(
        "LeNet-5: {} parameters; {} training and {} test images of {:?}",
        LeNet5::PARAM_COUNT,
        train.len(),
        test.len(),
        train.shape
    );

    let batch = 64;
    let mut net = LeNet5::new(&InitPolicy::new(Init::He(Dist::Uniform)), 42, batch)?;
    let steps = epochs as u64 * train.len().div_ceil(batch) as u64;
    let mut schedule = Schedule::new(0.05, Decay::Cosine { total: steps }).with_warmup(200);
    let mut opt = Optim::nesterov(0.9);
    let out = PathBuf::from("runs/lenet_mnist");
    std::fs::create_dir_all(&out)?;
    let cfg = FitConfig {
        seed: 7,
        csv: Some(out.join("metrics.csv")),
        plots: vec![out.join("curves.png"), out.join("curves.svg")],
        checkpoint: Some(out.join("lenet5.safetensors")),
        ..FitConfig::new(epochs)
    };
    let start = std::time::Instant::now();
    fit(
        &mut net,
        Arc::new(train),
        &test,
        &mut opt,
        &mut schedule,
        &cfg,
    )?;
    let ev = net.evaluate(&test)?;
    println!(
        "trained {epochs} epochs in {:.1} s; wrote {}",
        start.elapsed().as_secs_f64(),
        out.display()
    );
    println!("test accuracy: {:.2}%", 100.0 * ev.accuracy);
    Ok(())
}
