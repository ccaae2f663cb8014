//! What a supervisor and the callers of a supervised plugin share: the phase of the plugin, the
//! calls in flight (for the idle stop), the commands to the supervisor, the events.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::error::Error;
use crate::exit::ShutdownReport;
use crate::plugin_process::PluginProcess;
use crate::supervisor::events::PluginEvent;

/// Where a supervised plugin is.
#[derive(Clone)]
pub(crate) enum Phase {
    /// Not running; the next call starts it (lazy start, or after an idle stop).
    Idle,
    /// Being started.
    Starting,
    /// Running: calls go to this incarnation.
    Running(Arc<PluginProcess>),
    /// Waiting for the back-off before a restart.
    BackingOff,
    /// Being stopped (idle, unhealthy, or shut down).
    Stopping,
    /// Stopped for good: calls fail with this.
    Ended(Arc<Ended>),
}

/// Why a supervised plugin stopped for good.
pub(crate) enum Ended {
    /// It exited and the policy does not restart it.
    Exited(String),
    /// Too many restarts within the window.
    GaveUp(String),
    /// The application shut it down.
    ShutDown,
}

impl Ended {
    pub(crate) fn error(&self, plugin: &str) -> Error {
        match self {
            Ended::Exited(reason) => Error::NotRunning { plugin: plugin.to_owned(), reason: reason.clone() },
            Ended::GaveUp(reason) => Error::GaveUp { plugin: plugin.to_owned(), reason: reason.clone() },
            Ended::ShutDown => Error::NotRunning {
                plugin: plugin.to_owned(),
                reason: "it was shut down by the application".to_owned(),
            },
        }
    }
}

/// What the application asks of a supervisor.
pub(crate) enum Command {
    /// Start the plugin if it is idle.
    Wake,
    /// Shut it down for good, with this grace period for each step, and say how.
    Stop { grace: Duration, reply: oneshot::Sender<Option<ShutdownReport>> },
}

/// Calls in flight and leases held, and when the last one ended.
pub(crate) struct Activity {
    pub(crate) busy: usize,
    pub(crate) last: Instant,
}

/// Shared by the supervisor task and every handle.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) activity: Mutex<Activity>,
    /// Signalled when the last call in flight ends.
    pub(crate) quiet: Notify,
    pub(crate) events: broadcast::Sender<PluginEvent>,
    /// The events of a [`PluginSet`](crate::PluginSet) the plugin belongs to.
    pub(crate) set_events: Option<broadcast::Sender<PluginEvent>>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) grace: Duration,
}

impl Shared {
    pub(crate) fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub(crate) fn emit(&self, event: PluginEvent) {
        event.trace();
        if let Some(set) = &self.set_events {
            let _ = set.send(event.clone());
        }
        let _ = self.events.send(event);
    }
}

/// One call in flight or one lease: keeps the plugin from an idle stop while it lives.
pub(crate) struct Busy(Arc<Shared>);

impl Busy {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.activity().busy += 1;
        Busy(shared.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut activity = self.0.activity();
        activity.busy = activity.busy.saturating_sub(1);
        activity.last = Instant::now();
        if activity.busy == 0 {
            self.0.quiet.notify_one();
        }
    }
}

/// Owned by every clone of a [`Supervised`](crate::Supervised): when the last one goes, the
/// command channel closes (the supervisor kills the plugin and ends) and the current process
/// group is killed at once.
pub(crate) struct Owner {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Phase::Running(process) = &*self.shared.phase.borrow() {
            process.kill_now();
        }
    }
}
