//! Fused against unfused inference, in one run: ResNet-18 (224×224) at
//! batch 1 and LeNet-5 at batch 1 and 256, each compiled three ways from
//! the same YAML file — as before fusion (one kernel per op, weights read
//! as stored), fused (folded batch norm, epilogues) with weights read as
//! stored, and fused with prepacked weights (the default) — with the same
//! parameters. Rounds interleave the variants, so machine noise falls on
//! all of them alike; the table gives each one's median, its GFLOP/s
//! (2 × multiply-adds per example), and its speed-up over the unfused
//! build, and checks that the outputs agree. One JSON line per
//! measurement goes to `target/kiln-bench/fusion_speed.jsonl`.
//!
//! Run: `cargo run --release --example fusion_speed -- [THREADS [ROUNDS]]`
//! (default 1 thread, 30 rounds; LeNet takes 20× the rounds).

use std::io::Write;
use std::time::Instant;

mod unfused {
    kiln::network!("models/resnet18.yaml", fuse = false, prepack = false);
    kiln::network!("models/lenet5.yaml", fuse = false, prepack = false);
}
mod fused_plain {
    kiln::network!("models/resnet18.yaml", prepack = false);
    kiln::network!("models/lenet5.yaml", prepack = false);
}
mod fused {
    kiln::network!("models/resnet18.yaml");
    kiln::network!("models/lenet5.yaml");
}

/// The variants, in table order.
const VARIANTS: [&str; 3] = ["unfused", "fused", "fused+prepacked"];

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

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The largest difference between `a` and `b`, relative to `b`'s largest
/// magnitude.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-30);
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs() / scale)
        .fold(0.0, f64::max)
}

/// One workload's result: per variant, the median seconds per call.
struct Row {
    workload: String,
    flops: f64,
    seconds: [f64; 3],
    diff: f64,
}

/// Times the three builds of one network (`$a`, `$b`, `$c`, the variants in
/// [`VARIANTS`] order) at `$batch` for `$rounds` interleaved rounds.
macro_rules! measure {
    ($name:expr, $a:ty, $b:ty, $c:ty, $batch:expr, $rounds:expr) => {{
        let batch: usize = $batch;
        let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
            kiln::runtime::init::Dist::Normal,
        ));
        let mut a = <$a>::new(&init, 7, batch).map_err(|e| e.to_string())?;
        // The same parameters and (non-trivial) running statistics in all:
        // means near zero and variances near one keep ResNet's activations
        // alive through its 20 batch norms.
        let p = a.params_mut();
        for slot in p.buffer_layout.slots().to_vec() {
            let mean = slot.name.ends_with("running_mean");
            for (i, v) in p.buffers[slot.range()].iter_mut().enumerate() {
                let t = (i % 7) as f32 / 7.0 - 0.5;
                *v = if mean { 0.05 * t } else { 1.0 + 0.4 * t };
            }
        }
        let params = a.params().clone();
        let mut b = <$b>::with_params(params.clone(), batch);
        let mut c = <$c>::with_params(params, batch);
        let x = input(batch * <$a>::INPUT_LEN);
        let want = a.forward(&x).map_err(|e| e.to_string())?.to_vec();
        let db = rel_diff(b.forward(&x).map_err(|e| e.to_string())?, &want);
        let dc = rel_diff(c.forward(&x).map_err(|e| e.to_string())?, &want);
        let mut times: [Vec<f64>; 3] = Default::default();
        for _ in 0..$rounds {
            let t = Instant::now();
            a.forward(&x).map_err(|e| e.to_string())?;
            times[0].push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            b.forward(&x).map_err(|e| e.to_string())?;
            times[1].push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            c.forward(&x).map_err(|e| e.to_string())?;
            times[2].push(t.elapsed().as_secs_f64());
        }
        Row {
            workload: $name.to_string(),
            flops: 2.0 * <$a>::TOTAL_MACS as f64 * batch as f64,
            seconds: times.map(|mut t| median(&mut t)),
            diff: db.max(dc),
        }
    }};
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("argument {}: `{s}` is not a number", i + 1)),
        }
    };
    let (threads, rounds) = (number(0, 1)?.max(1), number(1, 30)?.max(1));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| e.to_string())?;
    let rows = [
        measure!(
            format!("resnet18_infer_b1_t{threads}"),
            unfused::ResNet18,
            fused_plain::ResNet18,
            fused::ResNet18,
            1,
            rounds
        ),
        measure!(
            format!("lenet_infer_b1_t{threads}"),
            unfused::LeNet5,
            fused_plain::LeNet5,
            fused::LeNet5,
            1,
            rounds * 20
        ),
        measure!(
            format!("lenet_infer_b256_t{threads}"),
            unfused::LeNet5,
            fused_plain::LeNet5,
            fused::LeNet5,
            256,
            rounds
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kiln-bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("fusion_speed.jsonl");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "{:<24} {:<16} {:>11} {:>9} {:>9}",
        "workload", "variant", "median ms", "GFLOP/s", "speed-up"
    );
    for row in &rows {
        for (v, &s) in VARIANTS.iter().zip(&row.seconds) {
            let gflops = row.flops / s / 1e9;
            let speedup = row.seconds[0] / s;
            println!(
                "{:<24} {:<16} {:>11.4} {:>9.2} {:>8.2}×",
                row.workload,
                v,
                s * 1e3,
                gflops,
                speedup
            );
            writeln!(
                out,
                "{{\"name\":\"{}_{}\",\"flops\":{},\"seconds\":{:e},\"gflops\":{:.3},\"speedup_vs_unfused\":{:.4}}}",
                row.workload, v, row.flops, s, gflops, speedup
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        println!(
            "{:<24} outputs agree within {:.1e} of the unfused output's scale",
            "", row.diff
        );
        if row.diff > 1e-4 {
            return Err(format!(
                "{}: fused and unfused outputs differ by {:.2e}",
                row.workload, row.diff
            ));
        }
    }
    Ok(())
}
