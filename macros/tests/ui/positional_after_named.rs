// A positional argument after a named one.
kiln::network! {
    pub network Net(x: [1, 28, 28]) -> [10] {
        x.conv2d(out = 6, 5).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
