//! Generated LeNet-5 (`kiln::network!("models/lenet5.yaml")`) end to end:
//! inference at batch 1 and 256, timed by the thread's CPU clock on a
//! one-thread global rayon pool (so every kernel runs on the measuring
//! thread), against
//! the single-thread FMA peak measured at the start of the run. LeNet-5's
//! forward pass is 833,040 FLOPs per example (convolutions and fully
//! connected layers; pooling and activations are not counted).
//!
//! The training step at batch 64 (SGD with momentum 0.9, cross-entropy) is
//! counted as 3 × the forward FLOPs (backward-data and backward-weight each
//! cost about one forward).
//!
//! Run: `cargo bench --bench lenet` (about half a minute); the JSON lines
//! land in `target/kiln-bench/lenet.jsonl`.

#[path = "../runtime/benches/common/mod.rs"]
mod common;

use common::{Clock, Recorder};
use std::hint::black_box;

kiln::network!("models/lenet5.yaml");

/// FLOPs of one LeNet-5 forward pass for one example.
const FORWARD_FLOPS: f64 = 833_040.0;

/// A deterministic input batch of `n` examples in [0, 1).
fn input(n: usize) -> Vec<f32> {
    (0..n * LeNet5::INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect()
}

/// A LeNet-5 for batches of `batch`, He-initialised from a fixed seed.
fn lenet(batch: usize) -> LeNet5 {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    LeNet5::new(&init, 7, batch).expect("LeNet-5 with a valid init policy")
}

fn main() {
    let mut c = common::criterion(20, 1500);
    let mut rec = Recorder::new("lenet");
    // One thread in rayon's global pool: the kernels then run serially on
    // the calling thread, whose CPU clock times them.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is built once, first");
    let peak = common::quick_peak_1t();
    for batch in [1usize, 256] {
        let mut net = lenet(batch);
        let x = input(batch);
        let name = format!("lenet_infer_b{batch}");
        rec.bench(
            &mut c,
            &name,
            Clock::ThreadCpu,
            FORWARD_FLOPS * batch as f64,
            peak,
            || {
                let y = net
                    .forward(black_box(&x))
                    .expect("input has the batch's length");
                black_box(y);
            },
        );
    }
    // The training step at batch 64: SGD with momentum 0.9 on cross-entropy;
    // backward is counted as twice the forward's FLOPs.
    let batch = 64;
    let mut net = lenet(batch);
    let x = input(batch);
    let y: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let mut opt = kiln::runtime::optim::Optim::momentum(0.9);
    rec.bench(
        &mut c,
        "lenet_train_step_b64",
        Clock::ThreadCpu,
        3.0 * FORWARD_FLOPS * batch as f64,
        peak,
        || {
            let loss = net
                .train_step(black_box(&x), &y, &mut opt, 0.01)
                .expect("batch and labels have the batch's length");
            black_box(loss);
        },
    );
    rec.finish();
    c.final_summary();
}
