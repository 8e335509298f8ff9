// `exact = true` where the window does not divide the input.
kiln::network! {
    pub network Net(x: [1, 28, 28]) -> [10] {
        x.conv2d(4, k = 3, s = 2, exact = true).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
