//! LeNet-5's layers at batch 1 and 64, and its whole forward pass at batch 1
//! on the calling thread (no thread spawned): 833,040 FLOPs (convolutions and
//! fully connected layers; pooling and activations are not counted) against
//! the single-thread FMA peak, timed by the thread's CPU clock. The layer
//! cases run on `KILN_BENCH_THREADS` threads (default 1).
//!
//! At the end, paired rounds time C1 and C3 at batch 1 (weights packed once,
//! bias and ReLU, as generated inference runs them) with their 2×2 max pool
//! fused (`conv2d_pool_forward_prepacked`) and unfused (the convolution,
//! then `max_pool2d_forward`), alternated 21 times on one thread; the
//! median of the per-round ratios is printed.
//!
//! Run: `cargo bench -p kiln-runtime --bench conv_lenet`.

mod common;

use common::{Clock, Recorder};
use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_backward_data, conv2d_backward_weight, conv2d_forward,
    conv2d_forward_prepacked, conv2d_forward_scratch_len, conv2d_forward_serial,
    conv2d_pack_weights, conv2d_packed_weights_len,
};
use kiln_runtime::kernels::conv_pool::{conv2d_pool_forward_prepacked, fuses_pool};
use kiln_runtime::kernels::dispatch::{Kernels, kernels};
use kiln_runtime::kernels::gemm::{Epilogue, Gemm, gemm_scratch_len, sgemm, sgemm_serial};
use kiln_runtime::kernels::pool::{Pool2d, max_pool2d_forward};

const C1: Conv2dGeometry = Conv2dGeometry::new(1, 1, 32, 32, 6, 5, 5);
const C3: Conv2dGeometry = Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5);
const C5: Conv2dGeometry = Conv2dGeometry::new(1, 16, 5, 5, 120, 5, 5);

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

/// 2×2 max pooling with stride 2 of `c` planes of `h × w` (the bench's own:
/// LeNet's subsampling layers, which the FLOP count leaves out).
fn max_pool2(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let at = |dy: usize, dx: usize| x[(ch * h + 2 * oy + dy) * w + 2 * ox + dx];
                y[(ch * oh + oy) * ow + ox] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
}

/// The LeNet-5 parameters and activation buffers for batch 1.
struct LeNet {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w3: Vec<f32>,
    b3: Vec<f32>,
    w5: Vec<f32>,
    b5: Vec<f32>,
    w6: Vec<f32>,
    b6: Vec<f32>,
    w7: Vec<f32>,
    b7: Vec<f32>,
    a1: Vec<f32>,
    p1: Vec<f32>,
    a3: Vec<f32>,
    p3: Vec<f32>,
    a5: Vec<f32>,
    a6: Vec<f32>,
    out: Vec<f32>,
    scratch: Vec<f32>,
}

