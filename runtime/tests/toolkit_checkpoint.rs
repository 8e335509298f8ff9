//! Checkpoint tests: a bit-identical round trip of the whole training state,
//! a real child process killed mid-save, truncated/corrupted/mismatched files
//! (errors name the tensor), and the third-party PyTorch weights in
//! `tests/fixtures/ccexam_mnist.safetensors` loaded by name and by renaming.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_runtime::checkpoint::{self, PartialLoad, TensorFile, TrainState};
use kiln_runtime::init::{Dist, Init, InitPolicy};
use kiln_runtime::optim::{Optim, Optimizer};
use kiln_runtime::params::{Group, ParamLayout, Params, Role, Select, ToolkitError};
use kiln_runtime::rng::Rng;
use kiln_runtime::schedule::{Decay, Plateau, Schedule};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ccexam_mnist.safetensors"
);

/// A fresh scratch directory for one test.
fn scratch(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("kiln-ckpt-{tag}-{}-{k}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small conv + batch-norm + linear model, He-initialized.
fn small_model(seed: u64) -> Params {
    let mut layout = ParamLayout::from_specs([
        ("conv.weight", &[8, 3, 3, 3][..]),
        ("bn.weight", &[8][..]),
        ("bn.bias", &[8][..]),
        ("fc.weight", &[10, 72][..]),
        ("fc.bias", &[10][..]),
    ])
    .unwrap();
    layout.assign_groups(
        Group::new("decay").weight_decay(0.01),
        vec![
            (Select::Role(Role::Bias), Group::new("no_decay")),
            (Select::Role(Role::NormScale), Group::new("no_decay_bn")),
        ],
    );
    let bufs = ParamLayout::from_specs([
        ("bn.running_mean", &[8][..]),
        ("bn.running_var", &[8][..]),
        ("bn.num_batches_tracked", &[1][..]),
    ])
    .unwrap();
    let mut p = Params::new(layout, bufs).unwrap();
    InitPolicy::new(Init::He(Dist::Normal))
        .apply(&mut p, seed)
        .unwrap();
    p
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One training step with pseudo-random gradients drawn from `rng`.
fn train_step(p: &mut Params, opt: &mut Optim, sched: &mut Schedule, rng: &mut Rng) {
    for g in p.grads.iter_mut() {
        *g = rng.next_normal() as f32;
    }
    for b in p.buffers.iter_mut() {
        *b = 0.9 * *b + 0.1 * rng.next_f32();
    }
    opt.step(p, sched.lr()).unwrap();
    sched.advance();
}

#[test]
fn round_trip_restores_a_bit_identical_training_state() {
    let dir = scratch("roundtrip");
    let path = dir.join("ckpt.safetensors");
    let mut p = small_model(1);
    let mut opt = Optim::adamw();
    let plateau = Plateau {
        patience: 1,
        ..Plateau::default()
    };
    let mut sched = Schedule::new(0.01, Decay::Cosine { total: 100 })
        .with_warmup(3)
        .with_plateau(plateau);
    let mut rng = Rng::new(99);
    for epoch in 0..5 {
        train_step(&mut p, &mut opt, &mut sched, &mut rng);
        sched.observe([1.0, 0.9, 0.95, 0.97, 0.99][epoch]);
    }
    let state = TrainState {
        optim: Some(opt.state()),
        schedule: Some(sched.state()),
        rng: Some(rng),
        epoch: 5,
        user: [("run".to_string(), "test".to_string())].into(),
    };
    checkpoint::save(&path, &p, &state).unwrap();

    let mut q = small_model(2);
    assert_ne!(bits(&q.values), bits(&p.values));
    let back = checkpoint::load(&path, &mut q).unwrap();
    assert_eq!(bits(&q.values), bits(&p.values));
    assert_eq!(bits(&q.buffers), bits(&p.buffers));
    let (a, b) = (state.optim.clone().unwrap(), back.optim.clone().unwrap());
    assert_eq!((a.kind.as_str(), a.step), (b.kind.as_str(), b.step));
    assert_eq!(a.vectors.len(), b.vectors.len());
    for ((na, va), (nb, vb)) in a.vectors.iter().zip(&b.vectors) {
        assert_eq!(na, nb);
        assert_eq!(bits(va), bits(vb), "optimizer state {na}");
    }
    assert_eq!(back.schedule, state.schedule);
    assert_eq!(back.rng, state.rng);
    assert_eq!(back.epoch, 5);
    assert_eq!(back.user, state.user);

    // Resuming continues exactly as the uninterrupted run.
    let mut opt2 = Optim::adamw();
    opt2.load_state(back.optim.unwrap()).unwrap();
    let mut sched2 = Schedule::new(0.01, Decay::Cosine { total: 100 })
        .with_warmup(3)
        .with_plateau(plateau);
    sched2.load_state(back.schedule.unwrap()).unwrap();
    let mut rng2 = back.rng.unwrap();
    for _ in 0..3 {
        train_step(&mut p, &mut opt, &mut sched, &mut rng);
        train_step(&mut q, &mut opt2, &mut sched2, &mut rng2);
    }
    assert_eq!(bits(&q.values), bits(&p.values));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The model the kill test's child saves: 1M scalars whose values encode
/// the epoch, so a loaded file can be checked for consistency.
fn kill_model(epoch: u64) -> Params {
    let layout =
        ParamLayout::from_specs([("big.weight", &[1000, 1000][..]), ("big.bias", &[1000][..])])
            .unwrap();
    let mut p = Params::new(layout, ParamLayout::new()).unwrap();
    for (i, v) in p.values.iter_mut().enumerate() {
        *v = epoch as f32 + (i % 97) as f32 * 0.25;
    }
    p
}

/// The child: saves epochs 1, 2, … to `dir/ckpt.safetensors` until killed
/// (or for 60 s at most, should the parent be gone).
fn child_saver(dir: &Path) {
    let start = Instant::now();
    let path = dir.join("ckpt.safetensors");
    let first: u64 = std::env::var("KILN_CKPT_FIRST_EPOCH")
        .unwrap()
        .parse()
        .unwrap();
    let mut epoch = first;
    while start.elapsed() < Duration::from_secs(60) {
        let state = TrainState {
            epoch,
            ..TrainState::default()
        };
        checkpoint::save(&path, &kill_model(epoch), &state).unwrap();
        epoch += 1;
    }
}

#[test]
fn killed_during_save_leaves_old_checkpoint_loadable() {
    if let Ok(dir) = std::env::var("KILN_CKPT_CHILD_DIR") {
        child_saver(Path::new(&dir));
        return;
    }
    let dir = scratch("kill");
    let path = dir.join("ckpt.safetensors");
    checkpoint::save(&path, &kill_model(0), &TrainState::default()).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    let exe = std::env::current_exe().unwrap();
    // Kill until at least 3 kills landed while a temporary file was being
    // written (at least 8 kills, at most 40).
    let (mut last_epoch, mut mid_save, mut kills) = (0u64, 0, 0);
    while kills < 8 || (mid_save < 3 && kills < 40) {
        let k = kills;
        kills += 1;
        let mut child = Command::new(&exe)
            .args([
                "killed_during_save_leaves_old_checkpoint_loadable",
                "--exact",
                "--nocapture",
            ])
            .env("KILN_CKPT_CHILD_DIR", &dir)
            .env("KILN_CKPT_FIRST_EPOCH", (last_epoch + 1).to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let tmp_prefix = format!(".ckpt.safetensors.tmp-{}-", child.id());
        let left = std::fs::read_dir(&dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&tmp_prefix)
        });
        if left {
            mid_save += 1;
        }
        let mut p = kill_model(u64::MAX);
        let st = checkpoint::load(&path, &mut p)
            .unwrap_or_else(|e| panic!("kill {k}: the checkpoint no longer loads: {e}"));
        assert!(st.epoch >= last_epoch, "kill {k}: epoch went back");
        assert_eq!(
            bits(&p.values),
            bits(&kill_model(st.epoch).values),
            "kill {k}: values do not match epoch {}",
            st.epoch
        );
        last_epoch = st.epoch;
    }
    eprintln!("{kills} kills, {mid_save} landed mid-save, last epoch saved {last_epoch}");
    assert!(
        mid_save > 0,
        "no kill landed during a save; the test proved nothing"
    );
    assert!(last_epoch > 0, "the child never completed a save");
    std::fs::remove_dir_all(dir).unwrap();
}

mod damaged {
    use super::*;

    /// Saves the small model, damages the bytes with `damage`, and checks
    /// that loading into the small model fails with a message containing
    /// every string of `expect`.
    fn check(damage: impl Fn(&mut Vec<u8>), expect: &[&str]) {
        let p = small_model(3);
        let dir = scratch("damaged");
        let path = dir.join("c.safetensors");
        checkpoint::save(&path, &p, &TrainState::default()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let mut q = small_model(4);
        let before = q.clone();
        let err = checkpoint::load(&path, &mut q).unwrap_err().to_string();
        for e in expect {
            assert!(err.contains(e), "expected `{e}` in: {err}");
        }
        assert!(err.contains("c.safetensors"), "no path in: {err}");
        assert_eq!(q, before, "a failed load changed the model");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn header_len(b: &[u8]) -> usize {
        u64::from_le_bytes(b[..8].try_into().unwrap()) as usize
    }

    /// Replaces `from` by `to` (same length) in the header.
    fn edit_header(b: &mut [u8], from: &str, to: &str) {
        assert_eq!(from.len(), to.len());
        let n = header_len(b);
        let h = std::str::from_utf8(&b[8..8 + n]).unwrap();
        let at = 8 + h
            .find(from)
            .unwrap_or_else(|| panic!("`{from}` not in {h}"));
        b[at..at + to.len()].copy_from_slice(to.as_bytes());
    }

    /// Flips one byte in the middle of tensor `name`'s data.
    fn flip_in(b: &mut [u8], name: &str) {
        let f = TensorFile::from_bytes(b.to_vec(), "x").unwrap();
        let t = f.info(name).unwrap();
        let at = 8 + header_len(b) + (t.data.start + t.data.end) / 2;
        b[at] ^= 0x40;
    }

    #[test]
    fn truncated_in_the_data_names_the_cut_tensor() {
        // The data of the largest F32 tensor (fc.weight, 720 floats) is
        // placed by name order among equal dtypes; cutting 100 bytes off the
        // end cuts the last tensor in the file.
        check(
            |b| {
                let f = TensorFile::from_bytes(b.clone(), "x").unwrap();
                let last = f.tensors().last().unwrap().name.clone();
                b.truncate(b.len() - 100);
                // Record which tensor it was via its expected mention below.
                assert_eq!(last, "fc.weight");
            },
            &["tensor `fc.weight`", "truncated"],
        );
    }

    #[test]
    fn truncated_in_the_header_or_before_it() {
        check(|b| b.truncate(200), &["header claims", "truncated"]);
        check(|b| b.truncate(5), &["too short"]);
        check(|b| b.clear(), &["too short"]);
    }

    #[test]
    fn corrupted_data_is_caught_by_the_checksum() {
        check(
            |b| flip_in(b, "conv.weight"),
            &["tensor `conv.weight`", "checksum"],
        );
        check(
            |b| flip_in(b, "bn.running_var"),
            &["tensor `bn.running_var`", "corrupted"],
        );
    }

    #[test]
    fn corrupted_header_entries_name_the_tensor() {
        check(
            |b| edit_header(b, "[8,3,3,3]", "[8,3,3,4]"),
            &["tensor `conv.weight`", "needs 1152 bytes"],
        );
        check(
            |b| edit_header(b, "\"F32\",\"shape\":[10,72]", "\"F16\",\"shape\":[10,72]"),
            &["tensor `fc.weight`", "needs 1440 bytes"],
        );
        check(
            |b| edit_header(b, "\"F32\",\"shape\":[10,72]", "\"X32\",\"shape\":[10,72]"),
            &["tensor `fc.weight`", "unknown dtype `X32`"],
        );
        check(|b| b[8] = b'[', &["not a JSON object"]);
        check(
            |b| b[0..8].copy_from_slice(&u64::MAX.to_le_bytes()),
            &["header claims"],
        );
    }

    #[test]
    fn mismatched_model_reports_every_problem_at_once() {
        let p = small_model(3);
        let dir = scratch("mismatch");
        let path = dir.join("c.safetensors");
        checkpoint::save(&path, &p, &TrainState::default()).unwrap();
        let layout = ParamLayout::from_specs([
            ("conv.weight", &[8, 3, 3, 3][..]),
            ("bn.weight", &[8][..]),
            ("bn.bias", &[8][..]),
            ("fc.weight", &[10, 64][..]),
            ("fc2.bias", &[10][..]),
        ])
        .unwrap();
        let bufs = ParamLayout::from_specs([
            ("bn.running_mean", &[8][..]),
            ("bn.running_var", &[8][..]),
            ("bn.num_batches_tracked", &[1][..]),
        ])
        .unwrap();
        let mut q = Params::new(layout, bufs).unwrap();
        let err = checkpoint::load(&path, &mut q).unwrap_err();
        let ToolkitError::Mismatch { problems, .. } = &err else {
            panic!("not a mismatch: {err}");
        };
        let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "tensor `fc.weight`: expected shape [10, 64], found [10, 72]",
                "missing parameter `fc2.bias` (shape [10])",
                "unexpected tensor `fc.bias` [10] (not in the model)",
            ],
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

mod pytorch_weights {
    use super::*;

    /// The MNIST CNN with kiln's own names, in the fixture's order.
    fn kiln_cnn(head_out: usize) -> Params {
        let layout = ParamLayout::from_specs([
            ("conv1.weight", &[32, 1, 3, 3][..]),
            ("conv1.bias", &[32][..]),
            ("conv2.weight", &[64, 32, 3, 3][..]),
            ("conv2.bias", &[64][..]),
            ("fc1.weight", &[128, 3136][..]),
            ("fc1.bias", &[128][..]),
            ("fc2.weight", &[head_out, 128][..]),
            ("fc2.bias", &[head_out][..]),
        ])
        .unwrap();
        Params::new(layout, ParamLayout::new()).unwrap()
    }

    #[test]
    fn loads_with_its_pytorch_names() {
        let f = TensorFile::read(FIXTURE).unwrap();
        let mut got: Vec<(String, String, Vec<usize>)> = f
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.dtype.clone(), t.shape.clone()))
            .collect();
        got.sort();
        let want: Vec<(String, String, Vec<usize>)> = [
            ("classifier.0.bias", vec![128]),
            ("classifier.0.weight", vec![128, 3136]),
            ("classifier.2.bias", vec![10]),
            ("classifier.2.weight", vec![10, 128]),
            ("features.0.bias", vec![32]),
            ("features.0.weight", vec![32, 1, 3, 3]),
            ("features.3.bias", vec![64]),
            ("features.3.weight", vec![64, 32, 3, 3]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), "F32".to_string(), s))
        .collect();
        assert_eq!(got, want);

        // Strict load into a model that uses the PyTorch names as they are.
        let layout = ParamLayout::from_specs(
            f.tensors()
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice())),
        )
        .unwrap();
        let mut p = Params::new(layout, ParamLayout::new()).unwrap();
        let st = checkpoint::load(FIXTURE, &mut p).unwrap();
        assert_eq!(st, TrainState::default());
        assert_eq!(
            p.get("features.0.weight").unwrap(),
            f.f32_values("features.0.weight").unwrap()
        );
        let w = p.get("classifier.0.weight").unwrap();
        assert!(w.iter().all(|x| x.is_finite()) && w.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn partial_load_with_renaming_for_transfer_learning() {
        let f = TensorFile::read(FIXTURE).unwrap();
        // Keep the feature extractor and the first linear layer; the new
        // 5-class head keeps its own initialization.
        let mut p = kiln_cnn(5);
        InitPolicy::new(Init::Glorot(Dist::Uniform))
            .apply(&mut p, 7)
            .unwrap();
        let head = p.get("fc2.weight").unwrap().to_vec();
        let spec = PartialLoad::new()
            .rule("features.0.*", "conv1.*")
            .rule("features.3.*", "conv2.*")
            .rule("classifier.0.*", "fc1.*");
        let report = checkpoint::load_partial(FIXTURE, &mut p, &spec).unwrap();
        let mut loaded = report.loaded.clone();
        loaded.sort();
        assert_eq!(loaded.len(), 6);
        assert!(loaded.contains(&("features.3.weight".into(), "conv2.weight".into())));
        let mut skipped = report.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, ["classifier.2.bias", "classifier.2.weight"]);
        for (from, to) in &report.loaded {
            assert_eq!(p.get(to).unwrap(), f.f32_values(from).unwrap(), "{to}");
        }
        assert_eq!(p.get("fc2.weight").unwrap(), head);
    }

    #[test]
    fn partial_load_reports_every_bad_mapping() {
        let mut p = kiln_cnn(5);
        let before = p.clone();
        let spec = PartialLoad::new()
            .rule("features.0.*", "conv1.*")
            .rule("classifier.2.*", "fc2.*")
            .rule("classifier.0.*", "head.*")
            .rule("decoder.*", "dec.*");
        let err = checkpoint::load_partial(FIXTURE, &mut p, &spec).unwrap_err();
        let ToolkitError::Mismatch { problems, .. } = &err else {
            panic!("not a mismatch: {err}");
        };
        let mut problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        assert_eq!(
            problems,
            [
                "rule `decoder.*` matches no tensor in the file",
                "tensor `classifier.0.bias` maps to `head.bias`, which is not in the model",
                "tensor `classifier.0.weight` maps to `head.weight`, which is not in the model",
                "tensor `classifier.2.bias`: expected shape [5], found [10] (loading into `fc2.bias`)",
                "tensor `classifier.2.weight`: expected shape [5, 128], found [10, 128] (loading into `fc2.weight`)",
            ]
        );
        assert_eq!(p, before);
    }
}

mod interop {
    use super::*;

    /// `python_written.safetensors`, written by `fixtures/make_safetensors.py`
    /// (an independent writer following the documented naming convention),
    /// loads completely: values, optimizer state, schedule, RNG, epoch.
    #[test]
    fn a_checkpoint_written_by_another_implementation_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/python_written.safetensors"
        );
        let layout =
            ParamLayout::from_specs([("w.weight", &[2, 3][..]), ("w.bias", &[2][..])]).unwrap();
        let bufs = ParamLayout::from_specs([("bn.running_var", &[2][..])]).unwrap();
        let mut p = Params::new(layout, bufs).unwrap();
        let st = checkpoint::load(path, &mut p).unwrap();
        assert_eq!(p.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, -0.5]);
        assert_eq!(p.buffers, [1.0, 1.0]);
        let o = st.optim.unwrap();
        assert_eq!((o.kind.as_str(), o.step), ("adam", 12));
        assert_eq!(o.vectors[0].0, "exp_avg");
        assert_eq!(o.vectors[0].1, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]);
        assert_eq!(o.vectors[1].0, "exp_avg_sq");
        let s = st.schedule.unwrap();
        assert_eq!((s.step, s.best, s.bad_epochs), (12, Some(0.5), 1));
        assert_eq!(
            st.rng,
            Some(Rng {
                seed: 7,
                counter: 1234
            })
        );
        assert_eq!(st.epoch, 3);
        assert_eq!(st.user["run"], "fuzz");
        let mut opt = Optim::adam();
        opt.load_state(o).unwrap();
        opt.step(&mut p, 0.1).unwrap();
        assert_eq!(opt.steps(), 13);
    }

    /// `python_dtypes.safetensors` holds F16, BF16 and F64 tensors (packed
    /// by Python's `struct`): a converting partial load reads them exactly
    /// (F64 rounded to f32); a plain one names each tensor and its dtype.
    #[test]
    fn half_bfloat_and_double_tensors_convert_on_request() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/python_dtypes.safetensors"
        );
        let layout = ParamLayout::from_specs([
            ("h.weight", &[2, 3][..]),
            ("b.weight", &[2][..]),
            ("d.bias", &[2][..]),
        ])
        .unwrap();
        let mut p = Params::new(layout, ParamLayout::new()).unwrap();
        let spec = PartialLoad::new()
            .rule("half.*", "h.*")
            .rule("bf.*", "b.*")
            .rule("dbl.*", "d.*");
        let err = checkpoint::load_partial(path, &mut p, &spec).unwrap_err();
        let ToolkitError::Mismatch { problems, .. } = &err else {
            panic!("not a mismatch: {err}");
        };
        let mut problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        assert_eq!(
            problems,
            [
                "tensor `bf.weight`: dtype BF16, expected F32",
                "tensor `dbl.bias`: dtype F64, expected F32",
                "tensor `half.weight`: dtype F16, expected F32",
            ]
        );
        checkpoint::load_partial(path, &mut p, &spec.converting()).unwrap();
        assert_eq!(
            p.get("h.weight").unwrap(),
            [1.0, -2.0, 0.5, 2f32.powi(-14), 2f32.powi(-24), 65504.0]
        );
        assert_eq!(p.get("b.weight").unwrap(), [1.0, -3.140625]);
        assert_eq!(p.get("d.bias").unwrap(), [0.1f64 as f32, 1e-3f64 as f32]);
    }
}
