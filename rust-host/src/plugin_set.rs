//! [`PluginSet`]: many named plugins, started in parallel and shut down within one grace period.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::builder::PluginBuilder;
use crate::error::Error;
use crate::exit::ShutdownReport;
use crate::supervisor::{PluginEvent, Supervised, Supervision, EVENT_CAPACITY};

/// Many plugins by name: each a [`PluginBuilder`] with its [`Supervision`], started together
/// ([`start_all`](Self::start_all), in parallel) and ended together
/// ([`shutdown_all`](Self::shutdown_all), in parallel within one grace period). Dropping the
/// set kills every plugin it started.
pub struct PluginSet {
    configured: BTreeMap<String, (PluginBuilder, Supervision)>,
    running: BTreeMap<String, Supervised>,
    events: broadcast::Sender<PluginEvent>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .field("running", &self.running)
            .finish()
    }
}

impl Default for PluginSet {
    fn default() -> Self {
        PluginSet::new()
    }
}

impl PluginSet {
    /// An empty set.
    pub fn new() -> Self {
        PluginSet {
            configured: BTreeMap::new(),
            running: BTreeMap::new(),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    /// Adds a plugin without supervision ([`Supervision::none`]): started by
    /// [`start_all`](Self::start_all), never restarted. `name` is its name in the set, in logs
    /// and errors (it replaces the builder's).
    pub fn insert(&mut self, name: impl Into<String>, builder: PluginBuilder) -> &mut Self {
        self.insert_supervised(name, builder, Supervision::none())
    }

    /// Adds a supervised plugin. A plugin of the same name not started yet is replaced; one
    /// already started is replaced (and killed) by the next [`start_all`](Self::start_all).
    pub fn insert_supervised(
        &mut self,
        name: impl Into<String>,
        builder: PluginBuilder,
        supervision: Supervision,
    ) -> &mut Self {
        let name = name.into();
        let builder = builder.name(name.clone());
        self.configured.insert(name, (builder, supervision));
        self
    }

    /// Starts every plugin added since the last call, all at once (each within its own start
    /// time-out). The plugins that started run, whatever happened to the others; when some did
    /// not, [`Error::SetStart`] names each with its error.
    pub async fn start_all(&mut self) -> Result<(), Error> {
        let configured = std::mem::take(&mut self.configured);
        let starts = configured.into_iter().map(|(name, (builder, supervision))| {
            let events = self.events.clone();
            async move { (name, Supervised::start_in(builder, supervision, Some(events)).await) }
        });
        let mut failed = Vec::new();
        for (name, started) in join_all(starts).await {
            match started {
                Ok(plugin) => {
                    self.running.insert(name, plugin);
                }
                Err(error) => failed.push((name, error)),
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Error::SetStart { failed }),
        }
    }

    /// A started plugin by name.
    pub fn get(&self, name: &str) -> Option<&Supervised> {
        self.running.get(name)
    }

    /// The names of the started plugins.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.running.keys().map(String::as_str)
    }

    /// The events of every plugin of the set ([`PluginEvent::plugin`] says which).
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.events.subscribe()
    }

    /// Shuts every started plugin down, all at once, within `grace` overall: each gets half of
    /// it to answer `tether/shutdown` and exit, then SIGTERM and the other half, then SIGKILL
    /// (so the whole takes about `grace`, plus the kills). Says how each ended (`None` for a
    /// plugin that was not running: idle, given up). The set is empty afterwards.
    pub async fn shutdown_all(&mut self, grace: Duration) -> BTreeMap<String, Option<ShutdownReport>> {
        let running = std::mem::take(&mut self.running);
        let step = grace / 2;
        let ends = running.into_iter().map(|(name, plugin)| async move {
            let report = plugin.shutdown_within(step).await;
            (name, report)
        });
        join_all(ends).await.into_iter().collect()
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        match pending {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
