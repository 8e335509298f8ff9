//! A binary whose build time is measured: LeNet5 through `kiln::network!`.
//! It constructs the network and runs one forward pass, so that the
//! generated code is compiled in full (unused items would be left out).

kiln::network!("models/lenet5.yaml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = LeNet5::new(&init, 1, 1)?;
    let x = vec![0.5f32; LeNet5::INPUT_LEN];
    let y = net.forward(&x)?;
    println!(
        "LeNet5: {} parameters, first output {}",
        LeNet5::PARAM_COUNT,
        y[0]
    );
    Ok(())
}
