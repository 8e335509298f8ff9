//! Each step of the generated LeNet-5 forward at batch 1, called exactly as
//! the generated code calls it (`conv2d_forward` with the bias epilogue,
//! ReLU in place, `max_pool2d_forward`, `sgemm` for the linear layers), on
//! the calling thread, timed by the thread's CPU clock against the
//! single-thread FMA peak: where the batch-1 forward's time goes. Pooling
//! and ReLU have no FLOPs counted (their rate column reads 0).
//!
//! Run: `cargo bench -p kiln-runtime --bench lenet_steps` (about 20 s);
//! JSON lines in `target/kiln-bench/lenet_steps.jsonl`.

mod common;

use common::{Clock, Recorder};
use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::activation::activation_forward_in_place;
use kiln_runtime::kernels::conv::{Conv2dGeometry, ConvEpilogue, conv2d_forward};
use kiln_runtime::kernels::conv_direct::{DirectPost, DirectShape, tail_len};
use kiln_runtime::kernels::dispatch::kernels;
use kiln_runtime::kernels::gemm::{Epilogue, Gemm, sgemm};
use kiln_runtime::kernels::pool::{Pool2d, max_pool2d_forward};

const C1: Conv2dGeometry = Conv2dGeometry::new(1, 1, 32, 32, 6, 5, 5);
const C3: Conv2dGeometry = Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5);
const C5: Conv2dGeometry = Conv2dGeometry::new(1, 16, 5, 5, 120, 5, 5);

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn main() {
    let mut c = common::criterion(10, 500);
    let mut rec = Recorder::new("lenet_steps");
    let peak = common::quick_peak_1t();
    let kern = kernels();
    // One thread in rayon's global pool, as the generated code runs at
    // batch 1: every kernel on the measuring thread.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is built once, first");
    {
        for (name, g) in [("c1", C1), ("c3", C3), ("c5", C5)] {
            let x = fill(g.input_len(), 3);
            let w = fill(g.weight_len(), 4);
            let bias = fill(g.c_out, 5);
            let mut y = vec![0.0f32; g.output_len()];
            rec.bench(
                &mut c,
                &format!("step_{name}_conv_bias"),
                Clock::ThreadCpu,
                g.flops() as f64,
                peak,
                || conv2d_forward(kern, &g, &x, &w, &[ConvEpilogue::Bias(&bias)], &mut y),
            );
            rec.bench(
                &mut c,
                &format!("step_{name}_relu"),
                Clock::ThreadCpu,
                0.0,
                peak,
                || activation_forward_in_place(Activation::Relu, &mut y),
            );
        }
        // The direct kernel alone on C1 and C3 (no input copy, no checks):
        // what the wrapper around it costs.
        for (name, g) in [("c1", C1), ("c3", C3)] {
            let Some(direct) = kern.conv_direct else {
                break;
            };
            let s = DirectShape {
                c_in: g.c_in,
                c_out: g.c_out,
                kh: g.kh,
                kw: g.kw,
                dilation: [1, 1],
                hp: g.h,
                wp: g.w,
                oh: g.out_h(),
                ow: g.out_w(),
            };
            let mut x = fill(g.input_len(), 3);
            x.resize(g.input_len() + tail_len(&s), 0.0);
            let w = fill(g.weight_len(), 4);
            let bias = fill(g.c_out, 5);
            let mut y = vec![0.0f32; g.output_len()];
            let post = DirectPost {
                bias: Some(&bias),
                relu: true,
            };
            rec.bench(
                &mut c,
                &format!("step_{name}_direct_kernel_only"),
                Clock::ThreadCpu,
                g.flops() as f64,
                peak,
                // SAFETY: the buffers have the lengths the kernel's contract
                // asks for, and the table checked the CPU's features.
                || unsafe { direct(&s, &x, &w, post, &mut y) },
            );
        }
        for (name, p) in [
            ("s2", Pool2d::square(1, 6, 28, 28, 2, 2, 0)),
            ("s4", Pool2d::square(1, 16, 10, 10, 2, 2, 0)),
        ] {
            let x = fill(p.input_len(), 6);
            let mut y = vec![0.0f32; p.output_len()];
            rec.bench(
                &mut c,
                &format!("step_{name}_max_pool"),
                Clock::ThreadCpu,
                0.0,
                peak,
                || max_pool2d_forward(&x, &mut y, p),
            );
        }
        for (name, (m, k)) in [("f6", (84usize, 120usize)), ("f7", (10, 84))] {
            let g = Gemm::new(1, m, k).transpose_b();
            let x = fill(k, 7);
            let w = fill(m * k, 8);
            let bias = fill(m, 9);
            let mut y = vec![0.0f32; m];
            rec.bench(
                &mut c,
                &format!("step_{name}_linear_bias"),
                Clock::ThreadCpu,
                g.flops() as f64,
                peak,
                || sgemm(&g, &x, &w, &mut y, &[Epilogue::BiasCol(&bias)]),
            );
        }
    }
    rec.finish();
    c.final_summary();
}
