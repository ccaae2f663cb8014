// The first argument is `&self`.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(params: Empty) -> Result<Empty, tether::Error>;
}

fn main() {}
