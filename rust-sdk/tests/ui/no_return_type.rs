// A method returns `Result<ResultType, tether::Error>`.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self, params: Empty);
}

fn main() {}
