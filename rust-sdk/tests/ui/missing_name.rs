// `#[tether::interface]` needs the interface's name.
#[tether::interface(versions = [1])]
pub trait Kv {}

fn main() {}
