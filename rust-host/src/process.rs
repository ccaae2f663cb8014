//! The plugin process: checksum, spawn (own process group, kill on drop, parent-death signal),
//! supervision (exit status, stderr tail) and signals. Unix first; on Windows, the equivalent of
//! the process group is a job object, which this crate does not set up yet.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use process_wrap::tokio::{KillOnDrop, ProcessGroup, TokioChildWrapper, TokioCommandWrap};
use sha2::{Digest, Sha256};
use tether_spec::TRANSPORT_ENV;
use tokio::net::unix::pipe;
use tokio::process::ChildStderr;
use tokio::sync::{mpsc, watch};

use crate::builder::{parse_digest, PluginBuilder};
use crate::error::Error;
use crate::exit::ExitInfo;
use crate::stderr::{self, SharedTail};
use crate::transport::{self, ChildStdio, FromPlugin, ToPlugin, Transport};

/// How long the supervisor waits for the rest of stderr once the process has exited.
const STDERR_DRAIN: Duration = Duration::from_millis(500);

/// A signal the supervisor sends for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// SIGTERM to the plugin process.
    Terminate,
    /// SIGKILL to the plugin's whole process group.
    KillGroup,
    /// The plugin was handed over to another host: stop supervising it, without a signal.
    Release,
}

/// A started plugin process.
pub(crate) struct Spawned {
    /// Where frames to the plugin go: its stdin, or descriptor 3 of the `fds` transport.
    pub(crate) stdin: ToPlugin,
    /// Where frames from the plugin come from: its stdout, or descriptor 4.
    pub(crate) stdout: FromPlugin,
    /// A copy of the read end of stderr, kept for a hand-over (handover-capable plugins over
    /// stdio only: over `fds`, stderr is not the host's).
    pub(crate) stderr_copy: Option<std::os::fd::OwnedFd>,
    pub(crate) pid: u32,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) exit: watch::Receiver<Option<ExitInfo>>,
    pub(crate) tail: SharedTail,
    /// Set by the supervisor as soon as the plugin is reaped: from then on its pid may be
    /// reused, and no signal may be sent to it from outside the supervisor.
    pub(crate) reaped: Arc<AtomicBool>,
}

/// The program file, hashed and found to match the pinned digest; kept open so that on Linux the
/// child runs the very file that was hashed (through `/proc/self/fd`).
pub(crate) struct Pinned {
    file: File,
    path: PathBuf,
    is_script: bool,
}

impl Pinned {
    /// The path to open the checked file by: on Linux its descriptor (`/proc/self/fd/N`), so that
    /// what is loaded is the file that was hashed, even if the path was replaced since; elsewhere
    /// its path.
    pub(crate) fn open_path(&self) -> PathBuf {
        if cfg!(target_os = "linux") {
            fd_path(&self.file)
        } else {
            self.path.clone()
        }
    }
}

/// Hashes the program when a digest is pinned ([`PluginBuilder::sha256`]) and refuses a mismatch.
/// The hash runs on the blocking pool: a large binary takes milliseconds (seconds in a debug
/// build), which must not stall the runtime thread that serves other plugins.
pub(crate) async fn check_pinned(config: &PluginBuilder, plugin: &Arc<str>) -> Result<Option<Pinned>, Error> {
    let Some(expected) = config.sha256.as_deref().and_then(parse_digest) else { return Ok(None) };
    let resolved = config.pinned_path();
    let path = resolved.clone();
    let hashed = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let (file, actual, is_script) = hashed.map_err(|source| Error::ChecksumRead {
        plugin: plugin.to_string(),
        program: resolved.clone(),
        source,
    })?;
    if actual != expected {
        return Err(Error::ChecksumMismatch {
            plugin: plugin.to_string(),
            program: resolved,
            expected: hex(&expected),
            actual: hex(&actual),
        });
    }
    // A pinned script of an interpreter is not the program: the program runs by its path.
    let is_script = is_script || config.pinned_file.is_some();
    Ok(Some(Pinned { file, path: resolved, is_script }))
}

