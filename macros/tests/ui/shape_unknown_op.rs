// An op that does not exist.
kiln::network! {
    pub network Net(x: [784]) -> [10] {
        x.lienar(10)
    }
}

fn main() {
    let _ = Net;
}
