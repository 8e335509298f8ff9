//! The convolution targets of the kernel issue, measured so that a drifting
//! shared machine cannot decide them: for each of ResNet-18's 3×3 stride-1
//! layers (56, 28, 14, 7) at batch 1 and 32, forward, backward-data and
//! backward-weight, paired rounds of SGEMM 1024³ and the case back to back
//! on one thread, both timed by its CPU clock; the figure is the median over
//! the rounds of the case's rate over the SGEMM rate of the same round
//! (each timed warm: one call untimed, then at least 20 ms).
//! Forward at batch 32 is `conv2d_forward` (what training runs); at batch 1
//! both `conv2d_forward` and `conv2d_forward_prepacked` (weights packed once,
//! as an inference build runs). Targets: forward ≥ 75 % at batch 32,
//! backward ≥ 65 %, everything ≥ 50 % at batch 1.
//!
//! Run: `cargo bench -p kiln-runtime --bench conv_targets` (about half a
//! minute; `KILN_ROUNDS` sets the rounds, 7 by default). The JSON lines
//! (the median seconds, and the median SGEMM rate as `peak_gflops`) land in
//! `target/kiln-bench/conv_targets.jsonl`.

mod common;

use common::{Clock, Record, Recorder};
use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_backward_data, conv2d_backward_weight, conv2d_forward,
    conv2d_forward_prepacked, conv2d_pack_weights, conv2d_packed_weights_len,
};
use kiln_runtime::kernels::dispatch::kernels;
use kiln_runtime::kernels::gemm::{Gemm, sgemm};
use std::hint::black_box;

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

/// A named pass of one layer, ready to run.
type Pass<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The target of a case: 75 % for the batch-32 forward, 65 % for the
/// batch-32 backward passes, 50 % at batch 1.
fn target(batch: usize, pass: &str) -> f64 {
    match (batch, pass) {
        (1, _) => 0.50,
        (_, "fwd") => 0.75,
        _ => 0.65,
    }
}

fn main() {
    let rounds: usize = std::env::var("KILN_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let mut rec = Recorder::new("conv_targets");
    // One thread: every kernel runs on the measuring thread.
    let pool = common::pool(1);
    let kern = kernels();
    let n = 1024;
    let gm = Gemm::new(n, n, n);
    let (a, b) = (fill(n * n, 1), fill(n * n, 2));
    let mut c = vec![0.0f32; n * n];
    let mut rows = Vec::new();
    pool.install(|| {
        for batch in [1usize, 32] {
            for (hw, ch) in [(56usize, 64usize), (28, 128), (14, 256), (7, 512)] {
                let g = Conv2dGeometry::new(batch, ch, hw, hw, ch, 3, 3).with_pad(1);
                let x = fill(g.input_len(), 3);
                let w = fill(g.weight_len(), 4);
                let bias = fill(g.c_out, 5);
                let dy = fill(g.output_len(), 6);
                let mut y = vec![0.0f32; g.output_len()];
                let mut dx = vec![0.0f32; g.input_len()];
                let mut dw = vec![0.0f32; g.weight_len()];
                let mut packed = vec![0.0f32; conv2d_packed_weights_len(kern, &g)];
                conv2d_pack_weights(kern, &g, &w, &mut packed);
                let epi = [
                    ConvEpilogue::Bias(&bias),
                    ConvEpilogue::Activation(Activation::Relu),
                ];
                let mut yp = vec![0.0f32; g.output_len()];
                let (x, w, dy, packed) = (&x, &w, &dy, &packed);
                let mut passes: Vec<Pass<'_>> = vec![(
                    "fwd",
                    Box::new(|| conv2d_forward(kern, &g, black_box(x), w, &epi, &mut y)),
                )];
                if batch == 1 {
                    passes.push((
                        "fwd_prepacked",
                        Box::new(|| {
                            conv2d_forward_prepacked(kern, &g, black_box(x), packed, &epi, &mut yp)
                        }),
                    ));
                }
                passes.push((
                    "bwd_data",
                    Box::new(|| conv2d_backward_data(kern, &g, w, black_box(dy), &mut dx)),
                ));
                passes.push((
                    "bwd_weight",
                    Box::new(|| conv2d_backward_weight(kern, &g, black_box(x), dy, &mut dw, false)),
                ));
                for (pass, f) in &mut passes {
                    let (mut ratios, mut times, mut base) = (vec![], vec![], vec![]);
                    for _ in 0..rounds {
                        let ts = common::warm_seconds(|| sgemm(&gm, &a, &b, &mut c, &[]));
                        let t = common::warm_seconds(&mut *f);
                        let sgemm_rate = gm.flops() as f64 / ts;
                        ratios.push(g.flops() as f64 / t / sgemm_rate);
                        times.push(t);
                        base.push(sgemm_rate / 1e9);
                    }
                    let name = format!("conv3x3_{ch}_{hw}_b{batch}_{pass}");
                    let (ratio, time, sgemm_gflops) = (median(ratios), median(times), median(base));
                    rec.push(Record {
                        name: name.clone(),
                        flops: g.flops() as f64,
                        seconds: time,
                        peak_gflops: sgemm_gflops,
                        clock: Clock::ThreadCpu,
                    });
                    rows.push((name, ratio, target(batch, pass)));
                }
            }
        }
    });
    rec.finish();
    println!("\nPaired rounds ({rounds}): median rate over the SGEMM 1024³ rate of the same round");
    println!("{:<36} {:>9} {:>8}", "case", "% SGEMM", "target");
    for (name, ratio, target) in rows {
        let mark = if ratio >= target { "" } else { "  short" };
        println!(
            "{name:<36} {:>8.1}% {:>7.0}%{mark}",
            100.0 * ratio,
            100.0 * target
        );
    }
}
