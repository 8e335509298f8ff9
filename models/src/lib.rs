//! kiln's model zoo.
//!
//! Every model is a YAML file in this folder, compiled by the same compiler as
//! the `network!` macro. `ZOO` lists them with their sources, so tools and
//! tests can walk the zoo without touching the file system.

/// One model of the zoo: its name and its YAML source.
#[derive(Debug, Clone, Copy)]
pub struct ModelSource {
    /// The model's name, which is also its file stem (`lenet5`).
    pub name: &'static str,
    /// The YAML text.
    pub yaml: &'static str,
}

macro_rules! zoo {
    ($($name:literal),* $(,)?) => {
        /// Every model of the zoo, in a stable order.
        pub const ZOO: &[ModelSource] = &[
            $(ModelSource { name: $name, yaml: include_str!(concat!("../", $name, ".yaml")) }),*
        ];
    };
}

zoo!(
    "lenet5",
    "lenet5_wide",
    "mlp_mnist",
    "alexnet",
    "vgg11",
    "vgg16",
    "vgg19",
    "googlenet",
    "resnet18",
    "resnet18_cifar",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet20",
    "resnet56",
    "wide_resnet50_2",
    "resnext50_32x4d",
    "densenet121",
);

/// The zoo model called `name` (its file stem, `resnet18`), if there is one.
pub fn model(name: &str) -> Option<&'static ModelSource> {
    ZOO.iter().find(|m| m.name == name)
}
