// A method returns `Result<ResultType, tether::Error>`, not a bare type.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self, params: Empty) -> Empty;
}

fn main() {}
