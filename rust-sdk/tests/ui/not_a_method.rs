// An interface holds only async methods.
#[tether::interface(name = "kv")]
pub trait Kv {
    const LIMIT: usize;
}

fn main() {}
