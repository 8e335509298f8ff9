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

zoo!();
