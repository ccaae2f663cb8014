//! Compile-fail tests of `#[tether::interface]`: each error the macro emits, with the message
//! and the span it points at (`tests/ui/*.stderr`; regenerate them with `TRYBUILD=overwrite`
//! after a deliberate change, and read the diff).

#[test]
fn each_macro_error_is_reported_where_it_is() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
