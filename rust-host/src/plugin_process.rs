//! [`PluginProcess`]: a running plugin, its negotiated interfaces, calls ([`PluginCall`]), and
//! its end.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tether_core::{
    Call, CallError, CloseKind, CloseReason, Event, Handled, Options, Peer, RequestContext, Service, Session,
};
use tether_spec::{
    codes, Empty, ErrorObject, HandleRef, Initialize, InitializeParams, InitializeResult, LogParams,
    NegotiatedInterface, NotificationMethod, PeerInfo, RequestMethod, Shutdown, VersionMismatch,
    PROTOCOL_VERSION,
};
use tokio::io::AsyncWrite;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::builder::PluginBuilder;
use crate::error::Error;
use crate::exit::{ExitInfo, ShutdownReport, Stopped};
use crate::logs;
use crate::process::{self, Ctl};
use crate::stderr::SharedTail;

/// How long a failed call waits for the exit status of a plugin whose session ended, to report
/// it instead of a bare "connection closed".
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);

/// A running plugin: a child process in its own process group and the Tether session over its
/// stdin and stdout.
///
/// Dropping it kills the plugin's process group; [`shutdown`](Self::shutdown) ends it
/// gracefully. Typed clients ([`client`](Self::client)) share the session and may outlive the
/// handle, but not the process: once the plugin is gone their calls fail.
pub struct PluginProcess {
    name: Arc<str>,
    peer: Peer,
    init: InitializeResult,
    pid: u32,
    grace: Duration,
    ctl: mpsc::UnboundedSender<Ctl>,
    exit: watch::Receiver<Option<ExitInfo>>,
    stdin: ClosableStdin,
    tail: SharedTail,
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

