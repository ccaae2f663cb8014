// An interface trait takes no generics.
#[tether::interface(name = "kv")]
pub trait Kv<T> {}

fn main() {}
