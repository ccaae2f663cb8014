// The second argument is the params.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self) -> Result<Empty, tether::Error>;
}

fn main() {}
