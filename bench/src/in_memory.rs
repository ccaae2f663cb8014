//! The connection alone, in memory: a host `Session` and a plugin-side `Session` serving `kv`
//! over a `tokio::io::duplex`, both on the calling runtime. No process, no pipe, no syscall per
//! message: what the connection itself costs per call. (This was a `#[ignore]`d measurement in
//! `rust-sdk/tests/perf.rs`; measurements live here, where they are reported.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use tether::interfaces::{Kv, KvClient, KvServer};
use tether::spec::interfaces::kv;
use tether::spec::Empty;
use tether::{Error, Options, Router, Session};

use crate::config::Counts;
use crate::report::{Results, Unit};
use crate::stats;

/// An in-memory store.
#[derive(Default)]
struct MemKv(Mutex<HashMap<String, Vec<u8>>>);

impl Kv for MemKv {
    async fn put(&self, p: kv::PutParams, _cx: tether::RequestContext) -> Result<Empty, Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(p.key, p.value.into_vec());
        Ok(Empty {})
    }
    async fn get(&self, p: kv::KeyParams) -> Result<kv::GetResult, Error> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let value = map.get(&p.key).ok_or_else(|| kv::key_not_found(&p.key))?;
        Ok(kv::GetResult { value: value.clone().into() })
    }
    async fn delete(&self, p: kv::KeyParams) -> Result<kv::DeleteResult, Error> {
        Ok(kv::DeleteResult {
            existed: self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&p.key).is_some(),
        })
    }
}

/// Measures sequential `kv.get`s and the throughput with 64 in flight, and adds them to `r`
/// under `prefix` (`mem.current_thread`, for example). Call on the runtime to measure.
pub async fn measure(c: &Counts, prefix: &str, section: &str, r: &mut Results) -> anyhow::Result<()> {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let host = Session::start(ar, aw, Options::new(), Router::new());
    let _plugin =
        Session::start(br, bw, Options::new(), Router::new().interface(KvServer::new(MemKv::default())));
    let store = KvClient::new(host.peer().clone());
    store.put(&kv::PutParams { key: "k".into(), value: vec![0x5a; 16].into() }).await.context("kv.put")?;
    let get = kv::KeyParams { key: "k".into() };
    for _ in 0..c.warmup {
        store.get(&get).await.context("kv.get")?;
    }
    eprintln!("  {prefix}: sequential kv.get");
    let mut micros = Vec::with_capacity(c.get_seq);
    for _ in 0..c.get_seq {
        let t = Instant::now();
        store.get(&get).await.context("kv.get")?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    r.add(
        format!("{prefix}.get_seq"),
        section,
        "sequential kv.get, 16 B value",
        Unit::Micros,
        stats::of_costs(&micros),
    );
    const IN_FLIGHT: usize = 64;
    eprintln!("  {prefix}: {IN_FLIGHT} in flight");
    let calls = c.tput_calls.max(IN_FLIGHT).div_ceil(IN_FLIGHT) * IN_FLIGHT;
    let mut secs = Vec::new();
    for rep in 0..=c.tput_reps {
        let t = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let store = store.clone();
                let get = get.clone();
                tokio::spawn(async move {
                    for _ in 0..calls / IN_FLIGHT {
                        store.get(&get).await?;
                    }
                    Ok::<_, tether::CallError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.context("a caller task")?.context("kv.get")?;
        }
        if rep > 0 {
            secs.push(t.elapsed().as_secs_f64());
        }
    }
    r.add(
        format!("{prefix}.tput_64"),
        section,
        format!("kv.get throughput, {IN_FLIGHT} in flight"),
        Unit::CallsPerSec,
        stats::of_rates(calls as f64, &secs),
    );
    host.peer().close("measured");
    Ok(())
}
