// A declared output that the body does not produce.
kiln::network! {
    pub network Net(x: [784]) -> (logits: [10], features: [32]) {
        let features = x.linear(32);
        features.linear(10)
    }
}

fn main() {
    let _ = Net;
}
