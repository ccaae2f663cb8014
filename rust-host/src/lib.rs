//! Launch, call, supervise and stop Tether plugins: the host side of the protocol
//! (`spec/SPEC.md`).
//!
//! A [`PluginBuilder`] says what to run (program, arguments, environment, working directory),
//! which interfaces and versions to offer, and the limits (start timeout, call timeout,
//! shutdown grace period, frame size). [`PluginBuilder::start`] spawns the plugin in its own
//! process group, checks its SHA-256 when pinned, performs the handshake and returns a
//! [`PluginProcess`]: what was negotiated, three ways to call (a typed client,
//! [`PluginProcess::client`]; one typed call with an optional time-out,
//! [`PluginProcess::call`]; a raw call by name, [`PluginProcess::call_raw`]), host objects served
//! as handles ([`PluginProcess::serve_handle`]), its exit ([`PluginProcess::exited`]) and its end
//! ([`PluginProcess::shutdown`]). The host announces `attachments` and `streams` by default
//! ([`PluginBuilder::attachments`], [`PluginBuilder::streams`], [`PluginBuilder::stream_credit`]):
//! with a plugin that announces them too, `Bytes` values travel raw after the JSON and
//! [`stream`] fields carry streams with credit flow control (SPEC.md §2.8, §12).
//!
//! ```no_run
//! use tether_host::interfaces::KvClient;
//! use tether_host::spec::interfaces::kv;
//! use tether_host::PluginProcess;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = PluginProcess::builder("target/debug/examples/kv").interface(kv::NAME, [1, 2]).start().await?;
//! let store = plugin.client::<KvClient>()?;
//! store.put(&kv::PutParams { key: "hello".into(), value: b"world".to_vec().into() }).await?;
//! let got = store.get(&kv::KeyParams { key: "hello".into() }).await?;
//! assert_eq!(&got.value[..], b"world");
//! let report = plugin.shutdown().await;
//! assert!(report.exit.success());
//! # Ok(()) }
//! ```
//!
//! Plugins can also be found: [`discover`] scans a directory for manifests
//! (`tether-plugin.toml`, `NAME.tether.toml`) and [`Manifest::builder`] starts one with its
//! checksum pinned.
//!
//! On Linux, a plugin started [`PluginBuilder::handover_capable`] can be handed over to a
//! successor host process without a restart ([`PluginProcess::hand_over`], [`Handover`],
//! [`PluginProcess::adopt`]), over a Unix socket or across `exec`.
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
//!   same), carrying the exit status and the last lines of stderr as a value:
//!   [`Error::exit`], or [`ExitInfo::of`] for a typed client's error.
//! - **Deadlines**: no call outlives its time-out and `start()` does not outlive the start
//!   time-out; a plugin that closes its stdout and lives on is killed after the grace period.
//! - **No orphans**: the plugin runs in its own process group, killed when the plugin exits,
//!   when the [`PluginProcess`] is dropped, and at the end of a shutdown; when the host dies,
//!   however it dies, the plugin sees the end of its stdin and exits (SPEC.md §1.6). On Linux,
//!   [`PluginBuilder::parent_death_signal`] also has the kernel kill it then (`PR_SET_PDEATHSIG`,
//!   for a plugin that may stop reading; off by default, as it makes every start `fork` the host).
//! - **Shutdown**: `tether/shutdown`, close stdin, wait the grace period, SIGTERM, wait again,
//!   SIGKILL to the group ([`PluginProcess::shutdown`] says which step ended it).
//!
//! **Supervision**: [`Supervised`] runs a builder under a [`Supervision`]: a
//! [`RestartPolicy`] with exponential [`Backoff`] and a limit of restarts within a window
//! (then it gives up), a [`HealthCheck`] by `tether/ping`, an idle stop with a lazy start on
//! the next call; [`PluginEvent`]s through [`Supervised::subscribe`]. A [`PluginSet`] owns many
//! plugins by name, starts them in parallel and shuts them all down within one grace period.
//!
//! With [`Transport::Fds`] ([`PluginBuilder::transport`]) the frames travel on two extra pipes
//! the plugin inherits as descriptors 3 and 4, and its stdin, stdout and stderr stay the host's
//! terminal, or the [`ChildStdio`] given (SPEC.md §13); its stderr is then not captured.
//!
//! A plugin built as a library with `tether::export_plugin!` can instead be loaded into this
//! process ([`PluginProcess::library`], [`PluginBuilder::in_process`], or a manifest's
//! `library`): the same handle and clients, no isolation at all, and a call whose handler does
//! not wait is answered on the caller's thread (`rust-host/IN_PROCESS.md`).
//!
//! Unix first. On Windows the process group's equivalent is a job object (process-wrap's
//! `JobObject`), and there is no SIGTERM step; this crate does not implement them yet.
//!
//! The integration tests run `tether-test-plugin` (`rust-host/test-plugin/`), a test-only plugin
//! that breaks the protocol on purpose.

mod builder;
mod discovery;
mod error;
mod exit;
#[cfg(unix)]
mod fd_passing;
#[cfg(target_os = "linux")]
mod handover;
mod library;
mod logs;
mod manifest;
mod plugin_process;
mod plugin_set;
mod process;
mod stderr;
mod stdout_tail;
mod supervisor;
mod transport;

pub use crate::builder::{PluginBuilder, DEFAULT_GRACE_PERIOD, DEFAULT_START_TIMEOUT};
pub use crate::discovery::{discover, Discovery};
pub use crate::error::Error;
pub use crate::exit::{ExitInfo, ShutdownReport, Stopped};
#[cfg(unix)]
pub use crate::fd_passing::{receive_with_fds, send_with_fds, MAX_PASSED_FDS};
#[cfg(target_os = "linux")]
pub use crate::handover::{Handover, HandoverState, HANDOVER_ENV};
pub use crate::logs::LOG_TARGET;
pub use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE, MANIFEST_SUFFIX};
pub use crate::plugin_process::{PluginCall, PluginProcess};
pub use crate::plugin_set::PluginSet;
pub use crate::process::sha256_file;
pub use crate::stderr::{STDERR_TAIL_BYTES, STDERR_TAIL_LINES};
pub use crate::supervisor::{
    Backoff, HealthCheck, Lease, PluginEvent, RestartPolicy, Supervised, SupervisedCall, Supervision,
    EVENT_CAPACITY,
};
pub use crate::transport::{ChildStdio, Transport};

// The role-neutral connection the host is built on (`tether-core`), so that a host names only
// this crate: typed clients of the reference interfaces, handles, routers, errors.
/// The role-neutral error a handler returns (`tether_core::Error`); [`Error`] is the host's.
pub use tether_core::Error as HandlerError;
pub use tether_core::{
    interfaces, spec, stream, trace, Call, CallError, CallFuture, CancellationToken, Client, CloseKind,
    CloseReason, Event, Handled, InterfaceServer, Options, Peer, RawValue, Remote, Reply, ReplyFuture,
    RequestContext, Router, Service, Session, WeakPeer, HANDED_OVER,
};
/// Declares an interface for a host: the trait, a server (`KvServer`) for host objects served
/// as handles, and a typed client (`KvClient`). Same attribute as `tether::interface`.
pub use tether_macros::host_interface as interface;

/// What the code generated by `#[tether_host::interface]` names. Not an API.
#[doc(hidden)]
pub use tether_core::__private;

// This crate's README compiles as doctests, so its examples cannot rot. (The top README, which
// has a plugin too, is a doctest of the plugin SDK `tether`.)
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
