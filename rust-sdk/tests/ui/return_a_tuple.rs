// A method returns `Result<ResultType, tether::Error>`, not a tuple.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self, params: Empty) -> (Empty, u32);
}

fn main() {}
