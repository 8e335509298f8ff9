// An output whose shape differs from the declared one.
kiln::network! {
    pub network Net(x: [784]) -> logits: [10] {
        x.linear(32).relu().linear(12)
    }
}

fn main() {
    let _ = Net;
}
