// Versions are positive integers.
#[tether::interface(name = "kv", versions = [0, 1])]
pub trait Kv {}

fn main() {}
