//! The machine's ceiling: a register-only FMA loop (AVX2 and AVX-512, one
//! thread and all threads) and the SGEMM rate at 1024³ against it.
//!
//! Run: `cargo bench -p kiln-runtime --bench peak`.

mod common;

use common::{Record, Recorder, Width, fma_loop, has};
use kiln_runtime::kernels::gemm::{Gemm, sgemm};
use std::time::Instant;

/// Flops per second of the FMA loop on every thread of `pool` at once.
fn fma_rate(pool: &rayon::ThreadPool, width: Width, iters: u64) -> (f64, f64) {
    let t = Instant::now();
    let flops: f64 = pool.broadcast(|_| fma_loop(width, iters)).iter().sum();
    (flops, t.elapsed().as_secs_f64())
}

fn main() {
    let mut rec = Recorder::new("peak");
    let all = rayon::current_num_threads();
    let pool1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let pool_all = rayon::ThreadPoolBuilder::new()
        .num_threads(all)
        .build()
        .expect("pool");
    let mut peak = [0.0f64; 2];
    for (width, label) in [(Width::Avx2, "avx2"), (Width::Avx512, "avx512")] {
        if !has(width) {
            continue;
        }
        for (pool, threads) in [(&pool1, 1), (&pool_all, all)] {
            // The median of 21 runs of about 0.1 s each.
            let iters = 10_000_000u64;
            let _ = fma_rate(pool, width, iters / 10);
            let mut runs: Vec<(f64, f64)> = (0..21).map(|_| fma_rate(pool, width, iters)).collect();
            runs.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (flops, seconds) = runs[runs.len() / 2];
            let gflops = flops / seconds / 1e9;
            if width == Width::Avx512 || !has(Width::Avx512) {
                peak[usize::from(threads > 1)] = gflops;
            }
            rec.push(Record {
                name: format!("fma_{label}_t{threads}"),
                flops,
                seconds,
                peak_gflops: gflops,
            });
        }
    }
    let n = 1024;
    let g = Gemm::new(n, n, n);
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut out = vec![0.0f32; n * n];
    for (pool, threads, p) in [(&pool1, 1, peak[0]), (&pool_all, all, peak[1])] {
        // Criterion runs inside the pool, so every call sees its thread count.
        pool.install(|| {
            let mut c = common::criterion(10, 1000);
            rec.bench(
                &mut c,
                &format!("sgemm_1024_t{threads}"),
                g.flops() as f64,
                p,
                || sgemm(&g, &a, &b, &mut out, &[]),
            )
        });
    }
    rec.finish();
}
