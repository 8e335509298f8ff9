//! Compile-fail tests of `network!` (trybuild): one error per file in
//! `tests/ui/`, the expected `.stderr` beside it. Refresh with
//! `TRYBUILD=overwrite cargo test -p kiln-macros --test ui`, then review
//! the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
