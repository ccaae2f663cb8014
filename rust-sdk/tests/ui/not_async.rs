// Interface methods are `async fn`.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    fn put(&self, params: Empty) -> Result<Empty, tether::Error>;
}

fn main() {}
