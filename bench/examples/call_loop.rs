//! A profiling driver, not a benchmark: starts the `kv` plugin through `tether-host` (as a
//! library loaded in process, or as a child process) and makes N sequential `kv.get` calls of a
//! 16 B value through the typed client, on a current-thread runtime. Run it twice under
//! `valgrind --tool=callgrind` (or `--tool=dhat`) with two values of N: the difference of the
//! totals divided by the difference of N is the cost of one call, without start-up
//! (BENCHMARKS.md, "In-process plugins", the profile).
//!
//! `cargo run --release -p tether-bench --example call_loop -- library <libkv.so> <N>`
//! `cargo run --release -p tether-bench --example call_loop -- process <kv program> <N>`
//!
//! With `CALL_LOOP_MEDIAN` set, each call is timed too and the median and percentiles printed.

use std::time::Instant;

use anyhow::{bail, Context as _};
use tether::interfaces::KvClient;
use tether::spec::interfaces::kv;
use tether_host::PluginProcess;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [way, path, calls] = args.as_slice() else {
        bail!("usage: call_loop library|process <path> <calls>");
    };
    let calls: u64 = calls.parse().context("the number of calls")?;
    let builder = match way.as_str() {
        "library" => PluginProcess::library(path),
        "process" => PluginProcess::builder(path),
        other => bail!("{other}: expected library or process"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let plugin = builder.offer::<KvClient>().start().await?;
        let store = plugin.client::<KvClient>()?;
        store.put(&kv::PutParams { key: "k".into(), value: vec![7u8; 16].into() }).await?;
        let key = kv::KeyParams { key: "k".into() };
        let timed = std::env::var_os("CALL_LOOP_MEDIAN").is_some();
        let mut each = Vec::with_capacity(if timed { calls as usize } else { 0 });
        let start = Instant::now();
        for _ in 0..calls {
            let t = timed.then(Instant::now);
            let got = store.get(&key).await?;
            anyhow::ensure!(got.value.len() == 16, "got {} bytes", got.value.len());
            if let Some(t) = t {
                each.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        let elapsed = start.elapsed();
        if calls > 0 {
            eprintln!("{calls} calls, {:.3} µs per call (mean)", elapsed.as_secs_f64() * 1e6 / calls as f64);
        }
        if !each.is_empty() {
            // With CALL_LOOP_MEDIAN set: each call timed, for the median and the 99th percentile.
            each.sort_by(f64::total_cmp);
            let at = |q: f64| each[((each.len() - 1) as f64 * q) as usize];
            eprintln!("median {:.2} µs, p90 {:.2} µs, p99 {:.2} µs", at(0.5), at(0.9), at(0.99));
        }
        plugin.shutdown().await;
        Ok(())
    })
}
