//! The errors of the host: each names the plugin and the cause.

use std::path::PathBuf;
use std::time::Duration;

use tether_core::CallError;
use tether_spec::ErrorObject;

use crate::exit::ExitInfo;

/// What went wrong with a plugin. Every message names the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given something unusable (an invalid checksum, a frame size too small).
    #[error("plugin {plugin}: invalid configuration: {reason}")]
    Config {
        /// The plugin's name.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The program could not be started.
    #[error("plugin {plugin}: cannot start {}: {source}", program.display())]
    Spawn {
        /// The plugin's name.
        plugin: String,
        /// The program that was run.
        program: PathBuf,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// A library given to [`PluginProcess::library`](crate::PluginProcess::library) could not be
    /// loaded as an in-process plugin: it cannot be opened, it does not export the entry symbol
    /// (it is not a Tether plugin), or its table has another ABI version.
    #[error("plugin {plugin}: cannot load {} as an in-process plugin: {reason}", path.display())]
    Library {
        /// The plugin's name.
        plugin: String,
        /// The library's file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The program's file could not be read to check its checksum.
    #[error("plugin {plugin}: cannot read {} to check its SHA-256: {source}", program.display())]
    ChecksumRead {
        /// The plugin's name.
        plugin: String,
        /// The file that was hashed.
        program: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The program's file does not have the expected SHA-256; it was not started.
    #[error(
        "plugin {plugin}: refusing to start {}: its SHA-256 is {actual}, expected {expected}",
        program.display()
    )]
    ChecksumMismatch {
        /// The plugin's name.
        plugin: String,
        /// The file that was hashed.
        program: PathBuf,
        /// The expected digest, in hex.
        expected: String,
        /// The digest of the file, in hex.
        actual: String,
    },
    /// The plugin exited before it answered `tether/initialize` (a missing cookie, a crash).
    #[error("plugin {plugin} exited with {} before the handshake{}", exit.status_text(), exit.stderr_text())]
    ExitedBeforeHandshake {
        /// The plugin's name.
        plugin: String,
        /// How it exited, with the last lines of its stderr.
        exit: ExitInfo,
    },
    /// The plugin did not answer `tether/initialize` within the start timeout; it was killed.
    #[error(
        "plugin {plugin} did not complete the handshake within {timeout:?}{}{}{}",
        fds_suffix(*fds),
        seen_suffix(seen),
        tail_suffix(stderr_tail)
    )]
    StartTimeout {
        /// The plugin's name.
        plugin: String,
        /// The start timeout.
        timeout: Duration,
        /// The last lines of its stderr.
        stderr_tail: Vec<String>,
        /// What its stdout showed that was not an answer: the last protocol warnings (bytes that
        /// are not frames, shown escaped; a frame header above the size limit), oldest first.
        seen: Vec<String>,
        /// Whether it was started with the `fds` transport (which it may not support).
        fds: bool,
    },
    /// No common version of the core protocol or of an interface (SPEC.md §4.3).
    #[error(
        "plugin {plugin}: no common version for interface {interface}: the host speaks {host:?}, \
         the plugin speaks {plugin_versions:?}"
    )]
    VersionMismatch {
        /// The plugin's name.
        plugin: String,
        /// The interface, `tether` for the core protocol.
        interface: String,
        /// The versions the host offered.
        host: Vec<u32>,
        /// The versions the plugin speaks.
        plugin_versions: Vec<u32>,
    },
    /// The plugin answered `tether/initialize` with an error, or with a result the host cannot
    /// use.
    #[error("plugin {plugin}: the handshake failed: {reason}")]
    Handshake {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// The plugin did not declare an interface the host asked for.
    #[error(
        "plugin {plugin} does not declare interface {interface}; it declares {}",
        declared_list(declared)
    )]
    InterfaceNotDeclared {
        /// The plugin's name.
        plugin: String,
        /// The interface asked for.
        interface: String,
        /// What the plugin declares: name and negotiated version.
        declared: Vec<(String, u32)>,
    },
    /// The plugin process ended while a call was pending (or before it was sent).
    #[error("plugin {plugin} exited with {exit}")]
    Exited {
        /// The plugin's name.
        plugin: String,
        /// How it exited, with the last lines of its stderr.
        exit: ExitInfo,
    },
    /// A hand-over to another host was refused (the plugin goes on here, unchanged), or
    /// failed, or a plugin handed over could not be adopted.
    #[error("plugin {plugin}: hand-over: {reason}")]
    Handover {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// A call failed: an error answer, a timeout, a frame too large, a closed session.
    #[error("plugin {plugin}: {method}: {source}")]
    Call {
        /// The plugin's name.
        plugin: String,
        /// The method called.
        method: String,
        /// Why it failed.
        source: Box<CallError>,
    },
    /// A supervised plugin is stopped for good: it exited and its restart policy does not
    /// restart it, or the application shut it down.
    #[error("plugin {plugin} is not running: {reason}")]
    NotRunning {
        /// The plugin's name.
        plugin: String,
        /// Why it stopped.
        reason: String,
    },
    /// The supervisor of a plugin gave up restarting it (too many restarts within the window).
    #[error("plugin {plugin}: gave up restarting it after {reason}")]
    GaveUp {
        /// The plugin's name.
        plugin: String,
        /// The restarts within the window and the last failure.
        reason: String,
    },
    /// A call to a supervised plugin waited for it to (re)start longer than its time-out.
    #[error("plugin {plugin} was not running within {waited:?} (it was {phase})")]
    NotReady {
        /// The plugin's name.
        plugin: String,
        /// How long the call waited.
        waited: Duration,
        /// What the plugin was doing: starting, idle, waiting to restart, stopping.
        phase: String,
    },
    /// Some plugins of a [`PluginSet`](crate::PluginSet) did not start; the others run.
    #[error("{} of the plugins did not start: {}", failed.len(), failed_list(failed))]
    SetStart {
        /// Each plugin that did not start, by name, with its error.
        failed: Vec<(String, Error)>,
    },
}

