// Versions are integer literals.
const V: u32 = 1;

#[tether::interface(name = "kv", versions = [V])]
pub trait Kv {}

fn main() {}
