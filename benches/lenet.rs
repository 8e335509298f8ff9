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
    // Paired rounds at batch 1: the register-only FMA loop, then 2,000
    // forward passes, 21 times, each timed by the thread's CPU clock; the
    // median of the per-round ratios (forward time over the time its FLOPs
    // take at that round's peak) is the figure the target (< 2) is held
    // against, since both halves of a round see the same state of the
    // shared machine.
    if !common::has(common::widest()) {
        rec.finish();
        return c.final_summary();
    }
    let mut net = lenet(1);
    let x = input(1);
    let mut ratios = Vec::new();
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = common::thread_cpu_time();
        let flops = common::fma_loop(common::widest(), 2_000_000);
        let fma = flops / (common::thread_cpu_time() - t).as_secs_f64();
        let t = common::thread_cpu_time();
        for _ in 0..2000 {
            black_box(
                net.forward(black_box(&x))
                    .expect("input has the batch's length"),
            );
        }
        let per = (common::thread_cpu_time() - t).as_secs_f64() / 2000.0;
        ratios.push(per / (FORWARD_FLOPS / fma));
        times.push(per);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (ratio, time) = (median(ratios.clone()), median(times));
    let best = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    rec.push(common::Record {
        name: "lenet_infer_b1_paired".to_string(),
        flops: FORWARD_FLOPS,
        seconds: time,
        peak_gflops: FORWARD_FLOPS / (time / ratio) / 1e9,
        clock: Clock::ThreadCpu,
    });
    rec.finish();
    println!(
        "\nPaired rounds (21): LeNet-5 forward at batch 1 = {ratio:.2}× (best {best:.2}×) the time \
         its 833,040 FLOPs take at the FMA peak of the same round (median {:.2} µs)",
        time * 1e6
    );
    c.final_summary();
}
