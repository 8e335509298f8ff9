//! The zoo against published numbers: every model checks, parameter counts
//! equal torchvision's, and multiply-adds equal the seeds' counting rule.
//!
//! Expected parameter counts are torchvision's `sum(p.numel() for p in
//! model.parameters())` (BN running statistics excluded), as listed in
//! issue 2; LeNet-5's per-layer numbers are the crash course's.

use kiln_compiler::frontend::parse_yaml;
use kiln_compiler::summary::Summary;
use kiln_models::ZOO;

/// Parses and checks the zoo model `name`; panics with the rendered errors if it fails.
fn summary(name: &str) -> Summary {
    let model = kiln_models::model(name).unwrap_or_else(|| panic!("`{name}` is not in the zoo"));
    let file = format!("models/{name}.yaml");
    let module = parse_yaml(model.yaml)
        .unwrap_or_else(|d| panic!("{}", kiln_compiler::render::render(&file, model.yaml, &d)));
    let mut nets = kiln_compiler::check(&module)
        .unwrap_or_else(|d| panic!("{}", kiln_compiler::render::render(&file, model.yaml, &d)));
    assert_eq!(nets.len(), 1, "{name}: one network per file");
    nets.remove(0).summary
}

/// Checks a model's total parameters and, when given, its multiply-adds.
fn check(name: &str, params: u64, macs: Option<u64>) {
    let s = summary(name);
    assert_eq!(s.total_params, params, "{name}: parameters");
    if let Some(m) = macs {
        assert_eq!(s.total_macs, m, "{name}: multiply-adds");
    }
}

#[test]
fn every_model_checks() {
    assert_eq!(ZOO.len(), 19);
    assert!(kiln_models::model("resnet18").is_some());
    assert!(kiln_models::model("resnet19").is_none());
    for m in ZOO {
        let s = summary(m.name);
        assert!(s.total_params > 0, "{}", m.name);
    }
}

#[test]
fn torchvision_parameter_counts() {
    check("alexnet", 61_100_840, None);
    check("vgg16", 138_357_544, None);
    check("resnet18", 11_689_512, Some(1_814_073_344));
    check("resnet50", 25_557_032, None);
    // The common CIFAR-10 ResNet-18 (3×3 stem, no max-pool, 10 classes,
    // 1×1 projection shortcuts), as `torchvision.models.resnet18` with that
    // stem and head counts it.
    check("resnet18_cifar", 11_173_962, None);
    check("resnext50_32x4d", 25_028_904, None);
    check("wide_resnet50_2", 68_883_240, None);
    check("densenet121", 7_978_856, None);
    check("googlenet", 6_624_904, None);
}

#[test]
fn lenet5_layers() {
    check("lenet5", 61_706, Some(416_520));
    let s = summary("lenet5");
    let weighted: Vec<(u64, Vec<usize>)> = s
        .layers
        .iter()
        .filter(|l| l.params > 0)
        .map(|l| (l.params, l.output_shape.clone()))
        .collect();
    assert_eq!(
        weighted,
        [
            (156, vec![6, 28, 28]),
            (2_416, vec![16, 10, 10]),
            (48_120, vec![120, 1, 1]),
            (10_164, vec![84]),
            (850, vec![10]),
        ]
    );
    let pools: Vec<Vec<usize>> = s
        .layers
        .iter()
        .filter(|l| l.op == "max_pool2d")
        .map(|l| l.output_shape.clone())
        .collect();
    assert_eq!(pools, [vec![6, 14, 14], vec![16, 5, 5]]);
}
