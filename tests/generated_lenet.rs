//! Generated inference against hand-checked properties: LeNet-5 is
//! deterministic and batch-independent, and a ResNet block's prepared
//! tensors follow every change of its parameters (the comparison with the
//! interpreter is `gen_vs_interp.rs`).

kiln::network!("models/lenet5.yaml");

#[test]
fn lenet5_forward_runs_and_is_deterministic() {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = LeNet5::new(&init, 7, 4).unwrap();
    assert_eq!(LeNet5::PARAM_COUNT, 61_706);
    let x: Vec<f32> = (0..4 * LeNet5::INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let a = net.forward(&x).unwrap().to_vec();
    assert_eq!(a.len(), 4 * 10);
    let b = net.forward(&x).unwrap().to_vec();
    assert_eq!(a, b);
    // Each example alone gives the same output as in the batch, up to the
    // rounding of a different GEMM path (matrix-vector at batch 1).
    let one = net
        .forward(&x[LeNet5::INPUT_LEN..2 * LeNet5::INPUT_LEN])
        .unwrap()
        .to_vec();
    for (p, q) in a[10..20].iter().zip(&one) {
        assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{p} vs {q}");
    }
    assert!(net.forward(&x[..5]).is_err());
}

mod block {
    kiln::network!("compiler/tests/data/basic_block.yaml");
}

/// Inference reads prepared tensors (batch norm folded into the
/// convolutions, packed weights); whatever changes the parameters or the
/// running statistics — `params_mut`, `load`, a training step — must make
/// the next `forward` compute them again.
#[test]
fn prepared_weights_follow_every_parameter_change() {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = block::BasicBlock::new(&init, 11, 2).unwrap();
    let x: Vec<f32> = (0..2 * block::BasicBlock::INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    let first = net.forward(&x).unwrap().to_vec();
    let dir = std::env::temp_dir().join(format!("kiln-prepared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("block.safetensors");
    net.save(&path, &Default::default()).unwrap();
    // A new running variance changes the folded weights.
    for v in net.params_mut().buffers.iter_mut() {
        *v = 1.0 + v.abs() * 3.0;
    }
    let changed = net.forward(&x).unwrap().to_vec();
    assert_ne!(
        first, changed,
        "params_mut: the prepared tensors were not recomputed"
    );
    net.load(&path).unwrap();
    assert_eq!(
        net.forward(&x).unwrap(),
        first,
        "load: the prepared tensors were not recomputed"
    );
    // A training step moves the weights and the running statistics.
    let mut opt = kiln::runtime::optim::Optim::sgd();
    net.train_step(&x, &[0, 2], &mut opt, 0.1).unwrap();
    let trained = net.forward(&x).unwrap().to_vec();
    let mut fresh = block::BasicBlock::with_params(net.params().clone(), 2);
    assert_eq!(
        trained,
        fresh.forward(&x).unwrap(),
        "train_step: stale prepared tensors"
    );
    assert_ne!(trained, first);
    std::fs::remove_dir_all(&dir).unwrap();
}
