// A linear layer on a rank-3 tensor (no `flatten` before it).
kiln::network! {
    pub network Net(x: [1, 28, 28]) -> [10] {
        x.conv2d(4, k = 3).linear(10)
    }
}

fn main() {
    let _ = Net;
}
