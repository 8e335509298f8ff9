//! The machine's ceiling: a register-only FMA loop (AVX2 and AVX-512, one
//! thread and all threads) and the SGEMM rate at 1024³ against it.
//!
//! Single-thread cases are timed by the thread's CPU clock; the all-thread
//! FMA peak is reported twice, by the wall clock and as the sum of each
//! thread's CPU-clock rate (what the cores deliver when they are not shared).
//! The SGEMM's scaling is measured in paired rounds of one thread and all
//! threads, both by the wall clock.
//!
//! Run: `cargo bench -p kiln-runtime --bench peak`.

mod common;

use common::{Clock, Record, Recorder, Width, fma_loop, has, pool, thread_cpu_time};
use kiln_runtime::kernels::gemm::{Gemm, sgemm};
use std::time::Instant;

/// One run of the FMA loop on every thread of `pool` at once: total flops,
/// wall seconds, and the sum of the threads' CPU-clock rates (flops/s).
fn fma_run(pool: &rayon::ThreadPool, width: Width, iters: u64) -> (f64, f64, f64) {
    let t = Instant::now();
    let per: Vec<(f64, f64)> = pool.broadcast(|_| {
        let c = thread_cpu_time();
        let flops = fma_loop(width, iters);
        (flops, (thread_cpu_time() - c).as_secs_f64())
    });
    let wall = t.elapsed().as_secs_f64();
    let flops = per.iter().map(|p| p.0).sum();
    let rate = per.iter().map(|p| p.0 / p.1).sum();
    (flops, wall, rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut rec = Recorder::new("peak");
    let all = rayon::current_num_threads();
    let pool1 = pool(1);
    let pool_all = pool(all);
    // The widest width's single-thread and all-thread (CPU-clock) peaks.
    let mut peak = [0.0f64; 2];
    for (width, label) in [(Width::Avx2, "avx2"), (Width::Avx512, "avx512")] {
        if !has(width) {
            continue;
        }
        for (pool, threads) in [(&pool1, 1), (&pool_all, all)] {
            // 21 runs of about 0.05 s of CPU each.
            let iters = 5_000_000u64;
            let _ = fma_run(pool, width, iters / 10);
            let runs: Vec<(f64, f64, f64)> = (0..21).map(|_| fma_run(pool, width, iters)).collect();
            let flops = runs[0].0;
            let cpu_rate = median(runs.iter().map(|r| r.2).collect());
            let wall = median(runs.iter().map(|r| r.1).collect());
            if width == Width::Avx512 || !has(Width::Avx512) {
                peak[usize::from(threads > 1)] = cpu_rate / 1e9;
            }
            rec.push(Record {
                name: format!("fma_{label}_t{threads}"),
                flops,
                seconds: flops / cpu_rate,
                peak_gflops: cpu_rate / 1e9,
                clock: Clock::ThreadCpu,
            });
            if threads > 1 {
                rec.push(Record {
                    name: format!("fma_{label}_t{threads}_wall"),
                    flops,
                    seconds: wall,
                    peak_gflops: cpu_rate / 1e9,
                    clock: Clock::Wall,
                });
            }
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
            let clock = common::clock_for(threads);
            rec.bench(
                &mut c,
                &format!("sgemm_1024_t{threads}"),
                clock,
                g.flops() as f64,
                p,
                || sgemm(&g, &a, &b, &mut out, &[]),
            )
        });
    }
    // Paired rounds of one thread and all threads, each a warm-up call and
    // a timed one by the wall clock, back to back: the median of the
    // per-round speedups is the scaling with both runs in the same state
    // of the machine (the criterion medians above are minutes apart).
    let scaling: Vec<(f64, f64)> = (0..15)
        .map(|_| {
            let mut secs = [0.0f64; 2];
            for (k, pool) in [&pool1, &pool_all].into_iter().enumerate() {
                pool.install(|| {
                    sgemm(&g, &a, &b, &mut out, &[]);
                    let t = Instant::now();
                    sgemm(&g, &a, &b, &mut out, &[]);
                    secs[k] = t.elapsed().as_secs_f64();
                });
            }
            (secs[0], secs[1])
        })
        .collect();
    let speedup = median(scaling.iter().map(|s| s.0 / s.1).collect());
    let wall_all = median(scaling.iter().map(|s| s.1).collect());
    rec.push(Record {
        name: format!("sgemm_1024_t{all}_paired"),
        flops: g.flops() as f64,
        seconds: wall_all,
        peak_gflops: peak[1],
        clock: Clock::Wall,
    });
    let scaling_line = format!(
        "Paired rounds (15): SGEMM 1024³ on {all} threads = {speedup:.2}× one thread \
         (median of per-round wall-clock ratios; {all} threads median {:.1} GFLOP/s)",
        g.flops() as f64 / wall_all / 1e9
    );
    // Paired rounds: the FMA peak and one SGEMM back to back, so both see
    // the same state of the shared machine; the median of the per-round
    // ratios is the fairest single-thread efficiency.
    let width = if has(Width::Avx512) {
        Width::Avx512
    } else {
        Width::Avx2
    };
    if has(width) {
        let rounds: Vec<(f64, f64)> = pool1.install(|| {
            (0..15)
                .map(|_| {
                    let t = thread_cpu_time();
                    let flops = fma_loop(width, 2_000_000);
                    let fma = flops / (thread_cpu_time() - t).as_secs_f64();
                    let t = thread_cpu_time();
                    sgemm(&g, &a, &b, &mut out, &[]);
                    let mm = g.flops() as f64 / (thread_cpu_time() - t).as_secs_f64();
                    (fma, mm)
                })
                .collect()
        });
        let ratio = median(rounds.iter().map(|r| r.1 / r.0).collect());
        let fma = median(rounds.iter().map(|r| r.0).collect());
        let mm = median(rounds.iter().map(|r| r.1).collect());
        rec.push(Record {
            name: "sgemm_1024_t1_paired".to_string(),
            flops: g.flops() as f64,
            seconds: g.flops() as f64 / mm,
            peak_gflops: fma / 1e9,
            clock: Clock::ThreadCpu,
        });
        rec.finish();
        println!(
            "\nPaired rounds (15): median SGEMM 1024³ / FMA peak = {:.1}% (median rates {:.1} / {:.1} GFLOP/s)",
            100.0 * ratio,
            mm / 1e9,
            fma / 1e9
        );
        println!("{scaling_line}");
        return;
    }
    rec.finish();
    println!("\n{scaling_line}");
}