impl LeNet {
    fn new(kern: &Kernels) -> Self {
        let fc6 = Gemm::new(84, 1, 120);
        let fc7 = Gemm::new(10, 1, 84);
        let scratch = [
            conv2d_forward_scratch_len(kern, &C1),
            conv2d_forward_scratch_len(kern, &C3),
            conv2d_forward_scratch_len(kern, &C5),
            gemm_scratch_len(&fc6),
            gemm_scratch_len(&fc7),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        LeNet {
            w1: fill(C1.weight_len(), 1),
            b1: fill(6, 2),
            w3: fill(C3.weight_len(), 3),
            b3: fill(16, 4),
            w5: fill(C5.weight_len(), 5),
            b5: fill(120, 6),
            w6: fill(84 * 120, 7),
            b6: fill(84, 8),
            w7: fill(10 * 84, 9),
            b7: fill(10, 10),
            a1: vec![0.0; C1.output_len()],
            p1: vec![0.0; 6 * 14 * 14],
            a3: vec![0.0; C3.output_len()],
            p3: vec![0.0; 16 * 5 * 5],
            a5: vec![0.0; 120],
            a6: vec![0.0; 84],
            out: vec![0.0; 10],
            scratch: vec![0.0; scratch],
        }
    }

    /// One forward pass of image `x` (1 × 32 × 32) on the calling thread.
    fn forward(&mut self, kern: &Kernels, x: &[f32]) {
        let relu = ConvEpilogue::Activation(Activation::Relu);
        let s = &mut self.scratch;
        conv2d_forward_serial(
            kern,
            &C1,
            x,
            &self.w1,
            &[ConvEpilogue::Bias(&self.b1), relu],
            &mut self.a1,
            s,
        );
        max_pool2(&self.a1, 6, 28, 28, &mut self.p1);
        conv2d_forward_serial(
            kern,
            &C3,
            &self.p1,
            &self.w3,
            &[ConvEpilogue::Bias(&self.b3), relu],
            &mut self.a3,
            s,
        );
        max_pool2(&self.a3, 16, 10, 10, &mut self.p3);
        conv2d_forward_serial(
            kern,
            &C5,
            &self.p3,
            &self.w5,
            &[ConvEpilogue::Bias(&self.b5), relu],
            &mut self.a5,
            s,
        );
        let act = Epilogue::Activation(Activation::Relu);
        sgemm_serial(
            &Gemm::new(84, 1, 120),
            &self.w6,
            &self.a5,
            &mut self.a6,
            &[Epilogue::BiasRow(&self.b6), act],
            s,
        );
        sgemm_serial(
            &Gemm::new(10, 1, 84),
            &self.w7,
            &self.a6,
            &mut self.out,
            &[Epilogue::BiasRow(&self.b7)],
            s,
        );
    }
}

/// LeNet-5's FLOPs: 2 per multiply-add of C1, C3, C5, F6 and the output.
const LENET_FLOPS: usize = C1.flops() + C3.flops() + C5.flops() + 2 * 120 * 84 + 2 * 84 * 10;

fn main() {
    assert_eq!(LENET_FLOPS, 833_040, "LeNet-5 FLOP count");
    let mut rec = Recorder::new("conv_lenet");
    let threads = common::bench_threads();
    let peak1 = common::quick_peak_1t();
    common::pool(threads).install(|| run(&mut rec, threads, peak1));
    common::pool(1).install(fused_pool_rounds);
    rec.finish();
    if let Some(r) = rec.records().iter().find(|r| r.name == "lenet5_forward_b1") {
        let ideal = LENET_FLOPS as f64 / (peak1 * 1e9);
        println!(
            "\nLeNet-5 forward, batch 1: {:.2} µs; its {} FLOPs at the single-thread peak take {:.2} µs: {:.2}× (target < 2×)",
            r.seconds * 1e6,
            LENET_FLOPS,
            ideal * 1e6,
            r.seconds / ideal
        );
    }
}

fn run(rec: &mut Recorder, threads: usize, peak1: f64) {
    let mut c = common::criterion(20, 1000);
    let kern = kernels();
    let mut net = LeNet::new(kern);
    let image = fill(32 * 32, 11);
    rec.bench(
        &mut c,
        "lenet5_forward_b1",
        Clock::ThreadCpu,
        LENET_FLOPS as f64,
        peak1,
        || net.forward(kern, &image),
    );
    for batch in [1usize, 64] {
        let peak = peak1 * threads as f64;
        let clock = common::clock_for(threads);
        for (name, geom) in [("c1", C1), ("c3", C3), ("c5", C5)] {
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
                &format!("lenet_{name}_b{batch}_fwd"),
                clock,
                flops,
                peak,
                || conv2d_forward(kern, &g, &x, &w, &epi, &mut y),
            );
            rec.bench(
                &mut c,
                &format!("lenet_{name}_b{batch}_bwd_data"),
                clock,
                flops,
                peak,
                || conv2d_backward_data(kern, &g, &w, &dy, &mut dx),
            );
            rec.bench(
                &mut c,
                &format!("lenet_{name}_b{batch}_bwd_weight"),
                clock,
                flops,
                peak,
                || conv2d_backward_weight(kern, &g, &x, &dy, &mut dw, false),
            );
        }
        for (name, (m, k)) in [("f6", (84usize, 120usize)), ("f7", (10, 84))] {
            // A fully connected layer: y (batch × m) = x (batch × k) · Wᵀ.
            let g = Gemm::new(batch, m, k).transpose_b();
            let x = fill(batch * k, 7);
            let w = fill(m * k, 8);
            let bias = fill(m, 9);
            let mut y = vec![0.0f32; batch * m];
            rec.bench(
                &mut c,
                &format!("lenet_{name}_b{batch}_fwd"),
                clock,
                g.flops() as f64,
                peak,
                || sgemm(&g, &x, &w, &mut y, &[Epilogue::BiasCol(&bias)]),
            );
        }
    }
}

/// C1 and C3 at batch 1 with the max pool fused and not, alternated.
fn fused_pool_rounds() {
    let kern = kernels();
    println!("\nPaired rounds (21), batch 1, weights packed once: conv + 2×2 max pool");
    for (name, g) in [("c1", C1), ("c3", C3)] {
        let x = fill(g.input_len(), 3);
        let w = fill(g.weight_len(), 4);
        let bias = fill(g.c_out, 5);
        let mut packed = vec![0.0f32; conv2d_packed_weights_len(kern, &g)];
        conv2d_pack_weights(kern, &g, &w, &mut packed);
        let pool = Pool2d {
            n: 1,
            c: g.c_out,
            h: g.out_h(),
            w: g.out_w(),
            kh: 2,
            kw: 2,
            sh: 2,
            sw: 2,
            ph: 0,
            pw: 0,
        };
        let epi = [
            ConvEpilogue::Bias(&bias),
            ConvEpilogue::Activation(Activation::Relu),
        ];
        let mut full = vec![0.0f32; g.output_len()];
        let (mut y, mut yf) = (
            vec![0.0f32; pool.output_len()],
            vec![0.0f32; pool.output_len()],
        );
        let (mut unfused, mut fused) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            unfused.push(common::warm_seconds(|| {
                conv2d_forward_prepacked(kern, &g, &x, &packed, &epi, &mut full);
                max_pool2d_forward(&full, &mut y, pool);
            }));
            fused.push(common::warm_seconds(|| {
                conv2d_pool_forward_prepacked(kern, &g, pool, &x, &packed, &epi, &mut yf)
            }));
        }
        assert_eq!(y, yf, "fused and unfused pooling differ");
        let ratios: Vec<f64> = fused.iter().zip(&unfused).map(|(f, u)| f / u).collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        println!(
            "  {name}: fused {:.2} µs, unfused {:.2} µs (medians); fused / unfused = {:.2} (median of rounds; in registers: {})",
            median(fused) * 1e6,
            median(unfused) * 1e6,
            median(ratios),
            fuses_pool(kern, &g, pool, &epi)
        );
    }
}
