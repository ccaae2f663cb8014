//! The `kv` reference plugin (SPEC.md §9.1, §9.2): versions 1 and 2, in memory, or persisted to
//! `kv_<key>` files in the directory given as the first argument (as go-plugin's KV example).
//!
//! A put of a large value reports its progress in bytes stored when the caller asks (SPEC.md §9.1,
//! §14): one `$/progress` per 16 KiB and one at the end.
//!
//! Run by a host with the reference cookie: `TETHER_MAGIC_COOKIE=... kv [DIR]`.

#[path = "shared/kv.rs"]
mod shared;

use shared::Store;
use std::sync::Mutex;

fn main() {
    let store = match std::env::args_os().nth(1) {
        Some(dir) => Store::Files(dir.into()),
        None => Store::Memory(Mutex::default()),
    };
    shared::plugin(store).serve()
}
