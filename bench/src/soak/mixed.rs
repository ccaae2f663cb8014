//! The soak's mixed calls: `kv` puts and gets of 16 B, a 1 MiB put and get, `counter.put`s
//! that call the host's `adder` back, and cancelled puts, in batches of eight calls in flight.

use anyhow::{ensure, Context as _};
use futures::future::join_all;
use tether::interfaces::{AdderServer, CounterClient, KvClient};
use tether::spec::interfaces::{counter, kv};
use tether_host::PluginProcess;

use super::cancel::{self, Stalls};
use crate::direct::HostAdder;

/// Calls in flight at once.
pub const BATCH: u64 = 8;
/// Keys the small puts and gets cycle through.
const SMALL_KEYS: u64 = 64;
/// The key of the completed `counter.put`s, whose count `counter.get` must give back.
pub const COUNTED_KEY: &str = "soak-counted";
const BIG_KEY: &str = "soak-big";
const MIB: usize = 1 << 20;
const SMALL: &[u8; 16] = b"0123456789abcdef";

/// The kinds of calls, with how many of each were made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// `kv.put` of 16 B.
    pub small_puts: u64,
    /// `kv.get` of 16 B.
    pub small_gets: u64,
    /// `kv.put` of 1 MiB.
    pub big_puts: u64,
    /// `kv.get` of 1 MiB.
    pub big_gets: u64,
    /// `counter.put` with a `sum` callback answered by the host.
    pub callbacks: u64,
    /// `counter.put` dropped by the host while its `sum` was pending.
    pub dropped: u64,
    /// `counter.put` that timed out while its `sum` was pending.
    pub timed_out: u64,
}

impl Tally {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.small_puts
            + self.small_gets
            + self.big_puts
            + self.big_gets
            + self.callbacks
            + self.dropped
            + self.timed_out
    }

    fn count(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::SmallPut => &mut self.small_puts,
            Kind::SmallGet => &mut self.small_gets,
            Kind::BigPut => &mut self.big_puts,
            Kind::BigGet => &mut self.big_gets,
            Kind::Callback => &mut self.callbacks,
            Kind::Dropped => &mut self.dropped,
            Kind::TimedOut => &mut self.timed_out,
        };
        *slot += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SmallPut,
    SmallGet,
    BigPut,
    BigGet,
    Callback,
    Dropped,
    TimedOut,
}

/// Call number `i`'s kind. In each thousand: a 1 MiB put (0) and get (500), a put cancelled
/// by a drop (250) and one by a time-out (750), a hundred callbacks (5, 15, ...; never two in
/// one batch, so that the counted sum is exact), and small puts (odd) and gets (even).
fn kind(i: u64) -> Kind {
    match i % 1000 {
        0 => Kind::BigPut,
        500 => Kind::BigGet,
        250 => Kind::Dropped,
        750 => Kind::TimedOut,
        k if k % 10 == 5 => Kind::Callback,
        k if k % 2 == 1 => Kind::SmallPut,
        _ => Kind::SmallGet,
    }
}

fn small_key(i: u64) -> String {
    format!("soak-{}", (i / 2) % SMALL_KEYS)
}

/// The two plugins of the mixed calls and what the calls share.
pub struct Mixed<'a> {
    /// The `kv` plugin.
    pub kv_plugin: &'a PluginProcess,
    /// The `counter` plugin.
    pub counter_plugin: &'a PluginProcess,
    /// The stalled `sum` handlers of the cancelled puts.
    pub stalls: &'a Stalls,
    kv: KvClient,
    counter: CounterClient,
    big: Vec<u8>,
}

