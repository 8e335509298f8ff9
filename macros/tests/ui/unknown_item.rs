// An item keyword that is not `block`, `network` or `loss`.
kiln::network! {
    netwrk LeNet(x: [1, 28, 28]) -> [10] { x.flatten().linear(10) }
}

fn main() {}