/// Spawns the plugin (the pinned file when there is one) and starts its supervisor and stderr
/// reader.
pub(crate) fn spawn(
    config: &PluginBuilder,
    plugin: &Arc<str>,
    pinned: Option<Pinned>,
) -> Result<Spawned, Error> {
    let mut exec_path: PathBuf = config.program.clone();
    // Kept open until the spawn returned: the child execs it through /proc/self/fd.
    let mut _hashed_file: Option<File> = None;
    if let Some(pinned) = pinned.filter(|_| config.pinned_file.is_none()) {
        exec_path = pinned.path;
        if cfg!(target_os = "linux") && !pinned.is_script {
            exec_path = fd_path(&pinned.file);
            _hashed_file = Some(pinned.file);
        }
    }

    let mut command = tokio::process::Command::new(&exec_path);
    #[cfg(unix)]
    command.arg0(&config.program);
    command.args(&config.args);
    if config.env_clear {
        command.env_clear();
    }
    for (key, value) in &config.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.env(&config.cookie.key, &config.cookie.value);
    if let Some(dir) = &config.cwd {
        command.current_dir(dir);
    }
    let spawn_error =
        |source| Error::Spawn { plugin: plugin.to_string(), program: config.program.clone(), source };
    // With the fds transport, the frames' pipes are made now and the plugin's own ends wait in
    // the command (dropped with it, right after the spawn).
    let fds_ends = match config.transport {
        Transport::Stdio => {
            // An announcement inherited from the host's own host must not mislead the plugin.
            command.env_remove(TRANSPORT_ENV);
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
        Transport::Fds => {
            command.env(TRANSPORT_ENV, tether_spec::Transport::REFERENCE_FDS.to_string());
            let stdio = |i: usize| config.child_stdio[i].as_ref().unwrap_or(&ChildStdio::Inherit).to_stdio();
            command.stdin(stdio(0).map_err(spawn_error)?);
            command.stdout(stdio(1).map_err(spawn_error)?);
            command.stderr(stdio(2).map_err(spawn_error)?);
            Some(transport::attach(&mut command).map_err(spawn_error)?)
        }
    };
    #[cfg(target_os = "linux")]
    if config.parent_death_signal {
        parent_death_signal(&mut command);
    }

    let mut wrapped = TokioCommandWrap::from(command);
    #[cfg(unix)]
    wrapped.wrap(ProcessGroup::leader());
    // A plugin that may be handed over must outlive this host's `Child`: the host's `Drop`
    // and the supervisor's guard still kill it while it is this host's.
    if !config.handover {
        wrapped.wrap(KillOnDrop);
    }
    let mut child = spawn_on_keeper_thread(wrapped).map_err(spawn_error)?;
    drop(_hashed_file);

    let missing = || spawn_error(std::io::Error::other("a standard stream of the child was not piped"));
    let pid = child.id().ok_or_else(missing)?;
    let tail = SharedTail::default();
    let (stdin, stdout, stderr_copy, stderr_task): (ToPlugin, FromPlugin, _, _) = match fds_ends {
        Some((to_plugin, from_plugin)) => (to_plugin, from_plugin, None, None),
        None => {
            let stdin = child.stdin().take().ok_or_else(missing)?;
            let stdout = child.stdout().take().ok_or_else(missing)?;
            let stderr_pipe: ChildStderr = child.stderr().take().ok_or_else(missing)?;
            // As tokio pipes, which a successor host can build from received descriptors too.
            let stdin = stdin.into_owned_fd().and_then(pipe::Sender::from_owned_fd).map_err(spawn_error)?;
            let stdout =
                stdout.into_owned_fd().and_then(pipe::Receiver::from_owned_fd).map_err(spawn_error)?;
            let stderr_copy = match config.handover {
                true => Some(rustix::io::dup(&stderr_pipe).map_err(|e| spawn_error(e.into()))?),
                false => None,
            };
            let stderr_task = tokio::spawn(stderr::forward(stderr_pipe, tail.clone(), plugin.clone()));
            (stdin, stdout, stderr_copy, Some(stderr_task))
        }
    };
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit) = watch::channel(None);
    let reaped = Arc::new(AtomicBool::new(false));
    tokio::spawn(supervise(child, pid, ctl_rx, stderr_task, tail.clone(), exit_tx, reaped.clone()));
    Ok(Spawned { stdin, stdout, stderr_copy, pid, ctl, exit, tail, reaped })
}

