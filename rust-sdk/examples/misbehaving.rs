//! A plugin that misbehaves on purpose, for the SDK's tests: its `kv.put` prints to stdout and
//! starts a child process that writes to its inherited stdout; a put of the key `panic` panics.
//! None of it may corrupt the frames on the protocol's stdout.

use tether::interfaces::{Kv, KvServer};
use tether::spec::interfaces::kv::{key_not_found, DeleteResult, GetResult, KeyParams, PutParams};
use tether::spec::Empty;
use tether::Error;

struct Noisy;

impl Kv for Noisy {
    async fn put(&self, p: PutParams, _cx: tether::RequestContext) -> Result<Empty, Error> {
        println!("stray output from a handler: {}", p.key);
        let status =
            std::process::Command::new("sh").args(["-c", "echo stray output from a child"]).status()?;
        assert!(p.key != "panic", "a panicking handler (child status {status})");
        Ok(Empty {})
    }

    async fn get(&self, p: KeyParams) -> Result<GetResult, Error> {
        Err(key_not_found(&p.key).into())
    }

    async fn delete(&self, _: KeyParams) -> Result<DeleteResult, Error> {
        Ok(DeleteResult { existed: false })
    }
}

fn main() {
    tether::Plugin::new("misbehaving", env!("CARGO_PKG_VERSION")).interface(KvServer::new(Noisy)).serve()
}
