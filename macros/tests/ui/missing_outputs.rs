// A network without `-> outputs`.
kiln::network! {
    pub network Net(x: [784]) {
        x.linear(10)
    }
}

fn main() {
    let _ = Net;
}
