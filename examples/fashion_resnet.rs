//! Trains a CIFAR-stem ResNet (compiled from `models/resnet20.yaml`, or
//! `models/resnet18_cifar.yaml` with `--model resnet18_cifar`) on the real
//! Fashion-MNIST, committed in `data/fashion-mnist/`.
//!
//! The 28×28 gray images are padded by 2 to 32×32, normalized with the
//! training set's own mean and standard deviation, and replicated to the
//! three input channels the zoo's CIFAR models take (every channel the same
//! image). SGD with Nesterov momentum 0.9 and weight decay 5e-4, learning
//! rate `--lr` with cosine decay and a short warm-up, batch statistics in
//! batch norm. Prints per-epoch loss, train and test accuracy and time,
//! writes the metrics CSV, the curves (PNG) and a safetensors checkpoint
//! under `runs/fashion_resnet/`, and ends with `test accuracy: NN.NN%`.
//!
//! `cargo run --release --example fashion_resnet -- [--model resnet20|resnet18_cifar]
//! [--epochs N] [--train N] [--test N] [--batch N] [--threads N] [--lr X]`
//! (defaults: resnet20, 1 epoch, all 60,000 training and 10,000 test
//! images, batch 64, every core, lr 0.05).

use std::path::PathBuf;
use std::sync::Arc;

use kiln::runtime::data::{self, Dataset, Normalize, Split, load_mnist};
use kiln::runtime::init::{Dist, Init, InitPolicy};
use kiln::runtime::optim::Optim;
use kiln::runtime::params::{Group, Role, Select};
use kiln::runtime::schedule::{Decay, Schedule};
use kiln::runtime::train::{FitConfig, fit};

kiln::network!("models/resnet20.yaml");
kiln::network!("models/resnet18_cifar.yaml");

/// The command line.
#[derive(Debug)]
struct Args {
    model: String,
    epochs: usize,
    train: Option<usize>,
    test: Option<usize>,
    batch: usize,
    threads: Option<usize>,
    lr: f64,
}

/// Parses `--flag value` pairs; every value is checked and named on error.
fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: "resnet20".into(),
        epochs: 1,
        train: None,
        test: None,
        batch: 64,
        threads: None,
        lr: 0.05,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("`{flag}` needs a value"))?;
        let count = |v: &str| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a non-negative integer"))
        };
        match flag.as_str() {
            "--model" => a.model = value,
            "--epochs" => a.epochs = count(&value)?,
            "--train" => a.train = Some(count(&value)?),
            "--test" => a.test = Some(count(&value)?),
            "--batch" => a.batch = count(&value)?,
            "--threads" => a.threads = Some(count(&value)?),
            "--lr" => {
                a.lr = value
                    .parse()
                    .map_err(|_| format!("--lr: `{value}` is not a number"))?
            }
            other => {
                return Err(format!(
                    "unknown flag `{other}` (expected --model, --epochs, --train, --test, --batch, --threads, --lr)"
                ));
            }
        }
    }
    if a.batch == 0 || a.epochs == 0 {
        return Err("--batch and --epochs must be at least 1".into());
    }
    Ok(a)
}

/// The mean and standard deviation of every pixel of `d` (one channel).
fn pixel_stats(d: &Dataset) -> Normalize {
    let n = d.images.len().max(1) as f64;
    let mean = d.images.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = d
        .images
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    Normalize {
        mean: vec![mean as f32],
        std: vec![var.sqrt().max(1e-6) as f32],
    }
}

/// `d` (one channel) with its channel repeated three times.
fn three_channels(d: &Dataset) -> Result<Dataset, Box<dyn std::error::Error>> {
    let [c, h, w] = d.shape;
    if c != 1 {
        return Err(format!("expected one channel, found {c}").into());
    }
    let plane = h * w;
    let mut images = Vec::with_capacity(d.images.len() * 3);
    for img in d.images.chunks(plane) {
        for _ in 0..3 {
            images.extend_from_slice(img);
        }
    }
    Ok(Dataset::new(
        images,
        d.labels.clone(),
        [3, h, w],
        d.classes,
    )?)
}

