//! [`PluginEvent`]: what a supervisor reports to the application, and to `tracing`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::exit::{ExitInfo, ShutdownReport};
use crate::logs;

/// Something that happened to a supervised plugin ([`Supervised::subscribe`](crate::Supervised)).
/// Each event is also a `tracing` event (target [`LOG_TARGET`](crate::LOG_TARGET)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PluginEvent {
    /// An incarnation completed its handshake.
    Started {
        /// The plugin's name.
        plugin: Arc<str>,
        /// Its process id.
        pid: u32,
        /// The negotiated core protocol version.
        protocol_version: u32,
        /// Each declared interface and its negotiated version.
        interfaces: BTreeMap<String, u32>,
    },
    /// A start failed (the error's message); a restart may follow, as for an exit.
    StartFailed {
        /// The plugin's name.
        plugin: Arc<str>,
        /// Why it failed, as [`Error`](crate::Error)'s message says.
        error: String,
        /// Whether the plugin will be started again.
        restarting: bool,
    },
    /// The plugin process exited without the application asking for it (a crash, an exit by
    /// itself, or a kill after the health check).
    Exited {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The process id that exited.
        pid: u32,
        /// Its status, signal and the last lines of stderr.
        exit: ExitInfo,
        /// Whether a restart follows, after `delay`.
        restarting: bool,
        /// The back-off before the restart (zero without one).
        delay: Duration,
    },
    /// A restart completed its handshake (after the [`Started`](Self::Started) of the new
    /// incarnation).
    Restarted {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The new process id.
        pid: u32,
        /// The restart's number since the back-off was last reset (1 for the first).
        attempt: u32,
    },
    /// Too many restarts within the window: the plugin stays stopped and calls fail.
    GaveUp {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The restarts counted within the window.
        restarts: u32,
        /// The window.
        window: Duration,
        /// The last failure.
        reason: String,
    },
    /// The health check found the plugin unhealthy; it is killed and the policy applies.
    Unhealthy {
        /// The plugin's name.
        plugin: Arc<str>,
        /// Its process id.
        pid: u32,
        /// What the last ping said.
        reason: String,
    },
    /// The plugin was idle for the idle time-out and was shut down; the next call starts it.
    IdleStopped {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The process id that was stopped.
        pid: u32,
        /// How its shutdown went.
        report: ShutdownReport,
    },
    /// The application shut the plugin down ([`Supervised::shutdown`](crate::Supervised));
    /// the report is `None` when no process was running.
    Stopped {
        /// The plugin's name.
        plugin: Arc<str>,
        /// How its shutdown went.
        report: Option<ShutdownReport>,
    },
}

impl PluginEvent {
    /// The plugin the event is about.
    pub fn plugin(&self) -> &str {
        match self {
            PluginEvent::Started { plugin, .. }
            | PluginEvent::StartFailed { plugin, .. }
            | PluginEvent::Exited { plugin, .. }
            | PluginEvent::Restarted { plugin, .. }
            | PluginEvent::GaveUp { plugin, .. }
            | PluginEvent::Unhealthy { plugin, .. }
            | PluginEvent::IdleStopped { plugin, .. }
            | PluginEvent::Stopped { plugin, .. } => plugin,
        }
    }

    /// Writes the event to `tracing`: failures are warnings (giving up is an error), the rest
    /// information.
    pub(crate) fn trace(&self) {
        let plugin = self.plugin();
        match self {
            PluginEvent::Started { pid, protocol_version, interfaces, .. } => tracing::info!(
                target: logs::LOG_TARGET, plugin, pid, protocol_version, ?interfaces, "supervised plugin started"
            ),
            PluginEvent::StartFailed { error, restarting, .. } => {
                tracing::warn!(target: logs::LOG_TARGET, plugin, restarting, "supervised plugin failed to start: {error}")
            }
            PluginEvent::Exited { pid, exit, restarting, delay, .. } => tracing::warn!(
                target: logs::LOG_TARGET, plugin, pid, restarting, ?delay, "supervised plugin exited with {exit}"
            ),
            PluginEvent::Restarted { pid, attempt, .. } => {
                tracing::info!(target: logs::LOG_TARGET, plugin, pid, attempt, "supervised plugin restarted")
            }
            PluginEvent::GaveUp { restarts, window, reason, .. } => tracing::error!(
                target: logs::LOG_TARGET, plugin, restarts, ?window, "gave up restarting the plugin: {reason}"
            ),
            PluginEvent::Unhealthy { pid, reason, .. } => {
                tracing::warn!(target: logs::LOG_TARGET, plugin, pid, "plugin unhealthy, killing it: {reason}")
            }
            PluginEvent::IdleStopped { pid, report, .. } => tracing::info!(
                target: logs::LOG_TARGET, plugin, pid, stopped = ?report.stopped, "idle plugin stopped"
            ),
            PluginEvent::Stopped { report, .. } => tracing::info!(
                target: logs::LOG_TARGET, plugin, stopped = ?report.as_ref().map(|r| r.stopped), "supervised plugin shut down"
            ),
        }
    }
}
