// A named argument written with `:` instead of `=`.
kiln::network! {
    pub network Net(x: [1, 28, 28]) -> [10] {
        x.conv2d(6, k: 5).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