/// Builds the network type `$net` (zoo name `$name`), trains it on
/// `$train` as `$args` say, evaluates it on `$test`, saves a checkpoint and
/// reports.
macro_rules! run {
    ($net:ty, $name:expr, $args:expr, $train:expr, $test:expr) => {{
        let (args, train, test): (&Args, Dataset, &Dataset) = (&$args, $train, &$test);
        let init = InitPolicy::new(Init::He(Dist::Normal));
        let mut net = <$net>::new(&init, 42, args.batch)?;
        // Weight decay on convolution and linear weights, not on biases or
        // batch norm's γ.
        net.params_mut().layout.assign_groups(
            Group::new("decay").weight_decay(5e-4),
            vec![
                (Select::Role(Role::Bias), Group::new("no_decay_bias")),
                (Select::Role(Role::NormScale), Group::new("no_decay_norm")),
            ],
        );
        println!(
            "{}: {} parameters; {} training and {} test images of {:?}, batch {}, {} threads",
            $name,
            <$net>::PARAM_COUNT,
            train.len(),
            test.len(),
            train.shape,
            args.batch,
            rayon::current_num_threads()
        );
        let steps = args.epochs as u64 * train.len().div_ceil(args.batch) as u64;
        let mut schedule = Schedule::new(args.lr, Decay::Cosine { total: steps })
            .with_warmup((steps / 20).clamp(1, 200));
        let mut opt = Optim::nesterov(0.9);
        let out = PathBuf::from("runs/fashion_resnet");
        std::fs::create_dir_all(&out)?;
        let checkpoint = out.join(format!("{}.safetensors", $name));
        let cfg = FitConfig {
            seed: 7,
            csv: Some(out.join("metrics.csv")),
            plots: vec![out.join("curves.png")],
            checkpoint: Some(checkpoint.clone()),
            ..FitConfig::new(args.epochs)
        };
        let start = std::time::Instant::now();
        let records = fit(
            &mut net,
            Arc::new(train),
            test,
            &mut opt,
            &mut schedule,
            &cfg,
        )?;
        let total = start.elapsed().as_secs_f64();
        for r in &records {
            println!(
                "epoch {} {}: loss {:.4}, accuracy {:.2}%, {:.1} s ({:.0} images/s)",
                r.epoch,
                r.split,
                r.loss,
                100.0 * r.accuracy,
                r.seconds,
                r.images_per_s
            );
        }
        let last = records
            .iter()
            .rev()
            .find(|r| r.split == "test")
            .ok_or("fit returned no test record")?;
        println!(
            "trained {} epochs in {total:.1} s ({:.1} s per epoch, evaluation included); wrote {}",
            args.epochs,
            total / args.epochs as f64,
            checkpoint.display()
        );
        println!("test accuracy: {:.2}%", 100.0 * last.accuracy);
    }};
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("fashion_resnet: {e}"))?;
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()?;
    }
    let dir = data::locate("fashion-mnist").ok_or(
        "fashion_resnet: no fashion-mnist folder in $KILN_DATA or data/ (scripts/fetch-datasets.sh fetches it)",
    )?;
    let mut train_set = load_mnist(&dir, Split::Train)?;
    if let Some(n) = args.train {
        train_set = train_set.random_subset(n.min(train_set.len()), 1);
    }
    let mut test_set = load_mnist(&dir, Split::Test)?;
    if let Some(n) = args.test {
        test_set = test_set.random_subset(n.min(test_set.len()), 2);
    }
    let norm = pixel_stats(&train_set);
    println!(
        "Fashion-MNIST from {}: training pixels mean {:.4}, std {:.4}",
        dir.display(),
        norm.mean[0],
        norm.std[0]
    );
    let prepare = |d: &Dataset| -> Result<Dataset, Box<dyn std::error::Error>> {
        let mut p = d.padded(2);
        p.normalize(&norm)?;
        three_channels(&p)
    };
    let (train_set, test_set) = (prepare(&train_set)?, prepare(&test_set)?);
    match args.model.as_str() {
        "resnet20" => run!(ResNet20, "resnet20", args, train_set, test_set),
        "resnet18_cifar" => run!(ResNet18Cifar, "resnet18_cifar", args, train_set, test_set),
        other => {
            return Err(format!(
                "fashion_resnet: unknown model `{other}` (expected resnet20 or resnet18_cifar)"
            )
            .into());
        }
    }
    Ok(())
}
