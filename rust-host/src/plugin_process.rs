//! [`PluginProcess`]: a running plugin, its negotiated interfaces, calls ([`PluginCall`]), and
//! its end.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::transport::ToPlugin;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tether_core::{
    Call, CallError, CloseKind, CloseReason, Event, Handled, Options, Peer, RequestContext, Service, Session,
};
use tether_spec::{
    codes, Empty, ErrorObject, HandleRef, Initialize, InitializeParams, InitializeResult, LogParams,
    NegotiatedInterface, NotificationMethod, PeerInfo, ProgressParams, RequestMethod, Shutdown,
    VersionMismatch, PROTOCOL_VERSION,
};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::builder::PluginBuilder;
use crate::error::Error;
use crate::exit::{ExitInfo, ShutdownReport, Stopped};
use crate::library;
use crate::logs;
use crate::process::{self, Ctl};
use crate::stderr::SharedTail;
use crate::stdout_tail::{Recording, StdoutTail};

/// How long a failed call without a deadline waits for the exit status of a plugin whose
/// session ended, to report it instead of a bare "connection closed". A call with a time-out
/// waits at most until its deadline.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);
/// The part of the start time-out kept, at most, to kill a plugin that did not complete the
/// handshake and collect its exit status, so that `start()` fails within its time-out.
const START_REPORT_RESERVE: Duration = Duration::from_millis(250);
/// How many of the last protocol warnings (bytes on stdout that are not frames, oversized
/// frames) a start error shows, and how long each may be.
const SEEN_WARNINGS: usize = 8;
const SEEN_WARNING_BYTES: usize = 1024;

/// A running plugin: a child process in its own process group and the Tether session over its
/// stdin and stdout.
///
/// Dropping it kills the plugin's process group; [`shutdown`](Self::shutdown) ends it
/// gracefully. Typed clients ([`client`](Self::client)) share the session and may outlive the
/// handle, but not the process: once the plugin is gone their calls fail.
pub struct PluginProcess {
    pub(crate) name: Arc<str>,
    pub(crate) peer: Peer,
    pub(crate) init: InitializeResult,
    pub(crate) pid: u32,
    pub(crate) grace: Duration,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) exit: watch::Receiver<Option<ExitInfo>>,
    pub(crate) stdin: ClosableStdin,
    pub(crate) tail: SharedTail,
    pub(crate) call_timeout: Option<Duration>,
    /// Set before the host kills or ends the plugin on purpose: its exit is then not a warning.
    pub(crate) deliberate: Arc<AtomicBool>,
    pub(crate) reaped: Arc<AtomicBool>,
    seen: Seen,
    /// The last bytes on stdout, kept until the handshake completes.
    stdout_tail: StdoutTail,
    /// What a hand-over needs: the capabilities the host announced, the frame size, and a copy
    /// of the read end of stderr (handover-capable plugins only).
    pub(crate) own_capabilities: tether_spec::Capabilities,
    pub(crate) max_frame_size: usize,
    pub(crate) stderr_copy: Option<std::os::fd::OwnedFd>,
    /// Set once the plugin was handed over: `Drop` then leaves it alone.
    pub(crate) handed_over: bool,
    /// The open instance when the plugin is a library loaded into the host
    /// ([`PluginBuilder::in_process`]); its `ctl` then closes the instance.
    library: Option<Arc<library::Instance>>,
}

impl std::fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("plugin", &self.init.plugin)
            .field("protocol_version", &self.init.protocol_version)
            .finish_non_exhaustive()
    }
}

impl PluginProcess {
    /// A builder for a plugin run as `program`; see [`PluginBuilder`].
    pub fn builder(program: impl Into<std::path::PathBuf>) -> PluginBuilder {
        PluginBuilder::new(program)
    }

    /// A builder for a plugin library loaded into this process ([`PluginBuilder::in_process`]):
    /// the same handle, clients and calls as a process, without its isolation.
    pub fn library(path: impl Into<std::path::PathBuf>) -> PluginBuilder {
        PluginBuilder::new(path).in_process(true)
    }

