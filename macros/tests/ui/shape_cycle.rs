// A tensor used before the step that defines it.
kiln::network! {
    pub network Net(x: [16]) -> [16] {
        let a = b.relu();
        let b = a.linear(16);
        b
    }
}

fn main() {
    let _ = Net;
}
