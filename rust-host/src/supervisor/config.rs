//! [`Supervision`]: how a supervised plugin is restarted, checked and stopped when idle.

use std::time::Duration;

/// When a plugin that exited is started again (kubelet's `restartPolicy`, supervisord's
/// `autorestart`). A shutdown the application asked for never restarts the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never: once the plugin exits, calls fail with [`Error::NotRunning`](crate::Error).
    Never,
    /// After a failure: an exit with a non-zero status, a signal, a failed start, or an unhealthy
    /// plugin killed by the health check. A plugin that exits with status 0 by itself stays
    /// stopped.
    OnFailure,
    /// After any exit the application did not ask for, status 0 included.
    Always,
}

impl RestartPolicy {
    /// Whether an exit (a failure or not) leads to a restart.
    pub(crate) fn restarts(self, failure: bool) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failure,
            RestartPolicy::Always => true,
        }
    }
}

/// The delay before each restart: `initial`, multiplied by `multiplier` after each restart, at
/// most `max`; back to `initial` once an incarnation stayed up for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first restart (200 ms by default).
    pub initial: Duration,
    /// The longest delay (30 s by default).
    pub max: Duration,
    /// The factor between two delays (2 by default; values below 1 count as 1).
    pub multiplier: f64,
    /// How long a plugin must stay up for the next delay to be `initial` again (60 s by
    /// default).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after `delay`.
    pub(crate) fn next(&self, delay: Duration) -> Duration {
        // `try_from`: an infinite or overflowing product is the cap, not a panic.
        let next = delay.as_secs_f64() * self.multiplier.max(1.0);
        Duration::try_from_secs_f64(next).unwrap_or(self.max).min(self.max)
    }
}

/// A periodic `tether/ping` (SPEC.md §4.5): after `failures` pings in a row without an answer
/// within `timeout`, the plugin is unhealthy; its process group is killed and the restart
/// policy applies (an unhealthy plugin counts as a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// The time between two pings.
    pub interval: Duration,
    /// How long a ping may take.
    pub timeout: Duration,
    /// How many failed pings in a row make the plugin unhealthy (at least 1).
    pub failures: u32,
}

/// How a [`Supervised`](crate::Supervised) plugin is kept running.
///
/// The defaults: restart on failure, back-off from 200 ms doubling up to 30 s (reset after 60 s
/// up), at most 5 restarts within 60 s and then give up, no health check, no idle stop, started
/// at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Supervision {
    pub(crate) restart: RestartPolicy,
    pub(crate) backoff: Backoff,
    pub(crate) max_restarts: u32,
    pub(crate) window: Duration,
    pub(crate) health: Option<HealthCheck>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) lazy: bool,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            restart: RestartPolicy::OnFailure,
            backoff: Backoff::default(),
            max_restarts: 5,
            window: Duration::from_secs(60),
            health: None,
            idle_timeout: None,
            lazy: false,
        }
    }
}

impl Supervision {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Supervision::default()
    }

    /// No supervision: never restarted, no health check, no idle stop (a plain plugin in a
    /// [`PluginSet`](crate::PluginSet)).
    pub fn none() -> Self {
        Supervision { restart: RestartPolicy::Never, ..Supervision::default() }
    }

    /// When the plugin is restarted.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// The delays before restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// At most `max_restarts` restarts within any `window`; the next failure gives up (the
    /// plugin stays stopped and calls fail with [`Error::GaveUp`](crate::Error)).
    pub fn max_restarts(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.window = window;
        self
    }

    /// Pings the plugin every `interval`; `failures` pings in a row without an answer within
    /// `timeout` make it unhealthy (see [`HealthCheck`]).
    pub fn health_check(mut self, interval: Duration, timeout: Duration, failures: u32) -> Self {
        self.health = Some(HealthCheck { interval, timeout, failures: failures.max(1) });
        self
    }

    /// Stops the plugin gracefully once no call was in flight and no lease held for `idle`, and
    /// starts it again on the next call (nushell's plugin garbage collection). `None`, the
    /// default, keeps it running.
    pub fn idle_timeout(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = idle.into();
        self
    }

    /// Starts the plugin on the first call instead of at once.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            ..Backoff::default()
        };
        assert_eq!(b.next(Duration::from_millis(100)), Duration::from_millis(200));
        assert_eq!(b.next(Duration::from_millis(200)), Duration::from_millis(350));
        let flat = Backoff { multiplier: 0.5, ..b };
        assert_eq!(flat.next(Duration::from_millis(100)), Duration::from_millis(100));
        let wild = Backoff { multiplier: f64::INFINITY, ..b };
        assert_eq!(wild.next(Duration::from_millis(100)), Duration::from_millis(350));
        let nan = Backoff { multiplier: f64::NAN, ..b };
        assert_eq!(nan.next(Duration::from_millis(100)), Duration::from_millis(100));
    }

    #[test]
    fn policies_say_when_to_restart() {
        assert!(!RestartPolicy::Never.restarts(true));
        assert!(RestartPolicy::OnFailure.restarts(true));
        assert!(!RestartPolicy::OnFailure.restarts(false));
        assert!(RestartPolicy::Always.restarts(false));
    }
}