    pub(crate) async fn start(config: PluginBuilder) -> Result<PluginProcess, Error> {
        let name: Arc<str> = Arc::from(config.plugin_name());
        config.validate(&name)?;
        if config.in_process {
            return PluginProcess::start_library(config, name).await;
        }
        let pinned = process::check_pinned(&config, &name).await?;
        let spawned = process::spawn(&config, &name, pinned)?;
        // The start time-out counts from the plugin's start (as documented), not from before
        // the hash of a pinned program.
        let deadline = Instant::now() + config.start_timeout;
        let stdin = ClosableStdin::new(spawned.stdin);
        let eof = Arc::new(Notify::new());
        let seen = Seen::default();
        let deliberate = Arc::new(AtomicBool::new(false));
        let options = session_options(&name, config.max_frame_size, config.call_timeout, &eof, &seen);
        let service = HostService { name: name.clone() };
        let stdout_tail = StdoutTail::default();
        let stdout = Recording::new(spawned.stdout, stdout_tail.clone());
        let peer = Session::start(stdout, stdin.clone(), options, service).into_peer();
        tokio::spawn(watch_exit(ExitWatch {
            name: name.clone(),
            peer: peer.clone(),
            exit: spawned.exit.clone(),
            eof,
            grace: config.grace,
            ctl: spawned.ctl.clone(),
            deliberate: deliberate.clone(),
        }));

        let plugin = PluginProcess {
            name,
            peer,
            init: not_yet_initialized(),
            pid: spawned.pid,
            grace: config.grace,
            ctl: spawned.ctl,
            exit: spawned.exit,
            stdin,
            tail: spawned.tail,
            call_timeout: config.call_timeout,
            deliberate,
            reaped: spawned.reaped,
            seen,
            stdout_tail,
            own_capabilities: config.capabilities(),
            max_frame_size: config.max_frame_size,
            stderr_copy: spawned.stderr_copy,
            handed_over: false,
            library: None,
        };
        plugin.handshake(&config, deadline).await
    }

    /// Loads the library, opens an instance, and runs the same handshake over it.
    async fn start_library(config: PluginBuilder, name: Arc<str>) -> Result<PluginProcess, Error> {
        let deadline = Instant::now() + config.start_timeout;
        let path = config.program.clone();
        let library_error =
            |reason: String| Error::Library { plugin: name.to_string(), path: path.clone(), reason };
        // A pinned digest ([`PluginBuilder::sha256`], a manifest's `sha256`) is checked first, and
        // the file loaded is the one hashed (through its descriptor, kept open until loaded).
        let pinned = process::check_pinned(&config, &name).await?;
        let load_from = pinned.as_ref().map_or_else(|| path.clone(), process::Pinned::open_path);
        let library = library::load(&load_from).map_err(library_error)?;
        drop(pinned);
        let eof = Arc::new(Notify::new());
        let seen = Seen::default();
        let options = session_options(&name, config.max_frame_size, config.call_timeout, &eof, &seen);
        let service = HostService { name: name.clone() };
        let (instance, session) =
            library::Instance::open(&library, options, service).map_err(library_error)?;
        drop(library);
        let peer = session.into_peer();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(watch_library(LibraryWatch {
            name: name.clone(),
            peer: peer.clone(),
            instance: instance.clone(),
            eof,
            ctl: ctl_rx,
            exit: exit_tx,
        }));
        let plugin = PluginProcess {
            name,
            peer,
            init: not_yet_initialized(),
            // The plugin runs in the host's process: there is no process of its own to signal
            // (`reaped` keeps `Drop` from ever sending a signal), no stdin and no stderr.
            pid: std::process::id(),
            grace: config.grace,
            ctl,
            exit,
            stdin: ClosableStdin::closed(),
            tail: SharedTail::default(),
            call_timeout: config.call_timeout,
            deliberate: Arc::new(AtomicBool::new(true)),
            reaped: Arc::new(AtomicBool::new(true)),
            seen,
            stdout_tail: StdoutTail::default(),
            own_capabilities: config.capabilities(),
            max_frame_size: config.max_frame_size,
            // A library shares the host's process: nothing to hand over.
            stderr_copy: None,
            handed_over: false,
            library: Some(instance),
        };
        plugin.handshake(&config, deadline).await
    }

