// The first argument is `&self`, not `&mut self`.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&mut self, params: Empty) -> Result<Empty, tether::Error>;
}

fn main() {}
