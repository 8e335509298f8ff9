// `concat` of feature maps of different heights.
kiln::network! {
    pub network Net(x: [3, 32, 32]) -> [10] {
        let a = x.conv2d(8, k = 3, p = 1);
        let b = x.conv2d(8, k = 3);
        concat([a, b], axis = 0).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
