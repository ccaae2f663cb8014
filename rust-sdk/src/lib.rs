//! Tether for Rust: the connection both roles use, and the SDK for writing plugins.
//!
//! - [`Connection`] runs one session over any `AsyncRead`/`AsyncWrite` pair; [`Peer`] makes
//!   calls ([`Peer::call`]), sends notifications, serves handles; a [`Service`] (for example a
//!   [`Router`]) answers the other side's requests. The host crate is built on it.
//! - `#[tether::interface]` turns one trait declaration into the trait a plugin implements, a
//!   server (`KvServer`) and a typed client (`KvClient`); [`interfaces`] declares the reference
//!   interfaces that way.
//! - [`Plugin`] serves interfaces on stdin/stdout: cookie check, stdout protection, version
//!   negotiation, logs forwarded as `$/log` through `tracing`.
//!
//! A whole plugin:
//!
//! ```no_run
//! use tether::interfaces::{Kv, KvServer};
//! use tether::spec::interfaces::kv;
//! use tether::spec::Empty;
//! use tether::Error;
//!
//! #[derive(Default)]
//! struct Store(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);
//!
//! impl Kv for Store {
//!     async fn put(&self, p: kv::PutParams) -> Result<Empty, Error> {
//!         self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(p.key, p.value.into_vec());
//!         Ok(Empty {})
//!     }
//!     async fn get(&self, p: kv::KeyParams) -> Result<kv::GetResult, Error> {
//!         let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
//!         let value = map.get(&p.key).ok_or_else(|| kv::key_not_found(&p.key))?;
//!         Ok(kv::GetResult { value: value.clone().into() })
//!     }
//!     async fn delete(&self, p: kv::KeyParams) -> Result<kv::DeleteResult, Error> {
//!         let existed = self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&p.key).is_some();
//!         Ok(kv::DeleteResult { existed })
//!     }
//! }
//!
//! fn main() {
//!     tether::Plugin::new("kv-rust", "0.1.0").interface(KvServer::new(Store::default())).serve()
//! }
//! ```
//!
//! And the calling side, over any stream (here an in-memory pipe to that plugin's server):
//!
//! ```
//! # use tether::{Connection, Options, Router};
//! # use tether::interfaces::KvClient;
//! # async fn demo(peer: tether::Peer) -> Result<(), tether::CallError> {
//! let kv = KvClient::new(peer);
//! kv.put(&tether::spec::interfaces::kv::PutParams { key: "a".into(), value: b"1".to_vec().into() }).await?;
//! let got = kv.get(&tether::spec::interfaces::kv::KeyParams { key: "a".into() })
//!     .timeout(std::time::Duration::from_secs(1))
//!     .await?;
//! assert_eq!(&got.value[..], b"1");
//! # Ok(()) }
//! ```

// The code `#[tether::interface]` generates names `::tether`, also inside this crate.
extern crate self as tether;

mod client;
mod connection;
pub mod interfaces;
mod log;
mod plugin;
pub mod server;
mod stdio;

pub use crate::client::{Client, Remote};
pub use crate::connection::{
    Call, CallError, CloseKind, CloseReason, Connection, Event, Handled, Options, Peer, Reply, ReplyFuture,
    RequestContext, Service,
};
pub use crate::log::LogLayer;
pub use crate::plugin::{Plugin, PluginService};
pub use crate::server::{Error, InterfaceServer, Router};
pub use serde_json::value::RawValue;
pub use tether_macros::interface;
/// The protocol's wire types (the `tether-spec` crate).
pub use tether_spec as spec;
pub use tokio_util::sync::CancellationToken;
