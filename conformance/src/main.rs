//! The conformance judge (being written).
fn main() {}
