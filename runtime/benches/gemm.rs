//! SGEMM at 64³, 256³ and 1024³ on one and two threads: kiln's kernel
//! against the `gemm` crate, both against the measured FMA peak (one thread
//! timed by its CPU clock, two by the wall clock).
//!
//! Run: `cargo bench -p kiln-runtime --bench gemm`.

mod common;

use common::Recorder;
use kiln_runtime::kernels::gemm::{Gemm, sgemm};

/// `c = a·b` with the `gemm` crate (row-major, dense).
fn crate_gemm(n: usize, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let n_i = n as isize;
    // SAFETY: all three matrices are dense n × n row-major buffers of n² floats.
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n_i,
            false,
            a.as_ptr(),
            1,
            n_i,
            b.as_ptr(),
            1,
            n_i,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn main() {
    let mut rec = Recorder::new("gemm");
    let peak1 = common::quick_peak_1t();
    let all = rayon::current_num_threads();
    for threads in [1, all] {
        let pool = common::pool(threads);
        let peak = peak1 * threads as f64;
        let clock = common::clock_for(threads);
        pool.install(|| {
            let mut c = common::criterion(10, 1000);
            for n in [64usize, 256, 1024] {
                let g = Gemm::new(n, n, n);
                let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.01).collect();
                let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.01).collect();
                let mut out = vec![0.0f32; n * n];
                let flops = g.flops() as f64;
                rec.bench(
                    &mut c,
                    &format!("kiln_sgemm_{n}_t{threads}"),
                    clock,
                    flops,
                    peak,
                    || sgemm(&g, &a, &b, &mut out, &[]),
                );
                rec.bench(
                    &mut c,
                    &format!("gemm_crate_{n}_t{threads}"),
                    clock,
                    flops,
                    peak,
                    || crate_gemm(n, &a, &b, &mut out, threads),
                );
            }
        });
    }
    rec.finish();
}
