// A conv whose input has fewer channels than the layer before produced:
// `groups` must divide the input channels.
kiln::network! {
    pub network Net(x: [3, 32, 32]) -> [10] {
        x.conv2d(6, k = 5).conv2d(16, k = 5, groups = 4).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
