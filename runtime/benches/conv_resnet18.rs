//! ResNet-18's convolutions at 224×224: the 7×7/2 stem, the stride-1 3×3
//! layers of each stage (56, 28, 14, 7), and the 1×1/2 projections; batch 1
//! and 32; forward, backward-data and backward-weight. Rates are compared
//! with the SGEMM 1024³ rate measured in the same run on the same threads:
//! one thread by default, timed by its CPU clock (`KILN_BENCH_THREADS=2`
//! for two, timed by the wall clock).
//!
//! `_fwd` and `_fwd_prepacked` are what `conv2d_forward` and
//! `conv2d_forward_prepacked` do (Winograd where `uses_winograd`); those
//! layers also run by the GEMM lowering (`_fwd_gemm`) and by Winograd
//! F(2,3) and F(4,3) (`_fwd_wino_f2`, `_fwd_wino_f4`, weights transformed
//! once outside the timing). Every GFLOP/s counts the direct convolution's
//! FLOPs, so the rows compare as speed. At batch 1 the last two cases run all
//! of ResNet-18's 3×3 stride-1 layers (4 at 56, 3 at 28, 14 and 7) in a row,
//! by the GEMM lowering and as an inference build would (weights packed
//! once, Winograd where chosen).
//!
//! Run: `cargo bench -p kiln-runtime --bench conv_resnet18` (a name filter
//! after `--` picks cases, e.g. `-- b32`).

mod common;

use common::{Clock, Recorder};
use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_backward_data, conv2d_backward_weight, conv2d_forward,
    conv2d_forward_gemm, conv2d_forward_prepacked, conv2d_pack_weights, conv2d_packed_weights_len,
    uses_winograd,
};
use kiln_runtime::kernels::dispatch::kernels;
use kiln_runtime::kernels::gemm::{Gemm, sgemm};
use kiln_runtime::kernels::winograd::{
    WinogradTile, conv2d_forward_winograd_prepacked_for, winograd_applies,
    winograd_pack_weights_for, winograd_packed_len_for,
};

fn shapes() -> Vec<(&'static str, Conv2dGeometry)> {
    let c3 = |c: usize, hw: usize| Conv2dGeometry::new(1, c, hw, hw, c, 3, 3).with_pad(1);
    let proj = |ci: usize, co: usize, hw: usize| {
        Conv2dGeometry::new(1, ci, hw, hw, co, 1, 1).with_stride(2)
    };
    vec![
        (
            "stem7x7s2_224",
            Conv2dGeometry::new(1, 3, 224, 224, 64, 7, 7)
                .with_stride(2)
                .with_pad(3),
        ),
        ("conv3x3_64_56", c3(64, 56)),
        ("conv3x3_128_28", c3(128, 28)),
        ("conv3x3_256_14", c3(256, 14)),
        ("conv3x3_512_7", c3(512, 7)),
        ("proj1x1s2_64_128_56", proj(64, 128, 56)),
        ("proj1x1s2_128_256_28", proj(128, 256, 28)),
        ("proj1x1s2_256_512_14", proj(256, 512, 14)),
    ]
}

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn main() {
    let mut rec = Recorder::new("conv_resnet18");
    let threads = common::bench_threads();
    let clock = common::clock_for(threads);
    let peak = common::quick_peak_1t() * threads as f64;
    // Everything runs inside a pool of the chosen size.
    common::pool(threads).install(|| run(&mut rec, threads, clock, peak));
    rec.finish();
    // The SGEMM rate is measured at the start and at the end of the run; the
    // better of the two is the baseline (the shared machine's speed drifts).
    let base = rec
        .records()
        .iter()
        .filter(|r| r.name.starts_with("sgemm_1024"))
        .map(|r| r.gflops())
        .fold(f64::NAN, f64::max);
    if base.is_finite() {
        println!("\n{:<36} {:>9} {:>10}", "case", "GFLOP/s", "% of SGEMM");
        for r in rec.records() {
            println!(
                "{:<36} {:>9.2} {:>9.1}%",
                r.name,
                r.gflops(),
                100.0 * r.gflops() / base
            );
        }
    }
}

