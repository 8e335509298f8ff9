//! A binary whose build time is measured: LeNet-5 through `kiln::network!`.

kiln::network!("models/lenet5.yaml");

fn main() {
    println!("LeNet5: {} parameters", LeNet5::PARAM_COUNT);
}
