//! Generated LeNet-5 inference against hand-checked properties (the
//! interpreter comparison lands with `kiln-interp`).

kiln::network!("models/lenet5.yaml");

#[test]
fn lenet5_forward_runs_and_is_deterministic() {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = LeNet5::new(&init, 7, 4);
    assert_eq!(LeNet5::PARAM_COUNT, 61_706);
    let x: Vec<f32> = (0..4 * LeNet5::INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let a = net.forward(&x).unwrap().to_vec();
    assert_eq!(a.len(), 4 * 10);
    let b = net.forward(&x).unwrap().to_vec();
    assert_eq!(a, b);
    // Each example alone gives the same output as in the batch.
    let one = net
        .forward(&x[LeNet5::INPUT_LEN..2 * LeNet5::INPUT_LEN])
        .unwrap()
        .to_vec();
    assert_eq!(&a[10..20], &one[..]);
    assert!(net.forward(&x[..5]).is_err());
}
