//! A test-only in-process plugin library (`tether-host`'s `tests/in_process.rs`): a `kv` whose
//! `put` of the key `panic` panics, of the key `slow` answers after a timer (the slow path: the
//! answer comes from the instance's thread), of the key `hang` waits until it is cancelled and
//! logs that it was, and, when `TETHER_TEST_LIBRARY_ABI` is set in the host's
//! environment, an entry that returns a table of that ABI version instead.

use std::ffi::c_void;

use tether::interfaces::{Kv, KvServer};
use tether::spec::abi::{Message, PluginTableV2, SendToHostFn, TABLE_V2_SIZE};
use tether::spec::interfaces::kv::{key_not_found, DeleteResult, GetResult, KeyParams, PutParams};
use tether::spec::Empty;
use tether::Error;

struct Panicky;

impl Kv for Panicky {
    async fn put(&self, p: PutParams, cx: tether::RequestContext) -> Result<Empty, Error> {
        assert!(p.key != "panic", "a panicking in-process handler");
        match p.key.as_str() {
            "slow" => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            "hang" => {
                cx.token().cancelled().await;
                tracing::warn!("the hanging put was cancelled");
                return Err(Error::new(1, "cancelled"));
            }
            _ => {}
        }
        Ok(Empty {})
    }

    async fn get(&self, p: KeyParams) -> Result<GetResult, Error> {
        Err(key_not_found(&p.key).into())
    }

    async fn delete(&self, _: KeyParams) -> Result<DeleteResult, Error> {
        Ok(DeleteResult { existed: false })
    }
}

fn plugin() -> tether::Plugin {
    tether::Plugin::new("test-library", env!("CARGO_PKG_VERSION")).interface(KvServer::new(Panicky))
}

extern "C" fn refuse_open(_: *mut c_void, _: SendToHostFn) -> *mut c_void {
    std::ptr::null_mut()
}
extern "C" fn refuse_send(_: *mut c_void, _: *const Message) -> i32 {
    -1
}
extern "C" fn ignore_close(_: *mut c_void) {}

/// Tables of other ABI versions (0, and 1: the framed byte stream of the first in-process ABI),
/// which a host must refuse before it calls anything in them.
static OTHER_VERSIONS: [PluginTableV2; 2] = [
    PluginTableV2 {
        abi_version: 0,
        size: TABLE_V2_SIZE,
        open: refuse_open,
        send_to_plugin: refuse_send,
        close: ignore_close,
    },
    PluginTableV2 {
        abi_version: 1,
        size: TABLE_V2_SIZE,
        open: refuse_open,
        send_to_plugin: refuse_send,
        close: ignore_close,
    },
];

/// The entry symbol, by hand rather than through `tether::export_plugin!`, to return a table
/// of another version on demand.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn tether_plugin_entry() -> *const PluginTableV2 {
    match std::env::var("TETHER_TEST_LIBRARY_ABI").ok().as_deref() {
        Some("0") => &OTHER_VERSIONS[0],
        Some("1") => &OTHER_VERSIONS[1],
        _ => tether::__in_process::entry(plugin),
    }
}