    async fn handshake(mut self, config: &PluginBuilder, deadline: Instant) -> Result<PluginProcess, Error> {
        let params = InitializeParams {
            protocol_versions: vec![PROTOCOL_VERSION],
            interfaces: config.interfaces.clone(),
            host: config.host.clone(),
            capabilities: config.capabilities(),
            max_frame_size: config.max_frame_size as u64,
            log_level: Some(config.log_level),
        };
        // The handshake gets the start time-out less a reserve in which a plugin that did not
        // complete it is killed and its exit collected: `start()` never outlives its time-out.
        let reserve = START_REPORT_RESERVE.min(config.start_timeout / 10);
        let timeout = deadline.saturating_duration_since(Instant::now() + reserve);
        let answer = self.peer.call::<Initialize>(&params).timeout(timeout).await;
        let result = match answer {
            Ok(result) => result,
            Err(CallError::Timeout(_)) => {
                if let Some(exit) = self.exit_within(Duration::ZERO).await {
                    return Err(Error::ExitedBeforeHandshake { plugin: self.name.to_string(), exit });
                }
                self.kill_on_purpose();
                let stderr_tail = match self.exit_until(deadline).await {
                    Some(exit) => exit.stderr_tail,
                    None => self.tail.lines(),
                };
                let mut seen = self.seen.lines();
                if let Some(bytes) = self.stdout_tail.shown() {
                    seen.push(format!("its last bytes on stdout: {bytes}"));
                }
                return Err(Error::StartTimeout {
                    plugin: self.name.to_string(),
                    timeout: config.start_timeout,
                    stderr_tail,
                    seen,
                    fds: config.transport == crate::transport::Transport::Fds,
                });
            }
            Err(CallError::Remote(error)) => return Err(self.refused(error)),
            Err(other) => {
                // The session ended (the plugin closed its stdout, or exited): the exit status
                // says more, if it comes before the deadline; a plugin still running is of no
                // use and is killed.
                let exit = match self.exit_until(deadline).await {
                    Some(exit) => Some(exit),
                    None => {
                        self.kill_on_purpose();
                        None
                    }
                };
                return Err(match exit {
                    Some(exit) => Error::ExitedBeforeHandshake { plugin: self.name.to_string(), exit },
                    None => Error::Handshake { plugin: self.name.to_string(), reason: other.to_string() },
                });
            }
        };
        if result.protocol_version != PROTOCOL_VERSION {
            return Err(Error::VersionMismatch {
                plugin: self.name.to_string(),
                interface: tether_spec::CORE_INTERFACE.to_owned(),
                host: vec![PROTOCOL_VERSION],
                plugin_versions: vec![result.protocol_version],
            });
        }
        for (interface, negotiated) in &result.interfaces {
            let offered = config.interfaces.get(interface);
            if !offered.is_some_and(|v| v.contains(&negotiated.version)) {
                return Err(Error::Handshake {
                    plugin: self.name.to_string(),
                    reason: format!(
                        "the plugin chose version {} of interface {interface}, which the host did not offer \
                         (offered: {:?})",
                        negotiated.version,
                        offered.cloned().unwrap_or_default()
                    ),
                });
            }
        }
        tracing::debug!(
            target: logs::LOG_TARGET,
            plugin = %self.name,
            version = %result.plugin.version,
            interfaces = ?result.interfaces.iter().map(|(n, i)| (n, i.version)).collect::<Vec<_>>(),
            "plugin started"
        );
        self.init = result;
        self.stdout_tail.stop();
        Ok(self)
    }

    fn refused(&self, error: ErrorObject) -> Error {
        if error.code == codes::UNSUPPORTED_VERSION {
            if let Some(m) =
                error.data.clone().and_then(|d| serde_json::from_value::<VersionMismatch>(d).ok())
            {
                return Error::VersionMismatch {
                    plugin: self.name.to_string(),
                    interface: m.interface,
                    host: m.host,
                    plugin_versions: m.plugin,
                };
            }
        }
        Error::Handshake {
            plugin: self.name.to_string(),
            reason: format!("tether/initialize answered {error}"),
        }
    }

    /// The plugin's name in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin process's id (also its process group's id on Unix).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The plugin's name and version, as it announced them.
    pub fn info(&self) -> &PeerInfo {
        &self.init.plugin
    }

    /// The negotiated core protocol version.
    pub fn protocol_version(&self) -> u32 {
        self.init.protocol_version
    }

    /// Every interface the plugin declared, with the chosen version and method schemas.
    pub fn interfaces(&self) -> &BTreeMap<String, NegotiatedInterface> {
        &self.init.interfaces
    }

    /// The whole answer to `tether/initialize`.
    pub fn initialize_result(&self) -> &InitializeResult {
        &self.init
    }

    /// One declared interface; an error naming those the plugin declares when it did not
    /// declare this one.
    pub fn interface(&self, name: &str) -> Result<&NegotiatedInterface, Error> {
        self.init.interfaces.get(name).ok_or_else(|| Error::InterfaceNotDeclared {
            plugin: self.name.to_string(),
            interface: name.to_owned(),
            declared: self.init.interfaces.iter().map(|(n, i)| (n.clone(), i.version)).collect(),
        })
    }

