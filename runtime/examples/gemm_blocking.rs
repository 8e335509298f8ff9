//! Sweeps the GEMM cache blocking (KC, MC, NC) of the best kernel variant
//! at one size and prints, for each setting, the median ratio of the SGEMM
//! rate to the register-only FMA peak over paired rounds (the FMA loop and
//! one product back to back, both timed by the thread's CPU clock), so
//! that a drifting shared machine affects both alike.
//!
//! Run: `cargo run --release -p kiln-runtime --example gemm_blocking -- [n] [rounds]`
//! (default 1024, 9). `KILN_BLOCKING="kc,mc,nc,pf;…"` replaces the
//! built-in list of settings (`pf`: the AVX-512 microkernel's B prefetch
//! distance in floats, 0 for none; 1024 if left out).

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Width, fma_loop, has, thread_cpu_time};
use kiln_runtime::kernels::dispatch::{Kernels, MicroKernel, kernels};
use kiln_runtime::kernels::gemm::{
    Gemm, gemm_scratch_len_with, pack_a, packed_a_len, sgemm_serial_with,
};

/// The AVX-512 microkernel with B prefetched `pf` floats ahead; other
/// variants keep their own.
fn micro_with_prefetch(base: &Kernels, pf: usize) -> MicroKernel {
    #[cfg(target_arch = "x86_64")]
    if base.name == "avx512" {
        use kiln_runtime::kernels::gemm_micro::micro_avx512_prefetch as m;
        return match pf {
            0 => m::<0>,
            256 => m::<256>,
            512 => m::<512>,
            768 => m::<768>,
            2048 => m::<2048>,
            _ => m::<1024>,
        };
    }
    let _ = pf;
    base.micro
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("arguments: [n] [rounds]"))
        .collect();
    let n = args.first().copied().unwrap_or(1024);
    let rounds = args.get(1).copied().unwrap_or(9);
    let base = *kernels();
    let width = if has(Width::Avx512) {
        Width::Avx512
    } else {
        Width::Avx2
    };
    let settings: Vec<(usize, usize, usize, usize)> = match std::env::var("KILN_BLOCKING") {
        Ok(s) => s
            .split(';')
            .map(|t| {
                let v: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                (v[0], v[1], v[2], v.get(3).copied().unwrap_or(1024))
            })
            .collect(),
        Err(_) => vec![
            (base.kc, base.mc, base.nc, 0),
            (base.kc, base.mc, base.nc, 256),
            (base.kc, base.mc, base.nc, 1024),
            (384, 96, 1024, 1024),
            (512, 96, 768, 1024),
        ],
    };
    let g = Gemm::new(n, n, n);
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; n * n];
    println!("cpu: {}", common::cpu());
    println!("variant {}, {n}³, {rounds} paired rounds", base.name);
    // What packing A alone costs, against the product's time at the peak.
    let mut packed = vec![0.0f32; packed_a_len(&base, &g)];
    let mut pack_s = Vec::new();
    for _ in 0..rounds {
        let t = thread_cpu_time();
        pack_a(&base, &g, &a, &mut packed);
        pack_s.push((thread_cpu_time() - t).as_secs_f64());
    }
    let t = thread_cpu_time();
    let flops = fma_loop(width, 2_000_000);
    let peak = flops / (thread_cpu_time() - t).as_secs_f64();
    println!(
        "packing A ({n}×{n}): {:.3} ms median, {:.1} % of the product's time at the peak",
        median(pack_s.clone()) * 1e3,
        100.0 * median(pack_s) / (g.flops() as f64 / peak)
    );
    // Settings interleaved within each round, so that all of them see the
    // same states of the machine.
    let kerns: Vec<Kernels> = settings
        .iter()
        .map(|&(kc, mc, nc, pf)| Kernels {
            kc,
            mc: mc.div_ceil(base.mr) * base.mr,
            nc: nc.div_ceil(base.nr) * base.nr,
            micro: micro_with_prefetch(&base, pf),
            ..base
        })
        .collect();
    let mut scratch: Vec<Vec<f32>> = kerns
        .iter()
        .map(|k| vec![0.0f32; gemm_scratch_len_with(k, &g)])
        .collect();
    let mut ratios = vec![Vec::new(); kerns.len()];
    let mut rates = vec![Vec::new(); kerns.len()];
    for _ in 0..rounds {
        for (s, kern) in kerns.iter().enumerate() {
            let t = thread_cpu_time();
            let flops = fma_loop(width, 2_000_000);
            let fma = flops / (thread_cpu_time() - t).as_secs_f64();
            let t = thread_cpu_time();
            sgemm_serial_with(kern, &g, &a, &b, &mut c, &[], &mut scratch[s]);
            let mm = g.flops() as f64 / (thread_cpu_time() - t).as_secs_f64();
            ratios[s].push(mm / fma);
            rates[s].push(mm);
        }
    }
    for (s, kern) in kerns.iter().enumerate() {
        println!(
            "kc {:4} mc {:4} nc {:5} pf {:4}: median {:5.1} % of peak (best {:5.1} %), SGEMM {:6.1} GFLOP/s",
            kern.kc,
            kern.mc,
            kern.nc,
            settings[s].3,
            100.0 * median(ratios[s].clone()),
            100.0 * ratios[s].iter().copied().fold(0.0, f64::max),
            median(rates[s].clone()) / 1e9,
        );
    }
    // Threads: the pool's sgemm on one thread and on all, by the wall
    // clock, alternated.
    let all = rayon::current_num_threads();
    if all > 1 {
        let pools = [common::pool(1), common::pool(all)];
        let mut secs = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (t, pool) in pools.iter().enumerate() {
                pool.install(|| {
                    let t0 = std::time::Instant::now();
                    kiln_runtime::kernels::gemm::sgemm(&g, &a, &b, &mut c, &[]);
                    secs[t].push(t0.elapsed().as_secs_f64());
                });
            }
        }
        let (one, many) = (median(secs[0].clone()), median(secs[1].clone()));
        println!(
            "sgemm {n}³ by the wall clock: 1 thread {:.1} GFLOP/s, {all} threads {:.1} GFLOP/s: {:.2}×",
            g.flops() as f64 / one / 1e9,
            g.flops() as f64 / many / 1e9,
            one / many
        );
    }
}
