//! Shared helpers of the runtime benchmarks: the measured FMA peak, the
//! criterion set-up, and the record each benchmark leaves behind (one JSON
//! line per case in `target/kiln-bench/<bench>.jsonl`, and a table printed at
//! the end).

#![allow(dead_code, reason = "each bench binary uses a different subset")]

use criterion::Criterion;
use std::cell::RefCell;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

/// One measured case.
#[derive(Debug, Clone)]
pub struct Record {
    /// The case's name, e.g. `gemm_1024_t1`.
    pub name: String,
    /// Floating-point operations of one run.
    pub flops: f64,
    /// The median seconds of one run.
    pub seconds: f64,
    /// The peak the case is compared against (GFLOP/s).
    pub peak_gflops: f64,
}

impl Record {
    /// The achieved rate.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

/// Collects the records of one bench binary and writes them out.
#[derive(Debug)]
pub struct Recorder {
    bench: String,
    records: Vec<Record>,
}

impl Recorder {
    /// A recorder for the bench named `bench`.
    pub fn new(bench: &str) -> Self {
        Recorder {
            bench: bench.to_string(),
            records: Vec::new(),
        }
    }

    /// Measures `f` with criterion (per-run times of every sample kept) and
    /// records the median as one case.
    pub fn bench(
        &mut self,
        c: &mut Criterion,
        name: &str,
        flops: f64,
        peak_gflops: f64,
        mut f: impl FnMut(),
    ) {
        let samples: RefCell<Vec<f64>> = RefCell::new(Vec::new());
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                let d = t.elapsed();
                samples.borrow_mut().push(d.as_secs_f64() / iters as f64);
                d
            })
        });
        let mut s = samples.into_inner();
        if s.is_empty() {
            // Criterion filtered this case out (a name filter was given).
            return;
        }
        s.sort_by(|a, b| a.total_cmp(b));
        let seconds = s[s.len() / 2];
        self.push(Record {
            name: name.to_string(),
            flops,
            seconds,
            peak_gflops,
        });
    }

    /// Adds an already measured case.
    pub fn push(&mut self, r: Record) {
        self.records.push(r);
    }

    /// The records so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Appends the JSON lines and prints the table.
    pub fn finish(&self) {
        let dir = target_dir().join("kiln-bench");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}.jsonl", self.bench));
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut file) => {
                for r in &self.records {
                    let line = format!(
                        "{{\"name\":\"{}\",\"flops\":{},\"seconds\":{:e},\"gflops\":{:.3},\"peak_gflops\":{:.3},\"kernels\":\"{}\"}}",
                        r.name,
                        r.flops,
                        r.seconds,
                        r.gflops(),
                        r.peak_gflops,
                        kiln_runtime::kernels::dispatch::kernels().name
                    );
                    let _ = writeln!(file, "{line}");
                }
            }
            Err(e) => eprintln!("kiln-bench: cannot write {}: {e}", path.display()),
        }
        println!();
        println!(
            "{:<36} {:>12} {:>12} {:>9} {:>9} {:>7}",
            "case", "MFLOP", "median µs", "GFLOP/s", "peak", "% peak"
        );
        for r in &self.records {
            println!(
                "{:<36} {:>12.3} {:>12.2} {:>9.2} {:>9.2} {:>6.1}%",
                r.name,
                r.flops / 1e6,
                r.seconds * 1e6,
                r.gflops(),
                r.peak_gflops,
                100.0 * r.gflops() / r.peak_gflops
            );
        }
        println!("(written to {})", path.display());
    }
}

fn target_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return d.into();
    }
    // Bench binaries run with the package directory as working directory;
    // the workspace's target directory is one level up.
    let here = std::env::current_dir().unwrap_or_default();
    for dir in here.ancestors() {
        if dir.join("target").is_dir() && dir.join("Cargo.lock").is_file() {
            return dir.join("target");
        }
    }
    here.join("target")
}

/// A criterion configured for short runs on a shared machine.
pub fn criterion(samples: usize, measure_ms: u64) -> Criterion {
    Criterion::default()
        .sample_size(samples.max(10))
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(measure_ms))
        .configure_from_args()
}

/// FMA vector width of a peak measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Width {
    /// 256-bit `vfmadd` on `ymm` (AVX2+FMA).
    Avx2,
    /// 512-bit `vfmadd` on `zmm` (AVX-512F).
    Avx512,
}

/// Runs `iters` rounds of `ACC` independent FMA chains of 8 lanes (AVX2) and
/// returns the flops done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop_avx2(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    const ACC: usize = 12;
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); ACC];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    black_box(s);
    (iters as usize * ACC * 8 * 2) as f64
}

/// Runs `iters` rounds of `ACC` independent FMA chains of 16 lanes
/// (AVX-512) and returns the flops done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_avx512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    const ACC: usize = 24;
    let x = _mm512_set1_ps(black_box(0.999_999));
    let y = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_set1_ps(black_box(1.0)); ACC];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    black_box(s);
    (iters as usize * ACC * 16 * 2) as f64
}

/// Whether this machine can run the width.
pub fn has(width: Width) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match width {
            Width::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Width::Avx512 => is_x86_feature_detected!("avx512f"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = width;
        false
    }
}

/// The flops of `iters` rounds of the register-only FMA loop at `width`.
pub fn fma_loop(width: Width, iters: u64) -> f64 {
    assert!(has(width), "fma_loop: this CPU lacks {width:?}");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the features were checked just above.
    unsafe {
        match width {
            Width::Avx2 => fma_loop_avx2(iters),
            Width::Avx512 => fma_loop_avx512(iters),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        0.0
    }
}

/// A quick single-thread FMA peak (GFLOP/s): the best of several short
/// runs of the register-only loop, at the widest width the kernels use.
pub fn quick_peak_1t() -> f64 {
    let width = if has(Width::Avx512) {
        Width::Avx512
    } else if has(Width::Avx2) {
        Width::Avx2
    } else {
        return f64::NAN;
    };
    let mut best = 0.0f64;
    for _ in 0..15 {
        let t = Instant::now();
        let flops = fma_loop(width, 2_000_000);
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}