type SpawnResult = std::io::Result<Box<dyn TokioChildWrapper>>;
type SpawnJob = Box<dyn FnOnce() + Send>;

/// Spawns the plugin from one thread that lives as long as the host process.
///
/// On Linux the parent-death signal fires when the *thread* that forked the child ends, not
/// the process: a plugin spawned from a short-lived thread (a `spawn_blocking` thread, which
/// tokio retires after 10 s idle; a test's thread; a thread running its own runtime) would be
/// killed with it. Forking from a thread that never ends gives the signal its intended meaning:
/// the plugin dies when the host process dies. Elsewhere, and if that thread cannot be started,
/// the plugin is spawned from the calling thread.
fn spawn_on_keeper_thread(mut wrapped: TokioCommandWrap) -> SpawnResult {
    static KEEPER: std::sync::OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<SpawnJob>>>> =
        std::sync::OnceLock::new();
    if !cfg!(target_os = "linux") {
        return wrapped.spawn();
    }
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("tether-host-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let Some(keeper) = keeper else { return wrapped.spawn() };
    let runtime = tokio::runtime::Handle::current();
    let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel::<SpawnResult>(1);
    let job: SpawnJob = Box::new(move || {
        // Registers the child with the caller's runtime (its SIGCHLD driver).
        let _entered = runtime.enter();
        let _ = reply_tx.send(wrapped.spawn());
    });
    let sent = keeper.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(job);
    if sent.is_err() {
        return Err(std::io::Error::other("the spawner thread is gone"));
    }
    // Spawning takes a fork and an exec: a short block, as `std::process::Command::spawn` is.
    reply_rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread failed")))
}

/// Hashes a file from an open descriptor; says whether it is a `#!` script.
fn hash_file(path: &std::path::Path) -> std::io::Result<(File, [u8; 32], bool)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if first.len() < 2 {
            first.extend_from_slice(&buf[..n.min(2)]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((file, hasher.finalize().into(), first.starts_with(b"#!")))
}

#[cfg(unix)]
fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(not(unix))]
fn fd_path(_: &File) -> PathBuf {
    PathBuf::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, in hex (what [`PluginBuilder::sha256`] expects).
pub fn sha256_file(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    hash_file(path.as_ref()).map(|(_, digest, _)| hex(&digest))
}

/// Asks the kernel to kill the plugin when the thread that spawned it dies (`PR_SET_PDEATHSIG`).
///
/// Linux ties this signal to the spawning *thread*: a plugin started from a thread that ends
/// before the host process (a `spawn_blocking` thread, for example) is killed with it. Start
/// plugins from runtime worker threads or the main thread.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn parent_death_signal(command: &mut tokio::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed: it makes two raw system calls through rustix (prctl, getppid) and
    // builds an `io::Error` from an errno, none of which allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The host may have died between the fork and the prctl: then nobody would kill us.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// Sends a signal to the plugin (SIGTERM) or its process group (SIGKILL). Only the supervisor
/// and `Drop` of the plugin (which checks that the plugin was not reaped yet) call it.
pub(crate) fn signal(pid: u32, ctl: Ctl) {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return };
    let _ = match ctl {
        Ctl::Terminate => rustix::process::kill_process(pid, rustix::process::Signal::TERM),
        Ctl::KillGroup => rustix::process::kill_process_group(pid, rustix::process::Signal::KILL),
        Ctl::Release => return,
    };
}

/// Kills the group if the supervisor is dropped before the plugin was reaped (a runtime that
/// shuts down): kill-on-drop then only reaches the plugin itself.
struct GroupGuard {
    pid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal(self.pid, Ctl::KillGroup);
        }
    }
}