    /// A typed client (generated by `#[tether_core::interface]`) for an interface the plugin
    /// declared: `plugin.client::<KvClient>()?.get(...)`.
    pub fn client<C: tether_core::Client>(&self) -> Result<C, Error> {
        self.interface(C::INTERFACE)?;
        Ok(C::from_remote(tether_core::Remote::interface(self.peer.clone())))
    }

    /// The session, to serve handles ([`Peer::serve_handle`]) or make calls the other methods
    /// do not cover.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Serves a host object as a handle the plugin can call back (SPEC.md §6), for example the
    /// `adder` of `counter.put`. Scope it to the call that carries it with
    /// [`tether_core::Call::handle`], or revoke it with [`Peer::revoke_handle`].
    pub fn serve_handle(&self, server: impl tether_core::InterfaceServer) -> HandleRef {
        self.peer.serve_handle(server)
    }

    /// Calls a typed method (`process.call::<kv::Get>(&params).await`), with the builder's
    /// default time-out unless the call sets its own (`.timeout(d)`): when no answer comes in
    /// time, the call fails and `$/cancelRequest` is sent. For the methods of an interface, a
    /// typed client ([`client`](Self::client)) is handier.
    pub fn call<M: RequestMethod>(&self, params: &M::Params) -> PluginCall<'_, M::Result> {
        PluginCall {
            process: self,
            method: Cow::Borrowed(M::METHOD),
            call: self.peer.call::<M>(params),
            timeout: self.call_timeout,
            progress: false,
        }
    }

    /// Calls a method by name with JSON params (an object); the result is plain JSON. Same
    /// time-out rules as [`call`](Self::call).
    pub fn call_raw(&self, method: &str, params: serde_json::Value) -> PluginCall<'_, serde_json::Value> {
        PluginCall {
            process: self,
            method: Cow::Owned(method.to_owned()),
            call: self.peer.call_as(method.to_owned(), &params),
            timeout: self.call_timeout,
            progress: false,
        }
    }

    /// Turns a failed call into an error, with the exit status when the plugin is gone. A call
    /// that failed because the session ended waits for the exit status at most until its own
    /// deadline (`deadline`, when it has a time-out), or [`EXIT_REPORT_WAIT`] without one.
    async fn call_error(&self, method: &str, source: CallError, deadline: Option<Instant>) -> Error {
        if let Some(reason) = source.close_reason().filter(|r| &*r.message != tether_core::HANDED_OVER) {
            if let Some(exit) = reason.detail::<ExitInfo>() {
                return Error::Exited { plugin: self.name.to_string(), exit: exit.clone() };
            }
            let wait_until = Instant::now() + EXIT_REPORT_WAIT;
            let wait_until = deadline.map_or(wait_until, |d| d.min(wait_until));
            if let Some(exit) = self.exit_until(wait_until).await {
                return Error::Exited { plugin: self.name.to_string(), exit };
            }
        }
        Error::Call { plugin: self.name.to_string(), method: method.to_owned(), source: Box::new(source) }
    }

    /// Kills the process group on the host's own decision: the exit is not a warning.
    fn kill_on_purpose(&self) {
        self.deliberate.store(true, Ordering::SeqCst);
        let _ = self.ctl.send(Ctl::KillGroup);
    }

    /// Checks that the plugin answers (`tether/ping`).
    pub async fn ping(&self, timeout: Duration) -> Result<(), Error> {
        self.call::<tether_spec::Ping>(&Empty {}).timeout(timeout).await.map(|_| ())
    }

    /// Changes the least severe `$/log` level the plugin sends (`$/setLogLevel`).
    pub fn set_log_level(&self, level: tether_spec::LogLevel) -> Result<(), Error> {
        self.peer.notify::<tether_spec::SetLogLevel>(&tether_spec::SetLogLevelParams { level }).map_err(
            |source| Error::Call {
                plugin: self.name.to_string(),
                method: "$/setLogLevel".to_owned(),
                source: Box::new(source),
            },
        )
    }

    /// Waits for the plugin process to exit (by itself, a crash, or a shutdown) and says how.
    pub fn exited(&self) -> impl Future<Output = ExitInfo> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            match exit.wait_for(Option::is_some).await {
                Ok(info) => info.clone().unwrap_or_else(unknown_exit),
                Err(_) => unknown_exit(),
            }
        }
    }

    /// How the plugin exited, if it has.
    pub fn try_exited(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// The last lines of the plugin's stderr (at most 20 lines and 8 KiB).
    pub fn stderr_tail(&self) -> Vec<String> {
        self.tail.lines()
    }

    /// How many bytes of stderr the host keeps (bounded by 8 KiB, whatever the plugin writes).
    pub fn stderr_retained_bytes(&self) -> usize {
        self.tail.retained_bytes()
    }

    async fn exit_until(&self, deadline: Instant) -> Option<ExitInfo> {
        self.exit_within(deadline.saturating_duration_since(Instant::now())).await
    }

    async fn exit_within(&self, wait: Duration) -> Option<ExitInfo> {
        let mut exit = self.exit.clone();
        let waited =
            tokio::time::timeout(wait, async move { exit.wait_for(Option::is_some).await.ok()?.clone() });
        waited.await.ok().flatten()
    }

    /// Ends the plugin (SPEC.md §4.6): sends `tether/shutdown`, closes its stdin and waits the
    /// grace period for it to exit; then sends SIGTERM and waits the grace period again; then
    /// kills its process group with SIGKILL. A plugin that does not answer `tether/shutdown`
    /// within the grace period gets SIGTERM as soon as its stdin is closed. Says how it ended;
    /// in every case the process group is gone and the process reaped when this returns.
    pub async fn shutdown(self) -> ShutdownReport {
        self.end(self.grace).await
    }

    /// The steps of [`shutdown`](Self::shutdown), with `grace` for each wait, on a shared
    /// process (a supervisor's current incarnation, which leases may still hold).
    pub(crate) async fn end(&self, grace: Duration) -> ShutdownReport {
        let started = Instant::now();
        if let Some(exit) = self.try_exited() {
            return ShutdownReport { stopped: Stopped::AlreadyExited, exit, elapsed: started.elapsed() };
        }
        let asked = self.peer.call::<Shutdown>(&Empty {}).timeout(grace);
        let answered = tokio::select! {
            answer = asked => !matches!(answer, Err(CallError::Timeout(_))),
            _ = self.exited() => true,
        };
        self.stdin.close();
        if self.library.is_some() {
            // An in-process plugin's end of input is the closing of its instance.
            let _ = self.ctl.send(Ctl::Terminate);
        }
        let mut stopped = Stopped::Gracefully;
        // A plugin that did not answer `tether/shutdown` within the grace period gets SIGTERM at
        // once (SPEC.md §4.6); one that answered has the grace period to exit.
        let mut exit = match answered {
            true => self.exit_within(grace).await,
            false => self.try_exited(),
        };
        if exit.is_none() {
            stopped = Stopped::Terminated;
            self.deliberate.store(true, Ordering::SeqCst);
            let _ = self.ctl.send(Ctl::Terminate);
            exit = self.exit_within(grace).await;
        }
        let exit = match exit {
            Some(exit) => exit,
            None => {
                stopped = Stopped::Killed;
                self.kill_on_purpose();
                self.exited().await
            }
        };
        self.peer.close(format!("plugin {} was shut down ({})", self.name, exit.status_text()));
        tracing::debug!(target: logs::LOG_TARGET, plugin = %self.name, ?stopped, status = %exit.status_text(), "plugin stopped");
        ShutdownReport { stopped, exit, elapsed: started.elapsed() }
    }
}