impl Error {
    /// The error object the plugin answered, when a call failed with an error answer.
    pub fn remote(&self) -> Option<&ErrorObject> {
        match self {
            Error::Call { source, .. } => source.remote(),
            _ => None,
        }
    }

    /// How the plugin exited (status, signal, stderr tail), when the error is about its exit:
    /// [`Error::Exited`], [`Error::ExitedBeforeHandshake`], or a call failed by the end of the
    /// session that carries the exit ([`ExitInfo::of`]).
    pub fn exit(&self) -> Option<&ExitInfo> {
        match self {
            Error::Exited { exit, .. } | Error::ExitedBeforeHandshake { exit, .. } => Some(exit),
            Error::Call { source, .. } => ExitInfo::of(source),
            _ => None,
        }
    }

    /// Why a call failed, when the error is about a call.
    pub fn call_error(&self) -> Option<&CallError> {
        match self {
            Error::Call { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the call timed out (and `$/cancelRequest` was sent).
    pub fn is_timeout(&self) -> bool {
        matches!(self.call_error(), Some(CallError::Timeout(_)))
    }
}

fn tail_suffix(tail: &[String]) -> String {
    match tail {
        [] => String::new(),
        [line] => format!("; stderr: {line}"),
        lines => format!("; stderr (last {} lines):\n    {}", lines.len(), lines.join("\n    ")),
    }
}

fn fds_suffix(fds: bool) -> &'static str {
    if fds {
        " over the fds transport: a plugin that does not support it waits for frames on its stdin (SPEC.md §13.4)"
    } else {
        ""
    }
}

fn seen_suffix(seen: &[String]) -> String {
    match seen {
        [] => String::new(),
        lines => format!("; its stdout showed:\n    {}", lines.join("\n    ")),
    }
}

fn declared_list(declared: &[(String, u32)]) -> String {
    if declared.is_empty() {
        return "no interface".to_owned();
    }
    let names: Vec<String> = declared.iter().map(|(name, version)| format!("{name} v{version}")).collect();
    names.join(", ")
}

fn failed_list(failed: &[(String, Error)]) -> String {
    let each: Vec<String> = failed.iter().map(|(name, error)| format!("{name}: {error}")).collect();
    each.join("; ")
}
