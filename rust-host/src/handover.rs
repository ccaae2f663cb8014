//! Hand-over: a running plugin passed from this host process to a successor (a new version of
//! the host) without being restarted, and without noticing ([`PluginProcess::hand_over`],
//! [`Handover::send`], [`Handover::receive`], [`PluginProcess::adopt`]). Linux (pidfd).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_spec::{Capabilities, InitializeResult};
use tokio::net::unix::pipe;

use crate::error::Error;
use crate::fd_passing::{receive_with_fds, send_with_fds};
use crate::plugin_process::{Adopted, PluginProcess};
use crate::process::{self, Ctl};
use crate::stdout_tail::Recording;

/// The environment variable that carries the descriptor numbers of a hand-over across `exec`
/// ([`Handover::exec`]): the state's memory file, stdin, stdout, stderr.
pub const HANDOVER_ENV: &str = "TETHER_HANDOVER_FDS";

/// Takes ownership of descriptors inherited across `exec`, named by [`HANDOVER_ENV`].
#[allow(unsafe_code)]
fn adopt_inherited(numbers: &[i32]) -> Vec<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut seen = std::collections::BTreeSet::new();
    numbers
        .iter()
        .filter(|&&n| seen.insert(n))
        // SAFETY: the numbers come from `HANDOVER_ENV`, which `Handover::exec` set just before
        // the exec to descriptors it made inheritable, and which `from_exec` removes before
        // calling this, so each is taken once and nothing else in this process owns them; the
        // standard streams (0-2) and duplicates are refused. A variable set by someone else
        // could name a descriptor this process did not inherit for this purpose: the variable
        // is an interface between two versions of the same host, documented as such.
        .map(|&n| unsafe { OwnedFd::from_raw_fd(n) })
        .collect()
}

/// The largest hand-over state a successor accepts (the unread bytes are at most one frame).
const MAX_STATE: usize = 64 << 20;

/// What a successor needs besides the pipes: serialisable, sent as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverState {
    /// The plugin's name in logs and errors.
    pub name: String,
    /// The plugin's process id, also its process group's id.
    pub pid: u32,
    /// The answer to `tether/initialize`: versions, interfaces, the plugin's capabilities.
    pub initialize: InitializeResult,
    /// The capabilities the host announced.
    pub host_capabilities: Capabilities,
    /// The frame size limit agreed on.
    pub max_frame_size: usize,
    /// The next request id.
    pub next_id: i64,
    /// The bytes of the plugin's stdout read and not decoded yet (the start of a frame).
    pub unread: Vec<u8>,
    /// The shutdown grace period, in milliseconds.
    pub grace_ms: u64,
    /// The default call time-out, in milliseconds.
    pub call_timeout_ms: Option<u64>,
}

/// A plugin handed over: its state and its three pipes (the write end of its stdin, the read
/// ends of its stdout and stderr). Send it to the successor with [`send`](Self::send); the
/// successor calls [`PluginProcess::adopt`].
#[derive(Debug)]
pub struct Handover {
    /// The session's state.
    pub state: HandoverState,
    /// The write end of the plugin's stdin.
    pub stdin: OwnedFd,
    /// The read end of the plugin's stdout.
    pub stdout: OwnedFd,
    /// The read end of the plugin's stderr.
    pub stderr: OwnedFd,
}

impl Handover {
    /// Sends the state and the pipes over a Unix socket (`SCM_RIGHTS`); blocking, so call it
    /// from a blocking thread in async code. This process's copies close when `self` is dropped.
    pub fn send(&self, socket: &UnixStream) -> Result<(), Error> {
        let json =
            serde_json::to_vec(&self.state).map_err(|e| self.error(format!("encoding the state: {e}")))?;
        let fds = [self.stdin.as_fd(), self.stdout.as_fd(), self.stderr.as_fd()];
        send_with_fds(socket, &json, &fds).map_err(|e| self.error(format!("sending over the socket: {e}")))
    }

