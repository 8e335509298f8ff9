//! A binary whose build time is measured: ResNet-50 through `kiln::network!`.

kiln::network!("models/resnet50.yaml");

fn main() {
    println!("ResNet50: {} parameters", ResNet50::PARAM_COUNT);
}
