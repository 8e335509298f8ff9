// A kernel size given as a string.
kiln::network! {
    pub network Net(x: [1, 28, 28]) -> [10] {
        x.conv2d(4, k = "five").flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
