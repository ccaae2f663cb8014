//! The `kv` reference plugin (SPEC.md §9.1, §9.2): versions 1 and 2, in memory, or persisted to
//! `kv_<key>` files in the directory given as the first argument (as go-plugin's KV example).
//!
//! Run by a host with the reference cookie: `TETHER_MAGIC_COOKIE=... kv [DIR]`.

use std::collections::HashMap;
use std::path::PathBuf;

use tether::interfaces::{Kv, KvServer};
use tether::spec::interfaces::kv::{key_not_found, DeleteResult, GetResult, KeyParams, PutParams};
use tether::spec::Empty;
use tether::Error;
use tokio::sync::Mutex;

enum Store {
    Memory(Mutex<HashMap<String, Vec<u8>>>),
    Files(PathBuf),
}

impl Kv for Store {
    async fn put(&self, p: PutParams) -> Result<Empty, Error> {
        tracing::debug!(key = %p.key, bytes = p.value.len(), "put");
        match self {
            Store::Memory(map) => drop(map.lock().await.insert(p.key, p.value.into_vec())),
            Store::Files(dir) => std::fs::write(dir.join(file_name(&p.key)), &p.value.0)?,
        }
        Ok(Empty {})
    }

    async fn get(&self, p: KeyParams) -> Result<GetResult, Error> {
        let value = match self {
            Store::Memory(map) => map.lock().await.get(&p.key).cloned(),
            Store::Files(dir) => std::fs::read(dir.join(file_name(&p.key))).ok(),
        };
        let value = value.ok_or_else(|| key_not_found(&p.key))?;
        Ok(GetResult { value: value.into() })
    }

    async fn delete(&self, p: KeyParams) -> Result<DeleteResult, Error> {
        let existed = match self {
            Store::Memory(map) => map.lock().await.remove(&p.key).is_some(),
            Store::Files(dir) => std::fs::remove_file(dir.join(file_name(&p.key))).is_ok(),
        };
        Ok(DeleteResult { existed })
    }
}

/// `kv_<key>`, with every byte but ASCII letters, digits, `-` and `_` written as `%XX`, so that
/// any key is one file name inside the directory.
fn file_name(key: &str) -> String {
    key.bytes().fold("kv_".to_owned(), |mut name, b| {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
        name
    })
}

fn main() {
    let store = match std::env::args_os().nth(1) {
        Some(dir) => Store::Files(dir.into()),
        None => Store::Memory(Mutex::default()),
    };
    tether::Plugin::new("kv-rust", env!("CARGO_PKG_VERSION")).interface(KvServer::new(store)).serve()
}