impl PluginProcess {
    /// Kills the plugin's process group at once (SIGKILL), without a shutdown, and says how the
    /// plugin exited.
    pub async fn kill(self) -> ExitInfo {
        if let Some(exit) = self.try_exited() {
            return exit;
        }
        self.kill_on_purpose();
        self.exited().await
    }
}

impl PluginProcess {
    /// Kills the process group and waits for the exit, on a shared process.
    pub(crate) async fn kill_shared(&self) -> ExitInfo {
        if let Some(exit) = self.try_exited() {
            return exit;
        }
        self.kill_on_purpose();
        self.exited().await
    }

    /// Kills the process group at once, synchronously (see [`Drop`]).
    pub(crate) fn kill_now(&self) {
        if self.exit.borrow().is_none() {
            self.deliberate.store(true, Ordering::SeqCst);
            if !self.reaped.load(Ordering::SeqCst) {
                process::signal(self.pid, Ctl::KillGroup);
            }
            let _ = self.ctl.send(Ctl::KillGroup);
        }
    }
}

impl Drop for PluginProcess {
    /// Kills the plugin's process group (nothing happens when it has already exited).
    ///
    /// The signal is sent here, synchronously, not when the runtime next polls the supervisor:
    /// the plugin dies even if the runtime is blocked or shutting down. The supervisor still
    /// reaps it. (The check that the plugin was not reaped yet and the signal are two steps; the
    /// window in which its pid could be reused between them is a few instructions wide.)
    fn drop(&mut self) {
        // A plugin handed over to another host is no longer ours to kill.
        if !self.handed_over {
            self.kill_now();
        }
    }
}

