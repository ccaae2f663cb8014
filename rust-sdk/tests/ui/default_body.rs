// Interface methods have no default body.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self, params: Empty) -> Result<Empty, tether::Error> {
        Ok(params)
    }
}

fn main() {}