/// Waits for the plugin to exit while sending the signals it is asked to; then kills what is
/// left of its process group, collects the end of stderr, and publishes the [`ExitInfo`].
///
/// Signals are sent only from here, while the child is not yet reaped, so that its pid cannot
/// have been reused by another process.
async fn supervise(
    mut child: Box<dyn TokioChildWrapper>,
    pid: u32,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    tail: SharedTail,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    reaped: Arc<AtomicBool>,
) {
    let mut guard = GroupGuard { pid, armed: true };
    let status = {
        let mut wait = Box::into_pin(child.wait());
        let mut ctl_open = true;
        loop {
            tokio::select! {
                status = &mut wait => break status,
                message = ctl.recv(), if ctl_open => match message {
                    Some(Ctl::Release) => {
                        // Handed over: the successor reads stderr and supervises; the child is
                        // left to tokio, which reaps it if it exits while this host runs.
                        guard.armed = false;
                        if let Some(task) = &stderr_task {
                            task.abort();
                        }
                        return;
                    }
                    Some(message) => signal(pid, message),
                    // Every handle on the plugin was dropped: kill on drop.
                    None => {
                        ctl_open = false;
                        signal(pid, Ctl::KillGroup);
                    }
                },
            }
        }
    };
    reaped.store(true, Ordering::SeqCst);
    // The plugin is reaped; its group lives on while any member does (so its id cannot be
    // reused yet): kill the members left, such as a grandchild holding stdout open.
    signal(pid, Ctl::KillGroup);
    guard.armed = false;
    if let Some(stderr_task) = stderr_task {
        let _ = tokio::time::timeout(STDERR_DRAIN, stderr_task).await;
    }
    let status = match status {
        Ok(status) => Some(status),
        Err(e) => {
            tracing::warn!(target: crate::logs::LOG_TARGET, "waiting for the plugin failed: {e}");
            None
        }
    };
    let _ = exit_tx.send(Some(ExitInfo::from_status(status, tail.lines())));
}

#[cfg(target_os = "linux")]
fn raw_pid(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw)
}

/// The handles on an adopted plugin's supervisor.
#[cfg(target_os = "linux")]
pub(crate) struct Supervised {
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) exit: watch::Receiver<Option<ExitInfo>>,
    pub(crate) tail: SharedTail,
    pub(crate) reaped: Arc<AtomicBool>,
}

/// Supervises a plugin this host adopted from another (a hand-over): not its child, so its exit
/// is seen through a pidfd (its status is not known), and signals go to its process group.
#[cfg(target_os = "linux")]
pub(crate) fn supervise_adopted(
    pid: u32,
    plugin: Arc<str>,
    stderr: pipe::Receiver,
) -> std::io::Result<Supervised> {
    let raw = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    let raw = raw.ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
    // `AsyncFd::new` is deprecated because a borrowed descriptor could be closed under it; an
    // `OwnedFd` is owned by the `AsyncFd` and stays open as long as it, which is what
    // `register` asks for.
    #[allow(deprecated)]
    let pidfd = tokio::io::unix::AsyncFd::new(pidfd)?;
    let tail = SharedTail::default();
    let stderr_task = tokio::spawn(stderr::forward(stderr, tail.clone(), plugin));
    let (ctl, mut ctl_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit) = watch::channel(None);
    let reaped = Arc::new(AtomicBool::new(false));
    let done = reaped.clone();
    let lines = tail.clone();
    tokio::spawn(async move {
        let mut guard = GroupGuard { pid, armed: true };
        let mut ctl_open = true;
        loop {
            tokio::select! {
                // A pidfd is readable once the process has exited.
                _ = pidfd.readable() => break,
                message = ctl_rx.recv(), if ctl_open => match message {
                    Some(Ctl::Release) => {
                        guard.armed = false;
                        stderr_task.abort();
                        return;
                    }
                    Some(message) => signal(pid, message),
                    None => {
                        ctl_open = false;
                        signal(pid, Ctl::KillGroup);
                    }
                },
            }
        }
        // After a hand-over across exec the plugin is this process's child (exec keeps the
        // pid): reap it, which gives its status. Otherwise (ECHILD) its parent reaps it, which
        // may let its pid be reused: no signal is sent from now on either way.
        let status = rustix::process::waitpid(raw_pid(pid), rustix::process::WaitOptions::NOHANG)
            .ok()
            .flatten()
            .map(|(_, status)| status);
        done.store(true, Ordering::SeqCst);
        guard.armed = false;
        let _ = tokio::time::timeout(STDERR_DRAIN, stderr_task).await;
        let exit = ExitInfo {
            code: status.and_then(|s| s.exit_status()),
            signal: status.and_then(|s| s.terminating_signal()),
            stderr_tail: lines.lines(),
        };
        let _ = exit_tx.send(Some(exit));
    });
    Ok(Supervised { ctl, exit, tail, reaped })
}