fn unknown_exit() -> ExitInfo {
    ExitInfo { code: None, signal: None, stderr_tail: Vec::new() }
}

/// What [`watch_exit`] needs.
struct ExitWatch {
    name: Arc<str>,
    peer: Peer,
    exit: watch::Receiver<Option<ExitInfo>>,
    eof: Arc<Notify>,
    grace: Duration,
    ctl: mpsc::UnboundedSender<Ctl>,
    deliberate: Arc<AtomicBool>,
}

/// Ends the session when the plugin exits, failing every pending call with the exit status and
/// the last lines of stderr (as text, and as an [`ExitInfo`] attached to the close reason); and
/// when the plugin closed its stdout but lives on, after the grace period, killing its process
/// group: nothing it does can reach the host any more.
///
/// An exit is a warning unless the host ended the plugin on purpose (a kill, a drop, a shutdown
/// that escalated): then it is a debug event.
async fn watch_exit(watch: ExitWatch) {
    let ExitWatch { name, peer, mut exit, eof, grace, ctl, deliberate } = watch;
    let exited = async {
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(unknown_exit),
            Err(_) => unknown_exit(),
        }
    };
    tokio::pin!(exited);
    let info = tokio::select! {
        info = &mut exited => Some(info),
        () = eof.notified() => tokio::time::timeout(grace, &mut exited).await.ok(),
    };
    let reason = match info {
        Some(info) => {
            if info.success() || deliberate.load(Ordering::SeqCst) {
                tracing::debug!(target: logs::LOG_TARGET, plugin = %name, "plugin exited with {info}");
            } else {
                tracing::warn!(target: logs::LOG_TARGET, plugin = %name, "plugin exited with {info}");
            }
            CloseReason::new(CloseKind::EndOfInput, format!("plugin {name} exited with {info}"))
                .with_detail(info)
        }
        None => {
            logs::protocol_warning(
                &name,
                &format!("the plugin closed its stdout but still runs after {grace:?}: killing it"),
            );
            deliberate.store(true, Ordering::SeqCst);
            let _ = ctl.send(Ctl::KillGroup);
            CloseReason::new(CloseKind::EndOfInput, format!("plugin {name} closed its stdout (killed)"))
        }
    };
    peer.close_with(reason);
}

/// The session of a plugin adopted from another host (a hand-over), and the task that ends it
/// when the plugin exits.
pub(crate) struct Adopted {
    pub(crate) name: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) init: InitializeResult,
    pub(crate) own_capabilities: tether_spec::Capabilities,
    pub(crate) max_frame_size: usize,
    pub(crate) grace: Duration,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) resume: tether_core::Resume,
    pub(crate) stdin: ToPlugin,
    pub(crate) stdout: tokio::net::unix::pipe::Receiver,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) exit: watch::Receiver<Option<ExitInfo>>,
    pub(crate) tail: SharedTail,
    pub(crate) reaped: Arc<AtomicBool>,
}

impl PluginProcess {
    pub(crate) fn from_adopted(a: Adopted) -> PluginProcess {
        let stdin = ClosableStdin::new(a.stdin);
        let eof = Arc::new(Notify::new());
        let seen = Seen::default();
        let deliberate = Arc::new(AtomicBool::new(false));
        let options = session_options(&a.name, a.max_frame_size, a.call_timeout, &eof, &seen);
        let service = HostService { name: a.name.clone() };
        let peer = Session::resume(a.stdout, stdin.clone(), options, service, a.resume).into_peer();
        tokio::spawn(watch_exit(ExitWatch {
            name: a.name.clone(),
            peer: peer.clone(),
            exit: a.exit.clone(),
            eof,
            grace: a.grace,
            ctl: a.ctl.clone(),
            deliberate: deliberate.clone(),
        }));
        let stdout_tail = StdoutTail::default();
        stdout_tail.stop();
        PluginProcess {
            name: a.name,
            peer,
            init: a.init,
            pid: a.pid,
            grace: a.grace,
            ctl: a.ctl,
            exit: a.exit,
            stdin,
            tail: a.tail,
            call_timeout: a.call_timeout,
            deliberate,
            reaped: a.reaped,
            seen,
            stdout_tail,
            own_capabilities: a.own_capabilities,
            max_frame_size: a.max_frame_size,
            stderr_copy: None,
            handed_over: false,
            library: None,
        }
    }
}

