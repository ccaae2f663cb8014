//! Launch, call, supervise and stop Tether plugins: the host side of the protocol
//! (`spec/SPEC.md`).
//!
//! A [`PluginBuilder`] says what to run (program, arguments, environment, working directory),
//! which interfaces and versions to offer, and the limits (start timeout, call timeout,
//! shutdown grace period, frame size). [`PluginBuilder::start`] spawns the plugin in its own
//! process group, checks its SHA-256 when pinned, performs the handshake and returns a
//! [`Plugin`]: what was negotiated, typed clients ([`Plugin::client`]), raw calls
//! ([`Plugin::call`]), host objects served as handles ([`Plugin::serve_handle`]), its exit
//! ([`Plugin::exited`]) and its end ([`Plugin::shutdown`]).
//!
//! ```no_run
//! use tether::interfaces::KvClient;
//! use tether::spec::interfaces::kv;
//! use tether_host::Plugin;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = Plugin::builder("target/debug/examples/kv").interface(kv::NAME, [1, 2]).start().await?;
//! let store = plugin.client::<KvClient>()?;
//! store.put(&kv::PutParams { key: "hello".into(), value: b"world".to_vec().into() }).await?;
//! let got = store.get(&kv::KeyParams { key: "hello".into() }).await?;
//! assert_eq!(&got.value[..], b"world");
//! let report = plugin.shutdown().await;
//! assert!(report.exit.success());
//! # Ok(()) }
//! ```
//!
//! What the host guarantees, whatever the plugin does:
//!
//! - **Logs**: `$/log` notifications and every stderr line become `tracing` events (target
//!   [`LOG_TARGET`]) with the plugin's name in the `plugin` field; bytes on stdout that are not
//!   frames become a warning that shows them, and the session goes on (SPEC.md §2.6, §8).
//!   Nothing a plugin writes is kept but the last lines of stderr, bounded by
//!   [`STDERR_TAIL_LINES`] and [`STDERR_TAIL_BYTES`].
//! - **Crashes**: when the plugin exits, every pending call fails at once with
//!   [`Error::Exited`] (or, through a typed client, a closed-session error whose reason says the
//!   same), carrying the exit status and the last lines of stderr.
//! - **No orphans**: the plugin runs in its own process group, killed when the plugin exits,
//!   when the [`Plugin`] is dropped, and at the end of a shutdown; on Linux the plugin is also
//!   killed when the host dies (`PR_SET_PDEATHSIG`, tied to the thread that started it).
//! - **Shutdown**: `tether/shutdown`, close stdin, wait the grace period, SIGTERM, wait again,
//!   SIGKILL to the group ([`Plugin::shutdown`] says which step ended it).
//!
//! Unix first. On Windows the process group's equivalent is a job object (process-wrap's
//! `JobObject`), and there is no SIGTERM step; this crate does not implement them yet.
//!
//! The `tether-test-plugin` binary of this crate is test-only: a plugin that breaks the protocol
//! on purpose, for the integration tests.

mod builder;
mod error;
mod exit;
mod logs;
mod plugin;
mod process;
mod stderr;

pub use crate::builder::{PluginBuilder, DEFAULT_GRACE_PERIOD, DEFAULT_START_TIMEOUT};
pub use crate::error::Error;
pub use crate::exit::{ExitInfo, ShutdownReport, Stopped};
pub use crate::logs::LOG_TARGET;
pub use crate::plugin::Plugin;
pub use crate::process::sha256_file;
pub use crate::stderr::{STDERR_TAIL_BYTES, STDERR_TAIL_LINES};

// The README's Rust examples compile as doctests of this crate, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