fn run(rec: &mut Recorder, threads: usize, clock: Clock, peak: f64) {
    let mut c = common::criterion(10, 1000);
    let kern = kernels();
    // The SGEMM rate these convolutions are held against.
    let n = 1024;
    let g = Gemm::new(n, n, n);
    let (a, b) = (fill(n * n, 1), fill(n * n, 2));
    let mut out = vec![0.0f32; n * n];
    let name = format!("sgemm_1024_t{threads}");
    rec.bench(&mut c, &name, clock, g.flops() as f64, peak, || {
        sgemm(&g, &a, &b, &mut out, &[])
    });
    let filter: Option<String> = std::env::var("KILN_BENCH_BATCH").ok();
    for batch in [1usize, 32] {
        if filter.as_deref().is_some_and(|f| f != batch.to_string()) {
            continue;
        }
        for (name, geom) in shapes() {
            let g = geom.with_batch(batch);
            let x = fill(g.input_len(), 3);
            let w = fill(g.weight_len(), 4);
            let bias = fill(g.c_out, 5);
            let dy = fill(g.output_len(), 6);
            let mut y = vec![0.0f32; g.output_len()];
            let mut dx = vec![0.0f32; g.input_len()];
            let mut dw = vec![0.0f32; g.weight_len()];
            let flops = g.flops() as f64;
            let epi = [
                ConvEpilogue::Bias(&bias),
                ConvEpilogue::Activation(Activation::Relu),
            ];
            rec.bench(
                &mut c,
                &format!("{name}_b{batch}_fwd"),
                clock,
                flops,
                peak,
                || conv2d_forward(kern, &g, &x, &w, &epi, &mut y),
            );
            if batch == 1 {
                // Inference with the weights packed once, outside the timing.
                let mut packed = vec![0.0f32; conv2d_packed_weights_len(kern, &g)];
                conv2d_pack_weights(kern, &g, &w, &mut packed);
                rec.bench(
                    &mut c,
                    &format!("{name}_b1_fwd_prepacked"),
                    clock,
                    flops,
                    peak,
                    || conv2d_forward_prepacked(kern, &g, &x, &packed, &epi, &mut y),
                );
            }
            if uses_winograd(kern, &g) {
                rec.bench(
                    &mut c,
                    &format!("{name}_b{batch}_fwd_gemm"),
                    clock,
                    flops,
                    peak,
                    || conv2d_forward_gemm(kern, &g, &x, &w, &epi, &mut y),
                );
            }
            if winograd_applies(&g) {
                for (tile, label) in [(WinogradTile::F2, "f2"), (WinogradTile::F4, "f4")] {
                    let mut packed = vec![0.0f32; winograd_packed_len_for(kern, tile, &g)];
                    winograd_pack_weights_for(kern, tile, &g, &w, &mut packed);
                    rec.bench(
                        &mut c,
                        &format!("{name}_b{batch}_fwd_wino_{label}"),
                        clock,
                        flops,
                        peak,
                        || {
                            conv2d_forward_winograd_prepacked_for(
                                kern, tile, &g, &x, &packed, &epi, &mut y,
                            )
                        },
                    );
                }
            }
            rec.bench(
                &mut c,
                &format!("{name}_b{batch}_bwd_data"),
                clock,
                flops,
                peak,
                || conv2d_backward_data(kern, &g, &w, &dy, &mut dx),
            );
            rec.bench(
                &mut c,
                &format!("{name}_b{batch}_bwd_weight"),
                clock,
                flops,
                peak,
                || conv2d_backward_weight(kern, &g, &x, &dy, &mut dw, false),
            );
        }
    }
    if filter.as_deref() != Some("32") {
        resnet18_3x3_sum(rec, &mut c, clock, peak);
    }
    let name = format!("sgemm_1024_t{threads}_end");
    rec.bench(&mut c, &name, clock, g.flops() as f64, peak, || {
        sgemm(&g, &a, &b, &mut out, &[])
    });
}

/// All of ResNet-18's 3×3 stride-1 convolutions at batch 1, in a row: by the
/// GEMM lowering, and with weights packed once (Winograd where chosen).
fn resnet18_3x3_sum(rec: &mut Recorder, c: &mut criterion::Criterion, clock: Clock, peak: f64) {
    let kern = kernels();
    let layers: Vec<(Conv2dGeometry, usize)> =
        [(64, 56, 4), (128, 28, 3), (256, 14, 3), (512, 7, 3)]
            .into_iter()
            .map(|(ch, hw, count)| {
                (
                    Conv2dGeometry::new(1, ch, hw, hw, ch, 3, 3).with_pad(1),
                    count,
                )
            })
            .collect();
    let flops: f64 = layers.iter().map(|(g, k)| (g.flops() * k) as f64).sum();
    let mut wino_flops = 0.0;
    for (g, k) in &layers {
        let mults = if uses_winograd(kern, g) {
            let tile = kiln_runtime::kernels::winograd::winograd_tile(g);
            let tiles = g.out_h().div_ceil(tile.m()) * g.out_w().div_ceil(tile.m());
            2 * tile.points() * tiles * g.c_in * g.c_out
        } else {
            g.flops()
        };
        wino_flops += (mults * k) as f64;
    }
    println!(
        "ResNet-18 3×3 stride-1 layers, batch 1: {:.3} GFLOP direct, {:.3} GFLOP in the GEMMs as chosen",
        flops / 1e9,
        wino_flops / 1e9
    );
    let data: Vec<_> = layers
        .iter()
        .map(|(g, _)| {
            let w = fill(g.weight_len(), 4);
            let mut packed = vec![0.0f32; conv2d_packed_weights_len(kern, g)];
            conv2d_pack_weights(kern, g, &w, &mut packed);
            (
                fill(g.input_len(), 3),
                w,
                packed,
                vec![0.0f32; g.output_len()],
            )
        })
        .collect();
    let mut data = data;
    rec.bench(c, "resnet18_3x3s1_b1_fwd_gemm", clock, flops, peak, || {
        for ((g, k), (x, w, _, y)) in layers.iter().zip(data.iter_mut()) {
            for _ in 0..*k {
                conv2d_forward_gemm(kern, g, x, w, &[], y);
            }
        }
    });
    rec.bench(
        c,
        "resnet18_3x3s1_b1_fwd_prepacked",
        clock,
        flops,
        peak,
        || {
            for ((g, k), (x, _, packed, y)) in layers.iter().zip(data.iter_mut()) {
                for _ in 0..*k {
                    conv2d_forward_prepacked(kern, g, x, packed, &[], y);
                }
            }
        },
    );
}
