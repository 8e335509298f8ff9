// A loss that follows no network.
kiln::network! {
    loss cross_entropy;
    pub network Net(x: [784]) -> [10] {
        x.linear(10)
    }
}

fn main() {
    let _ = Net;
}
