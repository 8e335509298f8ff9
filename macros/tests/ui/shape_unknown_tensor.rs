// A tensor name that is not bound.
kiln::network! {
    pub network Net(x: [784]) -> [10] {
        let h = x.linear(32).relu();
        add(h, skip).linear(10)
    }
}

fn main() {
    let _ = Net;
}
