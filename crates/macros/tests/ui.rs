//! Compile-fail tests: misuse of `#[cachier]` gives a clear error at the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
