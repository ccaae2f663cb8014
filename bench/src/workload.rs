//! A fixed, untimed workload for profilers (the `workload` mode of `tether-bench-helper`):
//!
//! `tether-bench-helper workload ct|mt get|tput64|put16m|get16m|callback|start|start-no-pdeathsig|start-floor N PROGRAM [ARGS...]`
//!
//! starts the plugin through `tether-host` and makes N calls. Profile the host side with
//! `valgrind --tool=callgrind target/release/tether-bench-helper workload ...`, the plugin side
//! by making `valgrind --tool=callgrind PLUGIN` the program. See `BENCHMARKS.md`.

use anyhow::{bail, Context as _};
use tether::interfaces::{CounterClient, KvClient};
use tether::spec::interfaces::{counter, kv};
use tether_host::PluginProcess;

use crate::config::Flavor;
use crate::direct::HostAdder;

/// The child side.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [flavor, what, n, program, rest @ ..] = args else {
        bail!(
            "usage: tether-bench-helper workload ct|mt get|tput64|put16m|get16m|callback|start|start-no-pdeathsig|start-floor N PROGRAM [ARGS...]"
        );
    };
    let flavor = match flavor.as_str() {
        "ct" => Flavor::CurrentThread,
        "mt" => Flavor::MultiThread,
        other => bail!("unknown runtime {other}"),
    };
    let n: usize = n.parse().context("N")?;
    let rt = flavor.runtime()?;
    if what == "start-floor" {
        let ballast = vec![1u8; n << 20];
        let mut times = Vec::new();
        rt.block_on(async {
            for _ in 0..21 {
                let t = std::time::Instant::now();
                let plugin =
                    crate::mini::MiniPlugin::start(program.as_ref(), rest, kv::NAME, kv::VERSIONS).await?;
                plugin.client.get("k").await.ok();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                plugin.shutdown().await?;
            }
            anyhow::Ok(())
        })?;
        times.sort_by(f64::total_cmp);
        println!(
            "floor client: start to first answer, median of 21 with {} MiB of heap: {:.2} ms samples_ms={}",
            ballast.len() >> 20,
            times[10],
            samples(&times)
        );
        return Ok(());
    }
    if what == "start" || what == "start-no-pdeathsig" {
        // N MiB of touched heap first: how the start depends on the host's size.
        let ballast = vec![1u8; n << 20];
        let mut times = Vec::new();
        rt.block_on(async {
            for _ in 0..21 {
                let t = std::time::Instant::now();
                // `start` turns the parent-death signal on (off by default since issue 16 round
                // 3): then the host spawns with `fork` instead of `posix_spawn` (vfork), which is
                // what the signal costs.
                let plugin = PluginProcess::builder(program)
                    .args(rest)
                    .interface(kv::NAME, kv::VERSIONS.iter().copied())
                    .parent_death_signal(what == "start")
                    .start()
                    .await?;
                let client = plugin.client::<KvClient>()?;
                client.get(&kv::KeyParams { key: "k".into() }).await.ok();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                plugin.shutdown().await;
            }
            anyhow::Ok(())
        })?;
        times.sort_by(f64::total_cmp);
        println!(
            "start to first answer, median of 21 with {} MiB of heap: {:.2} ms samples_ms={}",
            ballast.len() >> 20,
            times[10],
            samples(&times)
        );
        return Ok(());
    }
    rt.block_on(async {
        let interface = if what == "callback" { counter::NAME } else { kv::NAME };
        let versions = if what == "callback" { counter::VERSIONS } else { kv::VERSIONS };
        let plugin = PluginProcess::builder(program)
            .args(rest)
            .interface(interface, versions.iter().copied())
            .start()
            .await?;
        match what.as_str() {
            "get" | "put16m" | "get16m" => {
                let client = plugin.client::<KvClient>()?;
                let value = if what == "get" { vec![7u8; 16] } else { vec![7u8; 16 << 20] };
                client.put(&kv::PutParams { key: "k".into(), value: value.clone().into() }).await?;
                for _ in 0..n {
                    if what == "put16m" {
                        client.put(&kv::PutParams { key: "k".into(), value: value.clone().into() }).await?;
                    } else {
                        client.get(&kv::KeyParams { key: "k".into() }).await?;
                    }
                }
            }
            "tput64" => {
                let client = plugin.client::<KvClient>()?;
                client.put(&kv::PutParams { key: "k".into(), value: vec![7u8; 16].into() }).await?;
                let mut tasks = Vec::new();
                for _ in 0..64 {
                    let client = client.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..n / 64 {
                            client.get(&kv::KeyParams { key: "k".into() }).await?;
                        }
                        anyhow::Ok(())
                    }));
                }
                for t in tasks {
                    t.await??;
                }
            }
            "callback" => {
                let client = plugin.client::<CounterClient>()?;
                for _ in 0..n {
                    let adder = plugin.serve_handle(tether::interfaces::AdderServer::new(HostAdder));
                    client
                        .put(&counter::PutParams { key: "k".into(), value: 1, adder: adder.clone() })
                        .handle(&adder)
                        .await?;
                }
            }
            other => bail!("unknown workload {other}"),
        }
        plugin.shutdown().await;
        anyhow::Ok(())
    })
}

fn samples(times: &[f64]) -> String {
    times.iter().map(|t| format!("{t:.4}")).collect::<Vec<_>>().join(",")
}

/// Runs the `start`/`start-floor` workload in a fresh helper process after `mib` MiB of host
/// heap; the start-to-first-answer times (ms) of its 21 starts.
pub fn run_start(
    helper: &std::path::Path,
    what: &str,
    mib: usize,
    cmd: &crate::scenario::PluginCmd,
) -> anyhow::Result<Vec<f64>> {
    let text = crate::scenario::run_helper(
        helper,
        &["workload", "ct", what, &mib.to_string()],
        cmd,
        "start workload",
    )?;
    let list = crate::scenario::helper_field(&text, "samples_ms")?;
    list.split(',').map(|v| v.parse::<f64>().with_context(|| format!("sample {v:?}"))).collect()
}
