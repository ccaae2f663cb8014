//! [`Supervised`]: a plugin kept running by a supervisor task (restart policy with back-off and
//! a limit, health check, idle stop and lazy start), and called like a [`PluginProcess`].

mod config;
mod events;
mod run;
mod state;

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tether_spec::RequestMethod;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

pub use self::config::{Backoff, HealthCheck, RestartPolicy, Supervision};
pub use self::events::PluginEvent;

use self::run::Supervisor;
use self::state::{Activity, Busy, Command, Owner, Phase, Shared};
use crate::builder::PluginBuilder;
use crate::error::Error;
use crate::exit::ShutdownReport;
use crate::plugin_process::PluginProcess;

/// How many events a subscriber may fall behind before it misses some
/// ([`broadcast::error::RecvError::Lagged`]).
pub const EVENT_CAPACITY: usize = 256;

/// A supervised plugin: a [`PluginBuilder`] run by a supervisor task under a [`Supervision`].
///
/// Calls ([`call`](Self::call), [`call_raw`](Self::call_raw), or a [`lease`](Self::lease) for a
/// typed client) go to the current incarnation. While the plugin is starting, backing off
/// before a restart, or idle, a call waits for the (re)start, bounded by its own time-out (else
/// the builder's call time-out; without either, until the plugin runs or the supervisor gives
/// up). Once the supervisor gave up, or the plugin exited and the policy does not restart it,
/// calls fail at once with [`Error::GaveUp`] or [`Error::NotRunning`].
///
/// Calls in flight when the plugin crashes fail with its exit ([`Error::Exited`], with the
/// status and the last lines of stderr); they are not retried, since a call is not known to be
/// idempotent. Calls made after the restart go to the new incarnation, which starts with fresh
/// state.
///
/// Clones share the supervisor. Dropping the last clone kills the plugin's process group; use
/// [`shutdown`](Self::shutdown) to end it gracefully.
#[derive(Clone)]
pub struct Supervised {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised").field("name", &self.owner.shared.name).field("pid", &self.pid()).finish()
    }
}

impl Supervised {
    /// Starts a supervised plugin: at once (the first start's error is returned, nothing is
    /// supervised then), or, with [`Supervision::lazy`], on the first call.
    pub async fn start(builder: PluginBuilder, supervision: Supervision) -> Result<Supervised, Error> {
        Supervised::start_in(builder, supervision, None).await
    }

