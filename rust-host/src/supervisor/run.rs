//! The supervisor task: starts the plugin, watches it (exit, health, idleness, commands) and
//! applies the restart policy, until it gives up, the application shuts it down, or the last
//! handle is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::builder::PluginBuilder;
use crate::exit::ExitInfo;
use crate::plugin_process::PluginProcess;
use crate::supervisor::config::{HealthCheck, Supervision};
use crate::supervisor::events::PluginEvent;
use crate::supervisor::state::{Command, Ended, Phase, Shared};

/// Why an incarnation ended.
enum Outcome {
    Exited(ExitInfo),
    Unhealthy(String),
    Idle,
    Stop(Duration, tokio::sync::oneshot::Sender<Option<crate::exit::ShutdownReport>>),
    /// Every handle was dropped.
    Orphaned,
}

/// The restarts within the window and the back-off.
struct Restarts {
    times: VecDeque<Instant>,
    delay: Duration,
    attempt: u32,
}

pub(crate) struct Supervisor {
    pub(crate) shared: Arc<Shared>,
    pub(crate) builder: PluginBuilder,
    pub(crate) supervision: Supervision,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
}

impl Supervisor {
    /// Runs until the plugin is stopped for good. `first` is the incarnation started by
    /// [`Supervised::start`](crate::Supervised), `None` for a lazy start.
    /// Its phase is already `Running` and its `Started` event emitted.
    pub(crate) async fn run(mut self, first: Option<Arc<PluginProcess>>) {
        let mut restarts =
            Restarts { times: VecDeque::new(), delay: self.supervision.backoff.initial, attempt: 0 };
        let mut next = first;
        let mut restarting = false;
        loop {
            let process = match next.take() {
                Some(process) => process,
                None => {
                    if !restarting && !self.wait_for_wake().await {
                        return;
                    }
                    self.shared.set_phase(Phase::Starting);
                    let started = tokio::select! {
                        biased;
                        stop = stop_command(&mut self.commands) => return self.end_without_process(stop),
                        started = self.builder.clone().start() => started,
                    };
                    match started {
                        Ok(process) => {
                            let process = Arc::new(process);
                            self.running(&process);
                            if restarting {
                                self.shared.emit(PluginEvent::Restarted {
                                    plugin: self.shared.name.clone(),
                                    pid: process.pid(),
                                    attempt: restarts.attempt,
                                });
                            }
                            process
                        }
                        Err(error) => {
                            let reason = format!("the start failed: {error}");
                            let restart = self.supervision.restart.restarts(true);
                            let delay = match restart {
                                true => self.admit_restart(&mut restarts),
                                false => None,
                            };
                            self.shared.emit(PluginEvent::StartFailed {
                                plugin: self.shared.name.clone(),
                                error: error.to_string(),
                                restarting: delay.is_some(),
                            });
                            match delay {
                                Some(delay) => {
                                    if !self.back_off(delay).await {
                                        return;
                                    }
                                    restarting = true;
                                    continue;
                                }
                                None => return self.end_for_good(restart, reason),
                            }
                        }
                    }
                }
            };
            let pid = process.pid();
            let up_since = Instant::now();
            let outcome = tokio::select! {
                biased;
                command = stop_command(&mut self.commands) => match command {
                    Some((grace, reply)) => Outcome::Stop(grace, reply),
                    None => Outcome::Orphaned,
                },
                exit = process.exited() => Outcome::Exited(exit),
                reason = health(&process, self.supervision.health) => Outcome::Unhealthy(reason),
                () = idle(&self.shared, self.supervision.idle_timeout) => Outcome::Idle,
            };
            let (exit, failure, unhealthy) = match outcome {
                Outcome::Orphaned => {
                    process.kill_shared().await;
                    return;
                }
                Outcome::Stop(grace, reply) => {
                    self.shared.set_phase(Phase::Stopping);
                    let report = process.end(grace).await;
                    self.shared.set_phase(Phase::Ended(Arc::new(Ended::ShutDown)));
                    self.shared.emit(PluginEvent::Stopped {
                        plugin: self.shared.name.clone(),
                        report: Some(report.clone()),
                    });
                    let _ = reply.send(Some(report));
                    return;
                }
                Outcome::Idle => {
                    // The phase is already `Stopping` (set under the activity lock).
                    let report = process.end(self.shared.grace).await;
                    self.shared.emit(PluginEvent::IdleStopped {
                        plugin: self.shared.name.clone(),
                        pid,
                        report,
                    });
                    restarting = false;
                    continue;
                }
                Outcome::Unhealthy(reason) => {
                    self.shared.set_phase(Phase::Stopping);
                    self.shared.emit(PluginEvent::Unhealthy {
                        plugin: self.shared.name.clone(),
                        pid,
                        reason: reason.clone(),
                    });
                    (process.kill_shared().await, true, Some(reason))
                }
                Outcome::Exited(exit) => {
                    let failure = !exit.success();
                    (exit, failure, None)
                }
            };
            self.shared.set_phase(Phase::Stopping);
            drop(process);
            if up_since.elapsed() >= self.supervision.backoff.reset_after {
                restarts.delay = self.supervision.backoff.initial;
                restarts.attempt = 0;
            }
            let reason = match unhealthy {
                Some(why) => format!("process {pid} was unhealthy ({why}) and was killed: {exit}"),
                None => format!("process {pid} exited with {exit}"),
            };
            let restart = self.supervision.restart.restarts(failure);
            let delay = match restart {
                true => self.admit_restart(&mut restarts),
                false => None,
            };
            self.shared.emit(PluginEvent::Exited {
                plugin: self.shared.name.clone(),
                pid,
                exit,
                restarting: delay.is_some(),
                delay: delay.unwrap_or_default(),
            });
            match delay {
                Some(delay) => {
                    if !self.back_off(delay).await {
                        return;
                    }
                    restarting = true;
                }
                None => return self.end_for_good(restart, reason),
            }
        }
    }

