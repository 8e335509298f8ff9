// A zero in an input shape.
kiln::network! {
    pub network Net(x: [1, 0, 28]) -> [10] {
        x.flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
