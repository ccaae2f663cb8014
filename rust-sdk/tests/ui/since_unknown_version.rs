// `#[since(n)]` names one of the declared versions.
use tether::spec::Empty;

#[tether::interface(name = "kv", versions = [1, 2])]
pub trait Kv {
    #[since(3)]
    async fn put(&self, params: Empty) -> Result<Empty, tether::Error>;
}

fn main() {}