/// What [`watch_library`] needs.
struct LibraryWatch {
    name: Arc<str>,
    peer: Peer,
    instance: Arc<library::Instance>,
    eof: Arc<Notify>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    exit: watch::Sender<Option<ExitInfo>>,
}

/// The in-process counterpart of [`watch_exit`]: closes the instance when the host ends it (a
/// shutdown, a kill, a drop of the [`PluginProcess`]) or when the plugin ends its stream by
/// itself; then reports the "exit" (status 0, no stderr: the plugin has no process) and ends the
/// session, failing what is pending with a reason that says which.
async fn watch_library(watch: LibraryWatch) {
    let LibraryWatch { name, peer, instance, eof, mut ctl, exit } = watch;
    let by_host = tokio::select! {
        _ = ctl.recv() => true,
        () = eof.notified() => false,
    };
    // Closing joins the plugin's thread, which may take its write grace: not on a runtime thread.
    let closing = instance.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    let info = ExitInfo { code: Some(0), signal: None, stderr_tail: Vec::new() };
    let _ = exit.send(Some(info.clone()));
    let text = match by_host {
        true => format!("in-process plugin {name} was closed by the host"),
        false => format!("in-process plugin {name} ended its session"),
    };
    tracing::debug!(target: logs::LOG_TARGET, plugin = %name, closed = instance.is_closed(), "{text}");
    peer.close_with(CloseReason::new(CloseKind::EndOfInput, text).with_detail(info));
}

/// The initialize answer of a session whose handshake has not run yet (replaced by the
/// plugin's own answer in `handshake`).
fn not_yet_initialized() -> InitializeResult {
    InitializeResult {
        protocol_version: 0,
        plugin: PeerInfo::new("", ""),
        capabilities: Default::default(),
        interfaces: BTreeMap::new(),
    }
}

/// The connection options of a plugin's session, however it was started (a process, a library,
/// an adopted hand-over): its frame limit, its default call time-out, and the events that feed
/// the start error's record of what was seen and the end-of-input signal.
fn session_options(
    name: &Arc<str>,
    max_frame_size: usize,
    call_timeout: Option<Duration>,
    eof: &Arc<Notify>,
    seen: &Seen,
) -> Options {
    let options = Options::new().max_frame_size(max_frame_size).close_on_eof(false).on_event({
        let name = name.clone();
        let eof = eof.clone();
        let seen = seen.clone();
        move |event| report_event(&name, &eof, &seen, event)
    });
    match call_timeout {
        Some(timeout) => options.default_timeout(timeout),
        None => options,
    }
}

fn report_event(name: &str, eof: &Notify, seen: &Seen, event: &Event) {
    match event {
        Event::Garbage { shown, reason } => {
            seen.push(format!("bytes on stdout that are not a frame ({reason}): {shown}"));
            logs::garbage(name, shown, &reason.to_string());
        }
        Event::EndOfInput => eof.notify_one(),
        // The end of a frame whose header the decoder already consumed: nothing to show (the
        // header itself is in the start error's last bytes of stdout).
        Event::Truncated { shown } if shown == "\"\"" => logs::protocol_warning(name, &event.to_string()),
        other => {
            let text = other.to_string();
            seen.push(text.clone());
            logs::protocol_warning(name, &text);
        }
    }
}

/// The last protocol warnings about what the plugin wrote on stdout (bounded in count and
/// size), for a start error to show what was seen.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<std::collections::VecDeque<String>>>);