    /// Receives what [`send`](Self::send) sent; blocking.
    pub fn receive(socket: &UnixStream) -> Result<Handover, Error> {
        let error = |reason: String| Error::Handover { plugin: "(being received)".into(), reason };
        let (json, fds) =
            receive_with_fds(socket, MAX_STATE).map_err(|e| error(format!("receiving: {e}")))?;
        let state: HandoverState =
            serde_json::from_slice(&json).map_err(|e| error(format!("a malformed state: {e}")))?;
        let Ok::<[OwnedFd; 3], _>([stdin, stdout, stderr]) = fds.try_into() else {
            return Err(Error::Handover {
                plugin: state.name,
                reason: "expected three descriptors (stdin, stdout, stderr)".into(),
            });
        };
        Ok(Handover { state, stdin, stdout, stderr })
    }

    /// Replaces this process with `command` (typically the new version of the host), which
    /// takes the plugin over with [`Handover::from_exec`]: the three pipes and a memory file
    /// holding the state are inherited (close-on-exec cleared), their numbers in the
    /// environment variable [`HANDOVER_ENV`]. Returns only if the exec failed.
    pub fn exec(self, mut command: std::process::Command) -> Error {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let result = (|| -> std::io::Result<std::convert::Infallible> {
            let json = serde_json::to_vec(&self.state).map_err(std::io::Error::other)?;
            let memfd = rustix::fs::memfd_create("tether-handover", rustix::fs::MemfdFlags::empty())?;
            let mut file = std::fs::File::from(memfd);
            std::io::Write::write_all(&mut file, &json)?;
            let fds = [file.as_fd(), self.stdin.as_fd(), self.stdout.as_fd(), self.stderr.as_fd()];
            for fd in fds {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            let numbers: Vec<String> = fds.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
            command.env(HANDOVER_ENV, numbers.join(","));
            Err(command.exec())
        })();
        match result {
            Err(e) => self.error(format!("exec failed: {e}")),
            Ok(never) => match never {},
        }
    }

    /// Takes over the plugin a predecessor handed over with [`Handover::exec`] before it
    /// exec'd this program: `None` when [`HANDOVER_ENV`] is not set. The variable is removed,
    /// so the descriptors are taken once.
    pub fn from_exec() -> Result<Option<Handover>, Error> {
        let Some(value) = std::env::var_os(HANDOVER_ENV) else { return Ok(None) };
        std::env::remove_var(HANDOVER_ENV);
        let error = |reason: String| Error::Handover { plugin: "(after exec)".into(), reason };
        let numbers: Vec<i32> = value
            .to_str()
            .map(|v| v.split(',').map(str::parse).collect::<Result<Vec<i32>, _>>())
            .and_then(Result::ok)
            .filter(|n| n.len() == 4 && n.iter().all(|&fd| fd > 2))
            .ok_or_else(|| {
                error(format!("{HANDOVER_ENV}={value:?} is not four descriptor numbers above 2"))
            })?;
        let mut owned = adopt_inherited(&numbers).into_iter();
        let (Some(state), Some(stdin), Some(stdout), Some(stderr)) =
            (owned.next(), owned.next(), owned.next(), owned.next())
        else {
            return Err(error("four descriptors expected".into()));
        };
        let mut file = std::fs::File::from(state);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
            .map_err(|e| error(format!("state: {e}")))?;
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, MAX_STATE as u64), &mut json)
            .map_err(|e| error(format!("reading the state: {e}")))?;
        let state: HandoverState =
            serde_json::from_slice(&json).map_err(|e| error(format!("a malformed state: {e}")))?;
        Ok(Some(Handover { state, stdin, stdout, stderr }))
    }

    fn error(&self, reason: String) -> Error {
        Error::Handover { plugin: self.state.name.clone(), reason }
    }
}

