//! The `kv` reference plugin's store (SPEC.md §9.1, §9.2), shared by the `kv` example process
//! (`rust-sdk/examples/kv.rs`) and the `kv` plugin library (`rust-sdk/examples-cdylib/kv/`):
//! one source, built both ways.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;

use std::sync::{Mutex, MutexGuard, PoisonError};
use tether::interfaces::Kv;
use tether::spec::interfaces::kv::{
    key_not_found, put_progress_steps, DeleteResult, GetResult, KeyParams, PutParams,
};
use tether::spec::{Bytes, Empty};
use tether::{Error, RequestContext};

pub(crate) enum Store {
    /// Values as received: with attachments a value shares the frame's buffer, and a get
    /// answers with the same buffer, so a large value is never copied here. A plain mutex: it is
    /// never held across an `.await`.
    Memory(Mutex<HashMap<String, Bytes>>),
    Files(PathBuf),
}

impl Kv for Store {
    async fn put(&self, p: PutParams, cx: RequestContext) -> Result<Empty, Error> {
        tracing::debug!(key = %p.key, bytes = p.value.len(), "put");
        // Progress in bytes stored, in the steps SPEC.md §9.1 fixes, when the caller asked.
        let len = p.value.len() as u64;
        let steps = if cx.wants_progress() { put_progress_steps(len) } else { Vec::new() };
        match self {
            Store::Memory(map) => {
                // Kept as received (no copy): the steps count bytes accepted.
                locked(map).insert(p.key, p.value);
                for done in steps {
                    cx.progress(done, Some(len), None);
                }
            }
            Store::Files(dir) => {
                // Written in the steps, so that progress follows the disk.
                let mut file = std::fs::File::create(dir.join(file_name(&p.key)))?;
                let bytes: &[u8] = &p.value.0;
                let mut written = 0usize;
                for done in steps {
                    let to = usize::try_from(done).unwrap_or(bytes.len()).min(bytes.len());
                    file.write_all(bytes.get(written..to).unwrap_or_default())?;
                    written = to;
                    cx.progress(done, Some(len), None);
                }
                file.write_all(bytes.get(written..).unwrap_or_default())?;
            }
        }
        Ok(Empty {})
    }

    async fn get(&self, p: KeyParams) -> Result<GetResult, Error> {
        let value = match self {
            Store::Memory(map) => locked(map).get(&p.key).cloned(),
            Store::Files(dir) => std::fs::read(dir.join(file_name(&p.key))).ok().map(Bytes::from),
        };
        let value = value.ok_or_else(|| key_not_found(&p.key))?;
        Ok(GetResult { value })
    }

    async fn delete(&self, p: KeyParams) -> Result<DeleteResult, Error> {
        let existed = match self {
            Store::Memory(map) => locked(map).remove(&p.key).is_some(),
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

/// The plugin: `kv` versions 1 and 2 over `store`.
pub(crate) fn plugin(store: Store) -> tether::Plugin {
    tether::Plugin::new("kv-rust", env!("CARGO_PKG_VERSION"))
        .interface(tether::interfaces::KvServer::new(store))
}

/// The map, locked; a handler that panicked while holding it left it consistent (each use is a
/// single insert, get or remove).
fn locked(map: &Mutex<HashMap<String, Bytes>>) -> MutexGuard<'_, HashMap<String, Bytes>> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}
