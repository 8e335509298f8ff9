// An attribute of a type the language lacks: a character.
kiln::network! {
    pub network Net(x: [1, 8, 8]) -> [10] {
        x.conv2d(4, k = 3, p = 's').flatten().linear(10)
    }
}

fn main() {
    let _ = Net;
}
