// An `if` is a value and needs an `else`.
kiln::network! {
    block shortcut(x, stride = 1) {
        if stride != 1 { x.conv2d(8, k = 1, s = stride) }
    }
    pub network Net(x: [8, 8, 8]) -> [10] {
        x.shortcut(stride = 2).flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
