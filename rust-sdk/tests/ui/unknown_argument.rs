// `#[tether::interface]` rejects an argument it does not know.
#[tether::interface(name = "kv", version = 1)]
pub trait Kv {}

fn main() {}
