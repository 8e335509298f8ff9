//! Shared helpers of the runtime benchmarks: the measured FMA peak, the
//! criterion set-up, and the record each benchmark leaves behind (one JSON
//! line per case in `target/kiln-bench/<bench>.jsonl`, and a table printed at
//! the end).

#![allow(dead_code, reason = "each bench binary uses a different subset")]

use criterion::Criterion;
use std::cell::RefCell;
#[cfg(target_arch = "x86_64")]
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

/// Which clock a case is timed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time: what multi-threaded cases must use.
    Wall,
    /// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`): for
    /// single-thread cases, so that time the shared machine's scheduler
    /// gives to other processes is not counted.
    ThreadCpu,
}

impl Clock {
    fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::ThreadCpu => "thread-cpu",
        }
    }

    /// The current reading of this clock.
    pub fn now(self) -> Duration {
        match self {
            Clock::Wall => {
                static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                START.get_or_init(Instant::now).elapsed()
            }
            Clock::ThreadCpu => thread_cpu_time(),
        }
    }
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

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
    /// The clock the case was timed with.
    pub clock: Clock,
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
        clock: Clock,
        flops: f64,
        peak_gflops: f64,
        mut f: impl FnMut(),
    ) {
        let samples: RefCell<Vec<f64>> = RefCell::new(Vec::new());
        let mut group = c.benchmark_group(&self.bench);
        // Flat sampling: every sample runs the same number of iterations, so
        // slow cases (a batch-32 convolution) need only ten runs.
        group.sampling_mode(criterion::SamplingMode::Flat);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = clock.now();
                for _ in 0..iters {
                    f();
                }
                let d = clock.now() - t;
                samples.borrow_mut().push(d.as_secs_f64() / iters as f64);
                d
            })
        });
        group.finish();
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
            clock,
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
        let cpu = cpu();
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut file) => {
                for r in &self.records {
                    let line = format!(
                        "{{\"name\":\"{}\",\"flops\":{},\"seconds\":{:e},\"gflops\":{:.3},\"peak_gflops\":{:.3},\"clock\":\"{}\",\"kernels\":\"{}\",\"cpu\":\"{}\"}}",
                        r.name,
                        r.flops,
                        r.seconds,
                        r.gflops(),
                        r.peak_gflops,
                        r.clock.name(),
                        kiln_runtime::kernels::dispatch::kernels().name,
                        cpu
                    );
                    let _ = writeln!(file, "{line}");
                }
            }
            Err(e) => eprintln!("kiln-bench: cannot write {}: {e}", path.display()),
        }
        println!();
        println!("cpu: {cpu}");
        println!(
            "{:<36} {:>12} {:>12} {:>9} {:>9} {:>7} {:>10}",
            "case", "MFLOP", "median µs", "GFLOP/s", "peak", "% peak", "clock"
        );
        for r in &self.records {
            println!(
                "{:<36} {:>12.3} {:>12.2} {:>9.2} {:>9.2} {:>6.1}% {:>10}",
                r.name,
                r.flops / 1e6,
                r.seconds * 1e6,
                r.gflops(),
                r.peak_gflops,
                100.0 * r.gflops() / r.peak_gflops,
                r.clock.name()
            );
        }
        println!("(written to {})", path.display());
    }
}

/// The host's processor as Linux names it (model name, family, model,
/// stepping), so that records from different hosts of a shared pool can be
/// told apart; `unknown` elsewhere.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().replace('"', "'"))
    };
    match field("model name") {
        Some(name) => format!(
            "{name} (family {}, model {}, stepping {})",
            field("cpu family").unwrap_or_default(),
            field("model").unwrap_or_default(),
            field("stepping").unwrap_or_default()
        ),
        None => "unknown".to_string(),
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

/// The widest width this machine runs (the one the kernels use).
pub fn widest() -> Width {
    if has(Width::Avx512) {
        Width::Avx512
    } else {
        Width::Avx2
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
/// runs of the register-only loop, at the widest width the kernels use,
/// timed by the thread's CPU clock.
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
        let t = thread_cpu_time();
        let flops = fma_loop(width, 2_000_000);
        best = best.max(flops / (thread_cpu_time() - t).as_secs_f64() / 1e9);
    }
    best
}

/// The thread count of the convolution benches: `KILN_BENCH_THREADS`, else
/// 1 (the shared machine gives each engineer about a third of a core, so
/// only CPU-time measurements of one thread are stable).
pub fn bench_threads() -> usize {
    std::env::var("KILN_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(1)
}

/// The clock for a case on `threads` threads.
pub fn clock_for(threads: usize) -> Clock {
    if threads == 1 {
        Clock::ThreadCpu
    } else {
        Clock::Wall
    }
}

/// A thread pool of `threads` threads.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("building a thread pool")
}

/// Seconds of one call of `f`, warm: one call untimed (its operands come
/// back into cache, its scratch is grown), then calls repeated to at least
/// 20 ms of the thread's CPU time.
pub fn warm_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let t = thread_cpu_time();
    let mut calls = 0u32;
    loop {
        f();
        calls += 1;
        let spent = (thread_cpu_time() - t).as_secs_f64();
        if spent >= 0.02 {
            return spent / f64::from(calls);
        }
    }
}
