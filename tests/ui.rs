//! Compile-fail tests (trybuild): what the type system must refuse.
//!
//! Regenerate the expected messages with `TRYBUILD=overwrite cargo test --test ui`
//! after a compiler upgrade changes their wording, and review the diff.

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
