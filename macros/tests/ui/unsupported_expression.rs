// Indexing is Rust, not part of the model language.
kiln::network! {
    pub network Net(x: [784]) -> [10] {
        x[0].linear(10)
    }
}

fn main() {
    let _ = Net;
}
