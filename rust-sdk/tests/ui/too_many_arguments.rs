// A method takes `&self`, params and optionally the context: nothing more.
use tether::spec::Empty;

#[tether::interface(name = "kv")]
pub trait Kv {
    async fn put(&self, params: Empty, cx: tether::RequestContext, extra: u32) -> Result<Empty, tether::Error>;
}

fn main() {}