    pub(crate) async fn start(config: PluginBuilder) -> Result<PluginProcess, Error> {
        let name: Arc<str> = Arc::from(config.plugin_name());
        config.validate(&name)?;
        let pinned = process::check_pinned(&config, &name).await?;
        let spawned = process::spawn(&config, &name, pinned)?;
        // The start time-out counts from the plugin's start (as documented), not from before
        // the hash of a pinned program.
        let deadline = Instant::now() + config.start_timeout;
        let stdin = ClosableStdin::new(spawned.stdin);
        let eof = Arc::new(Notify::new());
        let mut options =
            Options::new().max_frame_size(config.max_frame_size).close_on_eof(false).on_event({
                let name = name.clone();
                let eof = eof.clone();
                move |event| report_event(&name, &eof, event)
            });
        if let Some(timeout) = config.call_timeout {
            options = options.default_timeout(timeout);
        }
        let service = HostService { name: name.clone() };
        let peer = Session::start(spawned.stdout, stdin.clone(), options, service).into_peer();
        tokio::spawn(watch_exit(name.clone(), peer.clone(), spawned.exit.clone(), eof, config.grace));

        let plugin = PluginProcess {
            name,
            peer,
            init: InitializeResult {
                protocol_version: 0,
                plugin: PeerInfo::new("", ""),
                capabilities: Default::default(),
                interfaces: BTreeMap::new(),
            },
            pid: spawned.pid,
            grace: config.grace,
            ctl: spawned.ctl,
            exit: spawned.exit,
            stdin,
            tail: spawned.tail,
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
        let timeout = deadline.saturating_duration_since(Instant::now());
        let answer = self.peer.call::<Initialize>(&params).timeout(timeout).await;
        let result = match answer {
            Ok(result) => result,
            Err(CallError::Timeout(_)) => {
                if let Some(exit) = self.exit_within(Duration::ZERO).await {
                    return Err(Error::ExitedBeforeHandshake { plugin: self.name.to_string(), exit });
                }
                let _ = self.ctl.send(Ctl::KillGroup);
                let stderr_tail = match self.exit_within(EXIT_REPORT_WAIT).await {
                    Some(exit) => exit.stderr_tail,
                    None => self.tail.lines(),
                };
                return Err(Error::StartTimeout {
                    plugin: self.name.to_string(),
                    timeout: config.start_timeout,
                    stderr_tail,
                });
            }
            Err(CallError::Remote(error)) => return Err(self.refused(error)),
            Err(other) => {
                return Err(match self.exit_within(EXIT_REPORT_WAIT).await {
                    Some(exit) => Error::ExitedBeforeHandshake { plugin: self.name.to_string(), exit },
                    None => Error::Handshake { plugin: self.name.to_string(), reason: other.to_string() },
                })
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
        PluginCall { process: self, method: Cow::Borrowed(M::METHOD), call: self.peer.call::<M>(params) }
    }

    /// Calls a method by name with JSON params (an object); the result is plain JSON. Same
    /// time-out rules as [`call`](Self::call).
    pub fn call_raw(&self, method: &str, params: serde_json::Value) -> PluginCall<'_, serde_json::Value> {
        PluginCall {
            process: self,
            method: Cow::Owned(method.to_owned()),
            call: self.peer.call_as(method.to_owned(), &params),
        }
    }

    /// Turns a failed call into an error, with the exit status when the plugin is gone.
    async fn call_error(&self, method: &str, source: CallError) -> Error {
        if matches!(source, CallError::Closed(_)) {
            if let Some(exit) = self.exit_within(EXIT_REPORT_WAIT).await {
                return Error::Exited { plugin: self.name.to_string(), exit };
            }
        }
        Error::Call { plugin: self.name.to_string(), method: method.to_owned(), source: Box::new(source) }
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
        let started = Instant::now();
        if let Some(exit) = self.try_exited() {
            return ShutdownReport { stopped: Stopped::AlreadyExited, exit, elapsed: started.elapsed() };
        }
        let asked = self.peer.call::<Shutdown>(&Empty {}).timeout(self.grace);
        let answered = tokio::select! {
            answer = asked => !matches!(answer, Err(CallError::Timeout(_))),
            _ = self.exited() => true,
        };
        self.stdin.close();
        let mut stopped = Stopped::Gracefully;
        // A plugin that did not answer `tether/shutdown` within the grace period gets SIGTERM at
        // once (SPEC.md §4.6); one that answered has the grace period to exit.
        let mut exit = match answered {
            true => self.exit_within(self.grace).await,
            false => self.try_exited(),
        };
        if exit.is_none() {
            stopped = Stopped::Terminated;
            let _ = self.ctl.send(Ctl::Terminate);
            exit = self.exit_within(self.grace).await;
        }
        let exit = match exit {
            Some(exit) => exit,
            None => {
                stopped = Stopped::Killed;
                let _ = self.ctl.send(Ctl::KillGroup);
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
        let _ = self.ctl.send(Ctl::KillGroup);
        self.exited().await
    }
}

impl Drop for PluginProcess {
    /// Kills the plugin's process group (nothing happens when it has already exited).
    fn drop(&mut self) {
        if self.exit.borrow().is_none() {
            let _ = self.ctl.send(Ctl::KillGroup);
        }
    }
}

fn unknown_exit() -> ExitInfo {
    ExitInfo { code: None, signal: None, stderr_tail: Vec::new() }
}

/// Ends the session when the plugin exits, failing every pending call with the exit status and
/// the last lines of stderr; and when the plugin closed its stdout but lives on, after the
/// grace period.
async fn watch_exit(
    name: Arc<str>,
    peer: Peer,
    mut exit: watch::Receiver<Option<ExitInfo>>,
    eof: Arc<Notify>,
    grace: Duration,
) {
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
            if !info.success() {
                tracing::warn!(target: logs::LOG_TARGET, plugin = %name, "plugin exited with {info}");
            }
            CloseReason::new(CloseKind::EndOfInput, format!("plugin {name} exited with {info}"))
        }
        None => CloseReason::new(CloseKind::EndOfInput, format!("plugin {name} closed its stdout")),
    };
    peer.close_with(reason);
}

fn report_event(name: &str, eof: &Notify, event: &Event) {
    match event {
        Event::Garbage { shown, reason } => logs::garbage(name, shown, &reason.to_string()),
        Event::EndOfInput => eof.notify_one(),
        other => logs::protocol_warning(name, &other.to_string()),
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
struct ClosableStdin(Arc<Mutex<Option<ChildStdin>>>);

impl ClosableStdin {
    fn new(stdin: ChildStdin) -> Self {
        ClosableStdin(Arc::new(Mutex::new(Some(stdin))))
    }

    fn close(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    fn with<T>(
        &self,
        f: impl FnOnce(Pin<&mut ChildStdin>) -> Poll<std::io::Result<T>>,
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
        self
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IntoFuture for PluginCall<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.call.await {
                Ok(result) => Ok(result),
                Err(source) => Err(self.process.call_error(&self.method, source).await),
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
