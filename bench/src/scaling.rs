//! How cost grows: latency and calls/s against the number of calls in flight (1 to 512), MB/s
//! against the value size (16 B to 64 MiB), and host memory, idle CPU and calls/s against the
//! number of live plugins in one host (1, 16, 256). Tether's Rust `kv` plugin through
//! `tether-host` (current_thread), beside go-plugin (when measured in the same run) and the raw
//! pipe; drawn as SVG plots by [`crate::plot`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tether::interfaces::KvClient;
use tether::spec::interfaces::kv;
use tether_host::PluginProcess;

use crate::config::{Counts, Mode};
use crate::go_plugin::{self, Built};
use crate::report::{Results, Unit};
use crate::scenario::{helper_field, rss_kib, run_helper, PluginCmd};
use crate::stats;

/// Calls in flight measured.
pub const INFLIGHT: [usize; 4] = [1, 8, 64, 512];
/// Value sizes measured, with their labels.
pub const SIZES: [(usize, &str); 6] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (16 << 20, "16MiB"),
    (64 << 20, "64MiB"),
];
/// Live plugins in one host (the smoke test stops at 4).
pub const FLEET: [usize; 3] = [1, 16, 256];

/// The section titles, which the plots look up too.
pub const SECTION_INFLIGHT: &str =
    "How cost grows: calls in flight (kv.get of 16 B; Rust plugin, current_thread host)";
/// See [`SECTION_INFLIGHT`].
pub const SECTION_SIZE: &str =
    "How cost grows: value size (kv.put and kv.get; Rust plugin, current_thread host)";
/// See [`SECTION_INFLIGHT`].
pub const SECTION_FLEET: &str = "How cost grows: live plugins in one host (Rust kv, current_thread host)";

/// The frame limit the size rows need: a 64 MiB value with its JSON (SPEC.md §2.5).
const FRAME_LIMIT: usize = 80 << 20;

/// Repetitions for a value of `size` bytes: about 256 MiB moved each way in the full run, at
/// least 3 and at most 2,000.
fn reps_for(size: usize, mode: Mode) -> usize {
    let budget: usize = match mode {
        Mode::Full => 256 << 20,
        Mode::Quick => 64 << 20,
        Mode::Smoke => 1,
    };
    (budget / size).clamp(if mode == Mode::Smoke { 1 } else { 3 }, 2_000)
}

async fn start_kv(cmd: &PluginCmd) -> anyhow::Result<(PluginProcess, KvClient)> {
    let plugin = PluginProcess::builder(&cmd.program)
        .args(&cmd.args)
        .interface(kv::NAME, kv::VERSIONS.iter().copied())
        .max_frame_size(FRAME_LIMIT)
        .start()
        .await?;
    let client = plugin.client::<KvClient>()?;
    Ok((plugin, client))
}