    pub(crate) async fn start_in(
        builder: PluginBuilder,
        supervision: Supervision,
        set_events: Option<broadcast::Sender<PluginEvent>>,
    ) -> Result<Supervised, Error> {
        let first = match supervision.lazy {
            true => {
                builder.validate(&builder.plugin_name())?;
                None
            }
            false => Some(Arc::new(builder.clone().start().await?)),
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (phase, _) = watch::channel(match &first {
            Some(process) => Phase::Running(process.clone()),
            None => Phase::Idle,
        });
        let shared = Arc::new(Shared {
            name: Arc::from(builder.plugin_name()),
            phase,
            activity: Mutex::new(Activity { busy: 0, last: Instant::now() }),
            quiet: Default::default(),
            events,
            set_events,
            call_timeout: builder.call_timeout,
            grace: builder.grace,
        });
        if let Some(process) = &first {
            shared.emit(run::started(&shared.name, process));
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let supervisor = Supervisor { shared: shared.clone(), builder, supervision, commands: receiver };
        tokio::spawn(supervisor.run(first));
        Ok(Supervised { owner: Arc::new(Owner { commands, shared }) })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// The plugin's name in logs, errors and events.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The current incarnation's process id, while one runs.
    pub fn pid(&self) -> Option<u32> {
        match &*self.shared().phase.borrow() {
            Phase::Running(process) => Some(process.pid()),
            _ => None,
        }
    }

    /// The events from now on: starts, exits, restarts, giving up, health, idle stops. The
    /// `Started` event of the first incarnation of an eager plugin is sent before
    /// [`start`](Self::start) returns; to see it, subscribe to a [`PluginSet`](crate::PluginSet)
    /// before `start_all`, or start lazily and subscribe before the first call.
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.shared().events.subscribe()
    }

    /// The current incarnation, started if idle, waiting for a (re)start at most `wait` (without
    /// a limit when `None`). The lease keeps the plugin from an idle stop while it lives, and
    /// pins this incarnation: after a crash its calls fail, and a new lease reaches the next one.
    /// Use it for typed clients (`lease.client::<KvClient>()`) and handles.
    pub async fn lease(&self, wait: Option<Duration>) -> Result<Lease, Error> {
        let busy = Busy::new(self.shared());
        let process = self.current(wait).await?;
        Ok(Lease { process, _busy: busy })
    }

    /// Waits for a running incarnation (waking an idle plugin), at most `wait`.
    async fn current(&self, wait: Option<Duration>) -> Result<Arc<PluginProcess>, Error> {
        let shared = self.shared();
        let mut phase = shared.phase.subscribe();
        let mut last_seen = "starting";
        let waiting = async {
            loop {
                {
                    let now = phase.borrow_and_update();
                    match &*now {
                        Phase::Running(process) => return Ok(process.clone()),
                        Phase::Ended(ended) => return Err(ended.error(&shared.name)),
                        Phase::Idle => {
                            last_seen = "idle";
                            let _ = self.owner.commands.send(Command::Wake);
                        }
                        Phase::Starting => last_seen = "starting",
                        Phase::BackingOff => last_seen = "waiting to restart",
                        Phase::Stopping => last_seen = "stopping",
                    }
                }
                if phase.changed().await.is_err() {
                    return Err(Error::NotRunning {
                        plugin: shared.name.to_string(),
                        reason: "its supervisor ended".to_owned(),
                    });
                }
            }
        };
        match wait {
            None => waiting.await,
            Some(wait) => match tokio::time::timeout(wait, waiting).await {
                Ok(result) => result,
                Err(_) => Err(Error::NotReady {
                    plugin: shared.name.to_string(),
                    waited: wait,
                    phase: last_seen.to_owned(),
                }),
            },
        }
    }

    /// Calls a typed method on the current incarnation, like [`PluginProcess::call`]; the
    /// call's time-out (else the builder's) bounds the wait for a (re)start and the call
    /// together.
    pub fn call<'a, M: RequestMethod>(&'a self, params: &'a M::Params) -> SupervisedCall<'a, M::Result>
    where
        M::Params: Sync,
    {
        SupervisedCall {
            supervised: self,
            method: Cow::Borrowed(M::METHOD),
            timeout: self.shared().call_timeout,
            send: Box::new(move |process: &PluginProcess, timeout| match timeout {
                Some(t) => Box::pin(process.call::<M>(params).timeout(t).into_future()),
                None => Box::pin(process.call::<M>(params).into_future()),
            }),
        }
    }

    /// Calls a method by name with JSON params, like [`PluginProcess::call_raw`]; same
    /// time-out rules as [`call`](Self::call).
    pub fn call_raw(&self, method: &str, params: serde_json::Value) -> SupervisedCall<'_, serde_json::Value> {
        let name = method.to_owned();
        SupervisedCall {
            supervised: self,
            method: Cow::Owned(method.to_owned()),
            timeout: self.shared().call_timeout,
            send: Box::new(move |process: &PluginProcess, timeout| {
                let call = process.call_raw(&name, params);
                match timeout {
                    Some(t) => Box::pin(call.timeout(t).into_future()),
                    None => Box::pin(call.into_future()),
                }
            }),
        }
    }

    /// Ends the plugin gracefully for good ([`PluginProcess::shutdown`], with the builder's
    /// grace period) and stops supervising it: no restart follows. `None` when no process was
    /// running (idle, backing off, already ended).
    pub async fn shutdown(&self) -> Option<ShutdownReport> {
        self.shutdown_within(self.shared().grace).await
    }

    /// The same with `grace` for each step of the shutdown.
    pub(crate) async fn shutdown_within(&self, grace: Duration) -> Option<ShutdownReport> {
        let (reply, answer) = oneshot::channel();
        if self.owner.commands.send(Command::Stop { grace, reply }).is_err() {
            return None;
        }
        answer.await.ok().flatten()
    }
}

/// The current incarnation of a [`Supervised`] plugin, held: a [`PluginProcess`] (through
/// `Deref`) for typed clients, handles and calls, kept from an idle stop while the lease lives.
pub struct Lease {
    process: Arc<PluginProcess>,
    _busy: Busy,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lease").field(&self.process).finish()
    }
}

impl Deref for Lease {
    type Target = PluginProcess;

    fn deref(&self) -> &PluginProcess {
        &self.process
    }
}

type Sent<'p, R> = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'p>>;
type Send_<'a, R> = Box<dyn for<'p> FnOnce(&'p PluginProcess, Option<Duration>) -> Sent<'p, R> + Send + 'a>;

/// A call to a [`Supervised`] plugin, not sent until awaited: it waits for a running
/// incarnation (starting an idle plugin), then calls it, within one time-out.
#[must_use = "a call does nothing until it is awaited"]
pub struct SupervisedCall<'a, R> {
    supervised: &'a Supervised,
    method: Cow<'static, str>,
    timeout: Option<Duration>,
    send: Send_<'a, R>,
}

impl<R> std::fmt::Debug for SupervisedCall<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedCall")
            .field("plugin", &self.supervised.name())
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R> SupervisedCall<'_, R> {
    /// Bounds the wait for a running plugin and the call together by `timeout`, instead of the
    /// builder's call time-out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IntoFuture for SupervisedCall<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let started = Instant::now();
            let lease = self.supervised.lease(self.timeout).await?;
            let left = self.timeout.map(|t| t.saturating_sub(started.elapsed()));
            if left == Some(Duration::ZERO) {
                return Err(Error::NotReady {
                    plugin: self.supervised.name().to_owned(),
                    waited: started.elapsed(),
                    phase: "starting".to_owned(),
                });
            }
            (self.send)(&lease, left).await
        })
    }
}