impl PluginProcess {
    /// Hands the plugin over to another host process, which goes on with the same process and
    /// session ([`PluginProcess::adopt`]); the plugin does not notice. Needs a plugin started
    /// with [`crate::PluginBuilder::handover_capable`].
    ///
    /// Refused, with the plugin given back unchanged in the error, while the host serves
    /// handles to it (host objects cannot move between processes) or streams are open.
    /// Otherwise new calls fail at once; calls in flight have `timeout` to be answered, and
    /// those still unanswered then fail with `tether_core::HANDED_OVER` (their answers reach
    /// the successor, which drops them as answers to unknown ids). The reader stops at a frame
    /// boundary; the bytes of a frame read in part travel in the state.
    pub async fn hand_over(mut self, timeout: Duration) -> Result<Handover, (Error, Box<PluginProcess>)> {
        let refuse = |plugin: PluginProcess, reason: String| {
            Err((Error::Handover { plugin: plugin.name.to_string(), reason }, Box::new(plugin)))
        };
        if !cfg!(target_os = "linux") {
            return refuse(self, "hand-over is implemented on Linux only".into());
        }
        let Some(stderr) = self.stderr_copy.take() else {
            return refuse(
                self,
                "the plugin was not started with handover_capable() over the stdio transport (the fds transport leaves its stderr to the terminal, which cannot be handed over)".into(),
            );
        };
        if self.try_exited().is_some() {
            return refuse(self, "the plugin has exited".into());
        }
        let detached = match self.peer.detach(timeout).await {
            Ok(detached) => detached,
            Err(e) => {
                self.stderr_copy = Some(stderr);
                return refuse(self, e.to_string());
            }
        };
        // From here the session has ended in this host: the plugin is the successor's.
        self.handed_over = true;
        let _ = self.ctl.send(Ctl::Release);
        let fail = |plugin: &PluginProcess, reason: &str| Error::Handover {
            plugin: plugin.name.to_string(),
            reason: reason.to_owned(),
        };
        let stdout = detached
            .reader
            .downcast::<Recording<pipe::Receiver>>()
            .ok()
            .and_then(|r| r.into_inner().into_nonblocking_fd().ok());
        let stdin = self.stdin.take().and_then(|s| s.into_nonblocking_fd().ok());
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            let error = fail(&self, "the pipes could not be taken back from the session");
            return Err((error, Box::new(self)));
        };
        let state = HandoverState {
            name: self.name.to_string(),
            pid: self.pid,
            initialize: self.init.clone(),
            host_capabilities: self.own_capabilities.clone(),
            max_frame_size: self.max_frame_size,
            next_id: detached.next_id,
            unread: detached.unread,
            grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
            call_timeout_ms: self.call_timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        tracing::debug!(target: crate::logs::LOG_TARGET, plugin = %self.name, next_id = state.next_id,
            unread = state.unread.len(), "plugin handed over");
        Ok(Handover { state, stdin, stdout, stderr })
    }

    /// Adopts a plugin another host handed over ([`PluginProcess::hand_over`]): goes on with
    /// its session (no new handshake), forwards its stderr, and supervises it although it is
    /// not this host's child: its exit is seen through a pidfd (the exit status is then not
    /// known: [`crate::ExitInfo`] has neither code nor signal), and kills go to its process
    /// group. Everything else (calls, shutdown, drop) is as for a plugin this host started.
    #[cfg(target_os = "linux")]
    pub fn adopt(handover: Handover) -> Result<PluginProcess, Error> {
        let Handover { state, stdin, stdout, stderr } = handover;
        let name: Arc<str> = Arc::from(state.name.as_str());
        let error = |reason: String| Error::Handover { plugin: name.to_string(), reason };
        let stdin = pipe::Sender::from_owned_fd(stdin).map_err(|e| error(format!("stdin: {e}")))?;
        let stdout = pipe::Receiver::from_owned_fd(stdout).map_err(|e| error(format!("stdout: {e}")))?;
        let stderr = pipe::Receiver::from_owned_fd(stderr).map_err(|e| error(format!("stderr: {e}")))?;
        let process::Supervised { ctl, exit, tail, reaped } =
            process::supervise_adopted(state.pid, name.clone(), stderr)
                .map_err(|e| error(format!("cannot watch process {}: {e}", state.pid)))?;
        let resume = tether_core::Resume {
            next_id: state.next_id,
            unread: state.unread,
            own_capabilities: state.host_capabilities.clone(),
            peer_capabilities: state.initialize.capabilities.clone(),
            host: true,
        };
        tracing::debug!(target: crate::logs::LOG_TARGET, plugin = %name, pid = state.pid, "plugin adopted");
        Ok(PluginProcess::from_adopted(Adopted {
            name,
            pid: state.pid,
            init: state.initialize,
            own_capabilities: state.host_capabilities,
            max_frame_size: state.max_frame_size,
            grace: Duration::from_millis(state.grace_ms),
            call_timeout: state.call_timeout_ms.map(Duration::from_millis),
            resume,
            stdin,
            stdout,
            ctl,
            exit,
            tail,
            reaped,
        }))
    }
}