/// Measures the in-flight and value-size rows (Tether, go-plugin, pipe). Run inside a
/// current_thread runtime.
pub async fn measure(
    helper: &Path,
    kv_cmd: &PluginCmd,
    go: Option<&Built>,
    c: &Counts,
    mode: Mode,
    r: &mut Results,
) -> anyhow::Result<()> {
    let (plugin, client) = start_kv(kv_cmd).await.context("starting the kv plugin")?;
    client.put(&kv::PutParams { key: "k".into(), value: b"0123456789abcdef".to_vec().into() }).await?;
    for _ in 0..c.warmup {
        client.get(&kv::KeyParams { key: "k".into() }).await?;
    }
    let pp =
        crate::pipe::ping_pong(helper, 64, c.warmup, c.ping_pong / 5, false).context("pipe ping-pong")?;
    r.add(
        "scale.pipe.inflight_1.latency",
        SECTION_INFLIGHT,
        "raw pipe ping-pong, 64 B",
        Unit::Micros,
        stats::of_costs(&pp.micros),
    );
    for n in INFLIGHT {
        eprintln!("  scaling: {n} in flight");
        let calls = c.tput_calls.max(n).div_ceil(n) * n;
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::with_capacity(calls / n);
                for _ in 0..calls / n {
                    let t = Instant::now();
                    client.get(&kv::KeyParams { key: "k".into() }).await?;
                    mine.push(t.elapsed().as_secs_f64() * 1e6);
                }
                anyhow::Ok(mine)
            }));
        }
        let mut lat = Vec::with_capacity(calls);
        for t in tasks {
            lat.extend(t.await.context("a calling task")??);
        }
        let wall = started.elapsed().as_secs_f64();
        r.add(
            format!("scale.rust.inflight_{n}.latency"),
            SECTION_INFLIGHT,
            format!("Tether, {n} in flight: latency per call"),
            Unit::Micros,
            stats::of_costs(&lat),
        );
        r.add(
            format!("scale.rust.inflight_{n}.tput"),
            SECTION_INFLIGHT,
            format!("Tether, {n} in flight: calls/s"),
            Unit::CallsPerSec,
            stats::one(calls as f64 / wall),
        );
        if let Some(go) = go {
            let calls = (calls / 4).max(n).div_ceil(n) * n;
            let args = [
                "-inflight".to_owned(),
                n.to_string(),
                "-calls".to_owned(),
                calls.to_string(),
                "-warmup".to_owned(),
                c.warmup.min(500).to_string(),
            ];
            match go_plugin::run_raw(go, "grpc", "latency", &args) {
                Ok(out) => {
                    r.add(
                        format!("scale.go.inflight_{n}.latency"),
                        SECTION_INFLIGHT,
                        format!("go-plugin, {n} in flight: latency per call"),
                        Unit::Micros,
                        stats::of_costs(&out.values),
                    );
                    r.add(
                        format!("scale.go.inflight_{n}.tput"),
                        SECTION_INFLIGHT,
                        format!("go-plugin, {n} in flight: calls/s"),
                        Unit::CallsPerSec,
                        stats::one(out.work / out.wall.max(1e-9)),
                    );
                }
                Err(e) => r.note(format!("scale.go.inflight_{n}: {e:#}")),
            }
        }
    }

    for (size, label) in SIZES {
        eprintln!("  scaling: {label} values");
        let reps = reps_for(size, mode);
        let value: tether::spec::Bytes = vec![0xa5u8; size].into();
        let key = format!("v{label}");
        let (mut puts, mut gets) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        for rep in 0..=reps {
            let t = Instant::now();
            client
                .put(&kv::PutParams { key: key.clone(), value: value.clone() })
                .await
                .with_context(|| format!("kv.put of {label}"))?;
            let put = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let got = client
                .get(&kv::KeyParams { key: key.clone() })
                .await
                .with_context(|| format!("kv.get of {label}"))?;
            let get = t.elapsed().as_secs_f64();
            if got.value.len() != size {
                bail!("kv.get of {label} returned {} bytes", got.value.len());
            }
            if rep > 0 {
                puts.push(put);
                gets.push(get);
            }
        }
        let mb = size as f64 / 1e6;
        r.add(
            format!("scale.rust.size_{label}.put"),
            SECTION_SIZE,
            format!("Tether, {label} put"),
            Unit::MegabytesPerSec,
            stats::of_rates(mb, &puts),
        );
        r.add(
            format!("scale.rust.size_{label}.get"),
            SECTION_SIZE,
            format!("Tether, {label} get"),
            Unit::MegabytesPerSec,
            stats::of_rates(mb, &gets),
        );
        match crate::pipe::attachment(helper, size, reps) {
            Ok((puts, gets)) => {
                r.add(
                    format!("scale.pipe.size_{label}.put"),
                    SECTION_SIZE,
                    format!("raw pipe, {label} one way and an ack"),
                    Unit::MegabytesPerSec,
                    stats::of_rates(mb, &puts),
                );
                r.add(
                    format!("scale.pipe.size_{label}.get"),
                    SECTION_SIZE,
                    format!("raw pipe, {label} asked for and read"),
                    Unit::MegabytesPerSec,
                    stats::of_rates(mb, &gets),
                );
            }
            Err(e) => r.note(format!("scale.pipe.size_{label}: {e}")),
        }
        if let Some(go) = go {
            for (workload, what) in [("put", "put"), ("get", "get")] {
                let args = [
                    "-size".to_owned(),
                    size.to_string(),
                    "-n".to_owned(),
                    reps.to_string(),
                    "-warmup".to_owned(),
                    "1".to_owned(),
                ];
                match go_plugin::run_raw(go, "grpc", workload, &args) {
                    Ok(out) => r.add(
                        format!("scale.go.size_{label}.{what}"),
                        SECTION_SIZE,
                        format!("go-plugin, {label} {what}"),
                        Unit::MegabytesPerSec,
                        stats::of_rates(mb, &out.values),
                    ),
                    Err(e) => r.note(format!("scale.go.size_{label}.{what}: {e:#}")),
                }
            }
        }
    }
    let report = plugin.shutdown().await;
    if !report.exit.success() {
        bail!("the kv plugin did not stop cleanly: {}", report.exit.status_text());
    }
    Ok(())
}

