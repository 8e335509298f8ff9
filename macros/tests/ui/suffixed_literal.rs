// An attribute of the wrong literal kind: a typed integer.
kiln::network! {
    pub network Net(x: [784]) -> [10] {
        x.linear(10u32)
    }
}

fn main() {
    let _ = Net;
}
