//! Cancelled calls that must leave nothing behind: a `counter.put` whose `sum` callback never
//! answers by itself (the host's [`StallAdder`]), cancelled by the host once the plugin is
//! waiting on it. A plugin that follows SPEC.md §7.2 then cancels its `sum` invoke, and the
//! host drops the handler; [`Stalls`] counts the handlers still running, so a cancellation
//! that was not passed on shows as a `stalled` handler instead of going unnoticed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tether::interfaces::{Adder, AdderServer, CounterClient};
use tether::spec::interfaces::counter;
use tether_host::PluginProcess;
use tokio::sync::watch;

/// How long a stalled `sum` handler waits before it gives up by itself (it should be dropped
/// long before, when the plugin cancels the invoke).
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How long the host waits for the plugin to reach `sum`, and then to cancel it. Generous:
/// the machine is loaded, and a correct plugin is far quicker.
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// The time-out of a put cancelled by time-out: short, since its `sum` never answers anyway.
const SHORT_TIMEOUT: Duration = Duration::from_millis(20);
/// The key the cancelled puts use (the completed puts use another).
const KEY: &str = "soak-cancelled";

/// How many `sum` handlers of [`StallAdder`]s were entered, and how many still run.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    entered: u64,
    live: u64,
}

/// The gauge shared by the stalled handlers.
#[derive(Debug, Clone)]
pub struct Stalls(Arc<watch::Sender<Counts>>);

impl Default for Stalls {
    fn default() -> Self {
        Stalls(Arc::new(watch::Sender::new(Counts::default())))
    }
}

impl Stalls {
    /// `sum` handlers still running.
    pub fn live(&self) -> u64 {
        self.0.borrow().live
    }

    async fn wait(&self, what: &str, until: impl FnMut(&Counts) -> bool) -> anyhow::Result<()> {
        let mut rx = self.0.subscribe();
        let reached = tokio::time::timeout(STEP_LIMIT, rx.wait_for(until)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => bail!("{what} within {STEP_LIMIT:?}"),
        }
    }
}

/// Marks a handler as running until dropped (when it finishes or its future is dropped).
struct Running(Stalls);

impl Running {
    fn enter(stalls: &Stalls) -> Self {
        stalls.0.send_modify(|c| {
            c.entered += 1;
            c.live += 1;
        });
        Running(stalls.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0 .0.send_modify(|c| c.live = c.live.saturating_sub(1));
    }
}

/// An `adder` whose `sum` does not answer: it waits until its request is cancelled (its future
/// dropped), or gives up after [`STALL_LIMIT`].
pub struct StallAdder(pub Stalls);

impl Adder for StallAdder {
    async fn sum(&self, _: counter::SumParams) -> Result<counter::SumResult, tether::Error> {
        let _running = Running::enter(&self.0);
        tokio::time::sleep(STALL_LIMIT).await;
        Err(tether::Error::internal("the stalled sum was never cancelled"))
    }
}

/// How the host gives up on the call.
#[derive(Debug, Clone, Copy)]
pub enum How {
    /// Drops the call's future once the plugin waits on `sum` (`$/cancelRequest` is sent).
    Drop,
    /// A short time-out on the call ([`tether_host::PluginCall::timeout`]).
    Timeout,
}

/// One cancelled `counter.put`: checks that the call did not complete, and that no `sum`
/// handler still runs afterwards (the plugin passed the cancellation on).
pub async fn cancelled_put(plugin: &PluginProcess, stalls: &Stalls, how: How) -> anyhow::Result<()> {
    let adder = plugin.serve_handle(AdderServer::new(StallAdder(stalls.clone())));
    let params = counter::PutParams { key: KEY.into(), value: 1, adder: adder.clone() };
    let entered = stalls.0.borrow().entered;
    match how {
        How::Drop => {
            let client = plugin.client::<CounterClient>()?;
            let put = client.put(&params).handle(&adder);
            tokio::select! {
                answer = put => bail!("a put whose sum never answers was answered: {answer:?}"),
                reached = stalls.wait("the plugin did not invoke sum", |c| c.entered > entered) => reached?,
            }
            // The put's future is dropped here: the host sends $/cancelRequest for it.
        }
        How::Timeout => {
            let answer = plugin.call::<counter::Put>(&params).timeout(SHORT_TIMEOUT).await;
            match answer {
                Err(e) if e.is_timeout() => {}
                other => bail!("a put whose sum never answers did not time out: {other:?}"),
            }
        }
    }
    stalls
        .wait("the plugin did not cancel its sum invoke after the put was cancelled", |c| c.live == 0)
        .await
        .with_context(|| format!("{} cancelled by {how:?}", plugin.name()))
}