    /// Makes `process` the current incarnation and says so.
    fn running(&self, process: &Arc<PluginProcess>) {
        self.shared.set_phase(Phase::Running(process.clone()));
        self.shared.emit(started(&self.shared.name, process));
    }

    /// Counts a restart within the window and says the delay before it; `None` when the limit
    /// is reached (the caller then gives up).
    fn admit_restart(&self, restarts: &mut Restarts) -> Option<Duration> {
        let now = Instant::now();
        let window = self.supervision.window;
        while restarts.times.front().is_some_and(|t| now.duration_since(*t) >= window) {
            restarts.times.pop_front();
        }
        if restarts.times.len() >= self.supervision.max_restarts as usize {
            return None;
        }
        restarts.times.push_back(now);
        restarts.attempt += 1;
        let delay = restarts.delay;
        restarts.delay = self.supervision.backoff.next(delay);
        Some(delay)
    }

    /// Stops for good after a failure or an exit that is not restarted: given up when the
    /// policy wanted a restart, else simply exited.
    fn end_for_good(&self, wanted_restart: bool, reason: String) {
        let ended = match wanted_restart {
            true => {
                let restarts = self.supervision.max_restarts;
                let window = self.supervision.window;
                let reason = format!("{restarts} restarts within {window:?}; last: {reason}");
                self.shared.emit(PluginEvent::GaveUp {
                    plugin: self.shared.name.clone(),
                    restarts,
                    window,
                    reason: reason.clone(),
                });
                Ended::GaveUp(reason)
            }
            false => Ended::Exited(format!("{reason}, and the restart policy does not restart it")),
        };
        self.shared.set_phase(Phase::Ended(Arc::new(ended)));
    }

    /// Ends on a command while no process runs (idle, starting, backing off).
    fn end_without_process(&self, stop: Option<(Duration, StopReply)>) {
        self.shared.set_phase(Phase::Ended(Arc::new(Ended::ShutDown)));
        if let Some((_, reply)) = stop {
            self.shared.emit(PluginEvent::Stopped { plugin: self.shared.name.clone(), report: None });
            let _ = reply.send(None);
        }
    }

    /// Waits out a back-off; `false` when a command ended the supervision meanwhile.
    async fn back_off(&mut self, delay: Duration) -> bool {
        self.shared.set_phase(Phase::BackingOff);
        tokio::select! {
            biased;
            stop = stop_command(&mut self.commands) => {
                self.end_without_process(stop);
                false
            }
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Waits, idle, for a call; `false` when a command ended the supervision instead.
    async fn wait_for_wake(&mut self) -> bool {
        self.shared.set_phase(Phase::Idle);
        match self.commands.recv().await {
            Some(Command::Wake) => true,
            Some(Command::Stop { grace, reply }) => {
                self.end_without_process(Some((grace, reply)));
                false
            }
            None => {
                self.end_without_process(None);
                false
            }
        }
    }
}

/// The next stop command (wakes are ignored: the plugin is not idle); `None` when every handle
/// is gone.
async fn stop_command(commands: &mut mpsc::UnboundedReceiver<Command>) -> Option<(Duration, StopReply)> {
    loop {
        match commands.recv().await? {
            Command::Wake => continue,
            Command::Stop { grace, reply } => return Some((grace, reply)),
        }
    }
}

type StopReply = tokio::sync::oneshot::Sender<Option<crate::exit::ShutdownReport>>;

/// Pings the plugin by the health check; returns why it is unhealthy (never without a check).
async fn health(process: &PluginProcess, check: Option<HealthCheck>) -> String {
    let Some(check) = check else { return std::future::pending().await };
    let mut failures = 0;
    loop {
        tokio::time::sleep(check.interval).await;
        match process.ping(check.timeout).await {
            Ok(()) => failures = 0,
            // A ping that failed because the plugin exited: the exit is the news.
            Err(error) if error.exit().is_some() => std::future::pending::<()>().await,
            Err(error) => {
                failures += 1;
                if failures >= check.failures {
                    return format!("{failures} failed pings in a row; the last: {error}");
                }
            }
        }
    }
}

/// Returns once the plugin has had no call in flight and no lease for `idle`, having set the
/// phase to `Stopping` under the activity lock (so a call that starts now waits for the next
/// start rather than take the process being stopped). Never returns without an idle time-out.
async fn idle(shared: &Shared, idle: Option<Duration>) {
    let Some(idle) = idle else { return std::future::pending().await };
    loop {
        let deadline = {
            let activity = shared.activity();
            (activity.busy == 0).then_some(activity.last + idle)
        };
        match deadline {
            None => shared.quiet.notified().await,
            Some(deadline) => {
                tokio::time::sleep_until(deadline).await;
                let activity = shared.activity();
                if activity.busy == 0 && activity.last + idle <= Instant::now() {
                    shared.set_phase(Phase::Stopping);
                    return;
                }
            }
        }
    }
}

/// The `Started` event of an incarnation.
pub(crate) fn started(plugin: &Arc<str>, process: &PluginProcess) -> PluginEvent {
    PluginEvent::Started {
        plugin: plugin.clone(),
        pid: process.pid(),
        protocol_version: process.protocol_version(),
        interfaces: process.interfaces().iter().map(|(n, i)| (n.clone(), i.version)).collect(),
    }
}
