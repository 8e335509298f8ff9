//! The kiln side of the comparison in `benches/compare/`: builds one
//! workload's network with `kiln::network!`, writes its weights
//! (safetensors, PyTorch-style names), input and output (raw little-endian
//! f32) to a directory, times it (warm-up, then N runs, median of the wall
//! clock and of the process CPU clock) and prints one JSON line.
//!
//! Run: `cargo run --release --example compare_kiln -- DIR WORKLOAD THREADS
//! WARMUP RUNS`, with WORKLOAD one of `lenet_infer_b1`, `lenet_infer_b256`,
//! `resnet18_infer_b1`, `lenet_train_b64`, `resnet18_cifar_train_b32`,
//! `resnet20_train_b32`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

kiln::network!("models/lenet5.yaml");
kiln::network!("models/resnet18.yaml");
kiln::network!("models/resnet18_cifar.yaml");
kiln::network!("models/resnet20.yaml");

/// CPU time of the whole process (every thread), in seconds.
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Writes `data` as raw little-endian f32.
fn write_f32(path: &Path, data: &[f32]) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A deterministic input of `len` floats in [-1, 1).
fn input(len: usize) -> Vec<f32> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// What a timed workload reports.
#[derive(Debug)]
struct Timing {
    wall: f64,
    cpu: f64,
}

/// Runs `f` `warmup` times, then `runs` times, and returns the medians.
fn time(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Timing, String> {
    for _ in 0..warmup {
        f()?;
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let (t, c) = (Instant::now(), process_cpu_seconds());
        f()?;
        cpu.push(process_cpu_seconds() - c);
        wall.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing {
        wall: median(&mut wall),
        cpu: median(&mut cpu),
    })
}

/// Builds, exports and times one inference workload of the network type
/// `$net` at `$batch`.
macro_rules! infer {
    ($net:ty, $model:expr, $batch:expr, $dir:expr, $workload:expr, $warmup:expr, $runs:expr) => {{
        let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
            kiln::runtime::init::Dist::Normal,
        ));
        let mut net = <$net>::new(&init, 7, $batch).map_err(|e| e.to_string())?;
        let weights = $dir.join(format!("{}.safetensors", $model));
        net.save(&weights, &kiln::runtime::checkpoint::TrainState::default())
            .map_err(|e| e.to_string())?;
        let x = input($batch * <$net>::INPUT_LEN);
        let y = net.forward(&x).map_err(|e| e.to_string())?.to_vec();
        write_f32(&$dir.join(format!("{}.x.f32", $workload)), &x)?;
        write_f32(&$dir.join(format!("{}.y.f32", $workload)), &y)?;
        let t = time($warmup, $runs, || {
            std::hint::black_box(net.forward(&x).map_err(|e| e.to_string())?);
            Ok(())
        })?;
        let mut xs = vec![$batch];
        xs.extend_from_slice(&<$net>::INPUT_SHAPE);
        let mut ys = vec![$batch];
        ys.extend_from_slice(&<$net>::OUTPUT_SHAPE);
        (t, weights, xs, ys)
    }};
}

/// What one workload leaves for the report: its timing, where its weights
/// are, its input and output shapes.
type Measured = (Timing, PathBuf, Vec<usize>, Vec<usize>);

/// Learning rate of the training workloads.
const LR: f32 = 0.01;

/// Builds, exports and times the training step of the network type `$net`
/// (weights written as `$model`_train.safetensors, and after the first step
/// as `$model`_train_step1.safetensors) at `$batch`, SGD with momentum 0.9
/// and learning rate [`LR`], targets `i % 10`; gives the timing and the
/// first step's loss.
macro_rules! train {
    ($net:ty, $model:expr, $batch:expr, $dir:expr, $workload:expr, $warmup:expr, $runs:expr) => {{
        let (dir, workload, batch): (&Path, &str, usize) = (&$dir, $workload, $batch);
        let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
            kiln::runtime::init::Dist::Normal,
        ));
        let mut net = <$net>::new(&init, 7, batch).map_err(|e| e.to_string())?;
        let state = kiln::runtime::checkpoint::TrainState::default();
        let weights = dir.join(format!("{}_train.safetensors", $model));
        net.save(&weights, &state).map_err(|e| e.to_string())?;
        let x = input(batch * <$net>::INPUT_LEN);
        let y: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        write_f32(&dir.join(format!("{workload}.x.f32")), &x)?;
        let mut opt = kiln::runtime::optim::Optim::momentum(0.9);
        let loss = net
            .train_step(&x, &y, &mut opt, LR)
            .map_err(|e| e.to_string())?;
        net.save(
            dir.join(format!("{}_train_step1.safetensors", $model)),
            &state,
        )
        .map_err(|e| e.to_string())?;
        let t = time($warmup, $runs, || {
            std::hint::black_box(
                net.train_step(&x, &y, &mut opt, LR)
                    .map_err(|e| e.to_string())?,
            );
            Ok(())
        })?;
        let mut xs = vec![batch];
        xs.extend_from_slice(&<$net>::INPUT_SHAPE);
        let measured: Measured = (t, weights, xs, vec![batch]);
        (measured, loss)
    }};
}

fn run(args: &[String]) -> Result<String, String> {
    let [dir, workload, threads, warmup, runs] = args else {
        return Err("usage: compare_kiln DIR WORKLOAD THREADS WARMUP RUNS".into());
    };
    let number = |what: &str, v: &str| -> Result<usize, String> {
        v.parse()
            .map_err(|_| format!("{what}: `{v}` is not a non-negative integer"))
    };
    let (threads, warmup, runs) = (
        number("THREADS", threads)?.max(1),
        number("WARMUP", warmup)?,
        number("RUNS", runs)?,
    );
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| e.to_string())?;
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut loss = None;
    let (t, weights, xs, ys) = match workload.as_str() {
        "lenet_infer_b1" => infer!(LeNet5, "lenet5", 1, dir, workload, warmup, runs),
        "lenet_infer_b256" => infer!(LeNet5, "lenet5", 256, dir, workload, warmup, runs),
        "resnet18_infer_b1" => infer!(ResNet18, "resnet18", 1, dir, workload, warmup, runs),
        "lenet_train_b64" => {
            let (m, l) = train!(LeNet5, "lenet5", 64, dir, workload, warmup, runs);
            loss = Some(l);
            m
        }
        "resnet18_cifar_train_b32" => {
            let (m, l) = train!(
                ResNet18Cifar,
                "resnet18_cifar",
                32,
                dir,
                workload,
                warmup,
                runs
            );
            loss = Some(l);
            m
        }
        "resnet20_train_b32" => {
            let (m, l) = train!(ResNet20, "resnet20", 32, dir, workload, warmup, runs);
            loss = Some(l);
            m
        }
        other => {
            return Err(format!(
                "unknown workload `{other}` (expected lenet_infer_b1, lenet_infer_b256, resnet18_infer_b1, lenet_train_b64, resnet18_cifar_train_b32 or resnet20_train_b32)"
            ));
        }
    };
    Ok(format!(
        "{{\"workload\":\"{workload}\",\"threads\":{threads},\"runs\":{runs},\"wall_seconds\":{:e},\"cpu_seconds\":{:e},\"weights\":\"{}\",\"input_shape\":{xs:?},\"output_shape\":{ys:?},\"loss\":{},\"lr\":{LR}}}",
        t.wall,
        t.cpu,
        weights.display(),
        loss.map_or("null".to_string(), |l| format!("{l:e}"))
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("compare_kiln: {e}");
            std::process::exit(2);
        }
    }
}