impl Seen {
    fn push(&self, mut line: String) {
        if line.len() > SEEN_WARNING_BYTES {
            let mut cut = SEEN_WARNING_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == SEEN_WARNINGS {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

/// What the host serves on the session: `tether/ping`, and `$/log` notifications.
struct HostService {
    name: Arc<str>,
}

impl Service for HostService {
    fn request(&self, method: &str, _params: Box<RawValue>, _cx: RequestContext) -> Handled {
        match method {
            tether_spec::Ping::METHOD => Handled::ok(&Empty {}),
            _ => Handled::err(ErrorObject::method_not_found(method, "the host serves no such method")),
        }
    }

    fn notification(&self, method: &str, params: Box<RawValue>, _peer: &Peer) {
        if method == tether_spec::Log::METHOD {
            match serde_json::from_str::<LogParams>(params.get()) {
                Ok(params) => logs::plugin_log(&self.name, &params),
                Err(e) => logs::protocol_warning(&self.name, &format!("a malformed $/log notification: {e}")),
            }
        }
    }
}

/// The plugin's stdin, which the host closes to end the session (SPEC.md §4.6) while it goes on
/// reading stdout and stderr.
#[derive(Clone)]
pub(crate) struct ClosableStdin(Arc<Mutex<Option<ToPlugin>>>);

impl ClosableStdin {
    pub(crate) fn new(stdin: ToPlugin) -> Self {
        ClosableStdin(Arc::new(Mutex::new(Some(stdin))))
    }

    /// Takes the pipe out (for a hand-over); the host's writes fail from then on.
    pub(crate) fn take(&self) -> Option<ToPlugin> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// No stdin (an in-process plugin).
    fn closed() -> Self {
        ClosableStdin(Arc::new(Mutex::new(None)))
    }

    fn close(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    fn with<T>(
        &self,
        f: impl FnOnce(Pin<&mut ToPlugin>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(stdin) => f(Pin::new(stdin)),
            None => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the host closed the plugin's stdin",
            ))),
        }
    }
}

impl AsyncWrite for ClosableStdin {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.with(|stdin| stdin.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|stdin| stdin.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

/// A call to a plugin, not sent until awaited: [`PluginProcess::call`] and
/// [`PluginProcess::call_raw`]. A failed call is an [`Error`] naming the plugin and the method,
/// or [`Error::Exited`] with the exit status when the plugin is gone.
#[must_use = "a call does nothing until it is awaited"]
pub struct PluginCall<'a, R> {
    process: &'a PluginProcess,
    method: Cow<'static, str>,
    call: Call<R>,
    /// The call's own time-out (else the builder's), to bound the wait for an exit report.
    timeout: Option<Duration>,
    /// Whether the call asked for progress: its time-out then restarts, so it has no deadline
    /// known in advance.
    progress: bool,
}

impl<R> std::fmt::Debug for PluginCall<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCall").field("plugin", &self.process.name).field("call", &self.call).finish()
    }
}

impl<R> PluginCall<'_, R> {
    /// Fails the call with a time-out (and sends `$/cancelRequest`) when no answer comes
    /// within `timeout`, instead of the builder's default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.call = self.call.timeout(timeout);
        self.timeout = Some(timeout);
        self
    }

    /// Asks the plugin for progress (SPEC.md §14) and calls `hook` with each `$/progress` it
    /// sends for this call. The time-out then measures silence: each progress notification
    /// restarts it (see [`overall_timeout`](Self::overall_timeout) for a bound on the whole
    /// call). The hook runs on the session's reader task and must not block. A plugin that
    /// did not announce the `progress` capability is called as without it.
    pub fn on_progress(mut self, hook: impl Fn(&ProgressParams) + Send + Sync + 'static) -> Self {
        self.call = self.call.on_progress(hook);
        self.progress = true;
        self
    }

    /// As [`on_progress`](Self::on_progress), with the latest progress in a `watch` channel
    /// (`None` until the first): what a progress bar polls.
    pub fn watch_progress(mut self) -> (Self, watch::Receiver<Option<ProgressParams>>) {
        let (call, rx) = self.call.watch_progress();
        self.call = call;
        self.progress = true;
        (self, rx)
    }

    /// Whether progress restarts the time-out (true by default).
    pub fn timeout_restarts_on_progress(mut self, restarts: bool) -> Self {
        self.call = self.call.timeout_restarts_on_progress(restarts);
        self
    }

    /// Fails the call with a time-out when it is not answered within `cap` of being sent,
    /// progress or not.
    pub fn overall_timeout(mut self, cap: Duration) -> Self {
        self.call = self.call.overall_timeout(cap);
        self
    }

    /// Makes the call in span `span` (SPEC.md §15): the plugin handles it in a child span (the
    /// same trace id, the host's span id as parent). Without it, the span of
    /// [`crate::trace::in_span`] around the call, if any, is used.
    pub fn trace(mut self, span: crate::trace::SpanContext) -> Self {
        self.call = self.call.trace(span);
        self
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IntoFuture for PluginCall<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let deadline = self.timeout.filter(|_| !self.progress).map(|t| Instant::now() + t);
            match self.call.await {
                Ok(result) => Ok(result),
                Err(source) => Err(self.process.call_error(&self.method, source, deadline).await),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_handles_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<PluginProcess>();
        send_sync::<Error>();
    }
}
