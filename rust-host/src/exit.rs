//! How a plugin process ended: [`ExitInfo`] (status and stderr tail) and the [`ShutdownReport`]
//! of [`PluginProcess::shutdown`](crate::PluginProcess::shutdown).

use std::fmt;
use std::time::Duration;

/// How a plugin process ended: its status and the last lines it wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// The signal that killed the process, when one did (Unix).
    pub signal: Option<i32>,
    /// The last lines of its stderr (at most 20 lines and 8 KiB), oldest first.
    pub stderr_tail: Vec<String>,
}

impl ExitInfo {
    pub(crate) fn from_status(status: Option<std::process::ExitStatus>, stderr_tail: Vec<String>) -> Self {
        #[cfg(unix)]
        let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        #[cfg(not(unix))]
        let signal = None;
        ExitInfo { code: status.and_then(|s| s.code()), signal, stderr_tail }
    }

    /// How the plugin exited, when a call failed because its session ended with its exit: the
    /// error of a typed client (`KvClient`, `Peer::call`), which is a [`tether_core::CallError`]
    /// rather than the host's [`Error`](crate::Error). `None` for other failures (a time-out, an
    /// error answer) and while the exit is not known yet.
    pub fn of(error: &tether_core::CallError) -> Option<&ExitInfo> {
        error.close_reason().and_then(|reason| reason.detail::<ExitInfo>())
    }

    /// Whether the process exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The status alone, for messages: `status 1`, `signal 9 (SIGKILL)`.
    pub fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(signal)) => match signal_name(signal) {
                Some(name) => format!("signal {signal} ({name})"),
                None => format!("signal {signal}"),
            },
            (None, None) => "an unknown status".to_owned(),
        }
    }
}

impl ExitInfo {
    /// `: stderr: <line>`, or the last lines one per line; empty without stderr.
    pub(crate) fn stderr_text(&self) -> String {
        match self.stderr_tail.as_slice() {
            [] => String::new(),
            [line] => format!(": stderr: {line}"),
            lines => format!(": stderr (last {} lines):\n    {}", lines.len(), lines.join("\n    ")),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

impl fmt::Display for ExitInfo {
    /// `status 1: stderr: <last line>`, or the status and the last lines, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.status_text(), self.stderr_text())
    }
}

/// How [`PluginProcess::shutdown`](crate::PluginProcess::shutdown) ended the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself after `tether/shutdown` and the end of its stdin, within the grace
    /// period.
    Gracefully,
    /// It exited after SIGTERM, within the second grace period.
    Terminated,
    /// Its process group was killed with SIGKILL.
    Killed,
    /// It had already exited before the shutdown began.
    AlreadyExited,
}

/// What [`PluginProcess::shutdown`](crate::PluginProcess::shutdown) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// How the plugin was ended.
    pub stopped: Stopped,
    /// How its process exited.
    pub exit: ExitInfo,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_info_reads_well() {
        let e =
            ExitInfo { code: Some(1), signal: None, stderr_tail: vec!["This program is a plugin".into()] };
        assert_eq!(e.to_string(), "status 1: stderr: This program is a plugin");
        let e = ExitInfo { code: None, signal: Some(9), stderr_tail: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "signal 9 (SIGKILL): stderr (last 2 lines):\n    a\n    b");
    }
}