/// The live-plugin rows, each size in a fresh helper process (so that memory freed earlier
/// cannot hide growth): host RSS per plugin, idle CPU per plugin, calls/s across all.
pub fn measure_fleet(helper: &Path, kv_cmd: &PluginCmd, c: &Counts, mode: Mode, r: &mut Results) {
    let sizes: &[usize] = if mode == Mode::Smoke { &[1, 4] } else { &FLEET };
    for &n in sizes {
        eprintln!("  scaling: {n} live plugins");
        let calls = c.tput_calls.max(64);
        let result =
            run_helper(helper, &["fleet", &n.to_string(), &calls.to_string()], kv_cmd, "fleet child")
                .and_then(|text| {
                    let field = |name: &str| -> anyhow::Result<f64> {
                        helper_field(&text, name)?.parse().with_context(|| format!("{name} in {text:?}"))
                    };
                    Ok((
                        field("host_kib_per_plugin")?,
                        field("idle_cpu_us_per_plugin_per_s")?,
                        field("calls_per_s")?,
                        field("start_ms")?,
                    ))
                });
        match result {
            Ok((rss, idle, tput, start)) => {
                r.add(
                    format!("scale.fleet_{n}.host_rss_per_plugin"),
                    SECTION_FLEET,
                    format!("{n} plugins: host RSS per plugin"),
                    Unit::Kib,
                    stats::one(rss),
                );
                r.add(
                    format!("scale.fleet_{n}.idle_cpu"),
                    SECTION_FLEET,
                    format!("{n} plugins: idle CPU per plugin (µs per s, host + plugin)"),
                    Unit::Micros,
                    stats::one(idle),
                );
                r.add(
                    format!("scale.fleet_{n}.tput"),
                    SECTION_FLEET,
                    format!("{n} plugins: kv.get calls/s across all, 64 in flight"),
                    Unit::CallsPerSec,
                    stats::one(tput),
                );
                r.add(
                    format!("scale.fleet_{n}.start"),
                    SECTION_FLEET,
                    format!("{n} plugins: started in parallel, all answered"),
                    Unit::Millis,
                    stats::one(start),
                );
            }
            Err(e) => r.note(format!("{n} live plugins: {e:#}")),
        }
    }
}

/// The helper's side of [`measure_fleet`]: `fleet N CALLS PROGRAM [ARGS...]`. Starts N plugins in
/// parallel, measures host RSS before and after, host and plugin CPU over one idle second, then
/// CALLS `kv.get`s from 64 tasks spread round-robin over the plugins; prints `name=value` words.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [n, calls, program, rest @ ..] = args else {
        bail!("usage: tether-bench-helper fleet N CALLS PROGRAM [ARGS...]");
    };
    let n: usize = n.parse().context("N")?;
    let calls: usize = calls.parse().context("CALLS")?;
    let cmd = PluginCmd { program: program.into(), args: rest.to_vec(), checksum_file: program.into() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // One plugin first, so that the runtime and the host's statics exist before the reading.
        let (first, first_client) = start_kv(&cmd).await?;
        first_client
            .put(&kv::PutParams { key: "k".into(), value: b"0123456789abcdef".to_vec().into() })
            .await?;
        let before = rss_kib().ok_or_else(|| anyhow!("no VmRSS"))?;
        let t = Instant::now();
        let started = futures::future::join_all((0..n).map(|_| async {
            let (p, c) = start_kv(&cmd).await?;
            c.put(&kv::PutParams { key: "k".into(), value: b"0123456789abcdef".to_vec().into() }).await?;
            anyhow::Ok((p, c))
        }))
        .await;
        let start_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut plugins = Vec::with_capacity(n);
        for s in started {
            plugins.push(s?);
        }
        let after = rss_kib().ok_or_else(|| anyhow!("no VmRSS"))?;
        let cpu = |plugins: &[(PluginProcess, KvClient)]| -> u64 {
            stats::cpu_ns(None).unwrap_or(0)
                + plugins.iter().filter_map(|(p, _)| stats::cpu_ns(Some(p.pid()))).sum::<u64>()
        };
        let idle_before = cpu(&plugins);
        let idle = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_ns = cpu(&plugins).saturating_sub(idle_before) as f64 / idle.elapsed().as_secs_f64();
        let clients: Vec<KvClient> = plugins.iter().map(|(_, c)| c.clone()).collect();
        let t = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let clients = clients.clone();
                tokio::spawn(async move {
                    for j in 0..calls / 64 {
                        let c = &clients[(i + j * 64) % clients.len()];
                        c.get(&kv::KeyParams { key: "k".into() }).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await.context("a calling task")??;
        }
        let tput = (calls / 64 * 64) as f64 / t.elapsed().as_secs_f64();
        println!(
            "host_kib_per_plugin={} idle_cpu_us_per_plugin_per_s={} calls_per_s={tput} start_ms={start_ms}",
            (after - before) / n as f64,
            idle_ns / 1e3 / n as f64
        );
        for (p, _) in plugins {
            p.shutdown().await;
        }
        first.shutdown().await;
        anyhow::Ok(())
    })
}