impl<'a> Mixed<'a> {
    /// Typed clients of both plugins; stores the small keys, so that every get finds its key.
    pub async fn new(
        kv_plugin: &'a PluginProcess,
        counter_plugin: &'a PluginProcess,
        stalls: &'a Stalls,
    ) -> anyhow::Result<Self> {
        let kv = kv_plugin.client::<KvClient>()?;
        for k in 0..SMALL_KEYS {
            kv.put(&kv::PutParams { key: small_key(k * 2), value: SMALL.to_vec().into() }).await?;
        }
        let counter = counter_plugin.client::<CounterClient>()?;
        let big = (0..MIB).map(|i| (i % 251) as u8).collect();
        Ok(Mixed { kv_plugin, counter_plugin, stalls, kv, counter, big })
    }

    /// Calls `from..to` in batches of [`BATCH`], counted into `tally`.
    pub async fn run(&self, from: u64, to: u64, tally: &mut Tally) -> anyhow::Result<()> {
        let mut i = from;
        while i < to {
            let end = (i + BATCH).min(to);
            for done in join_all((i..end).map(|n| self.call(n))).await {
                tally.count(done?);
            }
            i = end;
        }
        Ok(())
    }

    /// The value of the counted key, which must equal the callbacks made since the counter
    /// plugin started.
    pub async fn counted(&self) -> anyhow::Result<i64> {
        Ok(self.counter.get(&counter::GetParams { key: COUNTED_KEY.into() }).await?.value)
    }

    async fn call(&self, i: u64) -> anyhow::Result<Kind> {
        let k = kind(i);
        match k {
            Kind::SmallPut => {
                self.kv.put(&kv::PutParams { key: small_key(i), value: SMALL.to_vec().into() }).await?;
            }
            Kind::SmallGet => {
                let got = self.kv.get(&kv::KeyParams { key: small_key(i) }).await?;
                ensure!(
                    got.value.len() == SMALL.len(),
                    "kv.get of {} gave {} bytes",
                    small_key(i),
                    got.value.len()
                );
            }
            Kind::BigPut => {
                self.kv.put(&kv::PutParams { key: BIG_KEY.into(), value: self.big.clone().into() }).await?;
            }
            Kind::BigGet => {
                let got = self.kv.get(&kv::KeyParams { key: BIG_KEY.into() }).await?;
                ensure!(
                    got.value[..] == self.big[..],
                    "the 1 MiB value came back different ({} bytes)",
                    got.value.len()
                );
            }
            Kind::Callback => {
                let adder = self.counter_plugin.serve_handle(AdderServer::new(HostAdder));
                let params = counter::PutParams { key: COUNTED_KEY.into(), value: 1, adder: adder.clone() };
                self.counter.put(&params).handle(&adder).await?;
            }
            Kind::Dropped => {
                cancel::cancelled_put(self.counter_plugin, self.stalls, cancel::How::Drop).await?
            }
            Kind::TimedOut => {
                cancel::cancelled_put(self.counter_plugin, self.stalls, cancel::How::Timeout).await?
            }
        }
        Ok(k)
    }
}

/// Checks the counted key against the callbacks made (a callback's sum lost or doubled, or a
/// cancelled put that stored anyway under the counted key, shows here).
pub async fn check_counted(mixed: &Mixed<'_>, tally: &Tally) -> anyhow::Result<()> {
    let counted = mixed.counted().await.context("counter.get")?;
    ensure!(
        counted == tally.callbacks as i64,
        "counter.get gave {counted} after {} completed callbacks",
        tally.callbacks
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_calls_hold_every_kind_and_no_batch_two_callbacks() {
        let mut t = Tally::default();
        (0..1000).for_each(|i| t.count(kind(i)));
        assert_eq!((t.big_puts, t.big_gets, t.dropped, t.timed_out, t.callbacks), (1, 1, 1, 1, 100));
        assert_eq!(t.total(), 1000);
        for batch in 0..1000 / BATCH {
            let callbacks =
                (batch * BATCH..(batch + 1) * BATCH).filter(|&i| kind(i) == Kind::Callback).count();
            assert!(callbacks <= 1, "batch {batch}");
        }
    }
}
