// `add` of tensors of different shapes.
kiln::network! {
    pub network Net(x: [784]) -> [10] {
        let a = x.linear(32);
        let b = x.linear(64);
        (a + b).linear(10)
    }
}

fn main() {
    let _ = Net;
}
