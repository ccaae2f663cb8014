//! The measurements through a host connection, written once for any backend: `tether-host`
//! (the figures that count) and the benchmark's minimal client (the floor beside them).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::config::Counts;
use crate::report::{ids, Results, Unit};
use crate::stats;

/// A connection to a `kv` plugin.
pub trait KvConn: Clone + Send + Sync + 'static {
    /// `kv.put`.
    fn put(&self, key: &str, value: &[u8]) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// `kv.get`: the length of the value.
    fn get(&self, key: &str) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// A connection to a `counter` plugin.
pub trait CounterConn: Clone + Send + Sync + 'static {
    /// `counter.put`, whose handler invokes `sum` on the host's `adder` handle.
    fn put(&self, key: &str, value: i64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How to run a plugin: the command, and the file the checksum covers.
#[derive(Debug, Clone)]
pub struct PluginCmd {
    /// The program.
    pub program: PathBuf,
    /// Its arguments (the script for an interpreter).
    pub args: Vec<String>,
    /// The file the SHA-256 option pins (the binary, or the script).
    pub checksum_file: PathBuf,
}

/// Runs the bench helper binary in a fresh process (so that memory the bench freed earlier
/// cannot skew it) with `args` followed by the plugin's command line; its stdout, where it
/// prints `name=value` words.
pub fn run_helper(helper: &Path, args: &[&str], cmd: &PluginCmd, what: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(helper)
        .args(args)
        .arg(&cmd.program)
        .args(&cmd.args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {what}"))?;
    if !out.status.success() {
        anyhow::bail!("the {what} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the `name=value` word in the helper's output.
pub fn helper_field<'a>(text: &'a str, name: &str) -> anyhow::Result<&'a str> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        .ok_or_else(|| anyhow::anyhow!("no {name} in {text:?}"))
}

/// Starts and stops plugins.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// A `kv` connection.
    type Kv: KvConn;
    /// A `counter` connection.
    type Counter: CounterConn;
    /// Whatever keeps a plugin running.
    type PluginProcess;
    /// Starts a `kv` plugin, optionally pinned to the SHA-256 of its file.
    async fn start_kv(
        &self,
        cmd: &PluginCmd,
        checksum: bool,
    ) -> anyhow::Result<(Self::Kv, Self::PluginProcess)>;
    /// Starts a `counter` plugin.
    async fn start_counter(&self, cmd: &PluginCmd) -> anyhow::Result<(Self::Counter, Self::PluginProcess)>;
    /// The plugin's process id.
    fn pid(&self, plugin: &Self::PluginProcess) -> Option<u32>;
    /// Shuts a plugin down and waits for its exit.
    async fn stop(&self, plugin: Self::PluginProcess) -> anyhow::Result<()>;
}

/// Which figures to measure.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    /// Start to first call (and with the checksum option, for Rust).
    pub start: bool,
    /// Also the checksum option.
    pub checksum: bool,
    /// The callback put.
    pub callback: bool,
    /// Also the sequential calls with host and plugin pinned to one CPU (current_thread only).
    pub one_cpu: bool,
}

/// The resident set of this process in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const KEY16: &str = "bench-16";
const VALUE16: &[u8; 16] = b"0123456789abcdef";

/// What an interleaved sequential series measured.
struct Series {
    /// µs per `kv.get`.
    calls: Vec<f64>,
    /// µs per raw pipe ping-pong.
    pipe: Vec<f64>,
    /// CPU ns of host + plugin over the calls.
    cpu_calls: Option<u64>,
    /// CPU ns of bench + echo child over the ping-pongs.
    cpu_pipe: Option<u64>,
}

/// Every thread of process `pid` (`/proc/PID/task`), as `taskset -a` finds them: a plugin
/// process reads its frames on a thread of its own, which pinning the main thread would leave
/// on another CPU.
fn threads_of(pid: u32) -> Vec<rustix::thread::Pid> {
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let tids = if tids.is_empty() { i32::try_from(pid).into_iter().collect() } else { tids };
    tids.into_iter().filter_map(rustix::thread::Pid::from_raw).collect()
}

/// Pins the calling thread and every thread of the given processes to CPU 0; returns the
/// calling thread's previous mask.
fn pin_to_cpu0(pids: &[u32]) -> anyhow::Result<rustix::thread::CpuSet> {
    let saved = rustix::thread::sched_getaffinity(None)?;
    let mut one = rustix::thread::CpuSet::new();
    one.set(0);
    rustix::thread::sched_setaffinity(None, &one)?;
    for tid in pids.iter().flat_map(|&pid| threads_of(pid)) {
        rustix::thread::sched_setaffinity(Some(tid), &one)?;
    }
    Ok(saved)
}

fn unpin(saved: &rustix::thread::CpuSet, pids: &[u32]) {
    let _ = rustix::thread::sched_setaffinity(None, saved);
    for tid in pids.iter().flat_map(|&pid| threads_of(pid)) {
        let _ = rustix::thread::sched_setaffinity(Some(tid), saved);
    }
}

/// `total` sequential `kv.get`s in blocks alternating with blocks of raw pipe ping-pongs
/// against a fresh echo child; with `one_cpu`, everything pinned to CPU 0 for the series.
async fn interleaved<K: KvConn>(
    kv: &K,
    helper: &Path,
    pid: Option<u32>,
    total: usize,
    warmup: usize,
    one_cpu: bool,
) -> anyhow::Result<Series> {
    let mut echo = crate::pipe::EchoPeer::spawn(helper, 64).context("spawning the echo child")?;
    let echo_pid = Some(echo.pid());
    let pinned: Vec<u32> = [pid, echo_pid].into_iter().flatten().collect();
    let saved = if one_cpu { Some(pin_to_cpu0(&pinned)?) } else { None };
    let result = async {
        for _ in 0..warmup {
            echo.round_trip()?;
            kv.get(KEY16).await?;
        }
        let blocks = INTERLEAVED_BLOCKS.min(total.max(1));
        let mut out = Series {
            calls: Vec::with_capacity(total),
            pipe: Vec::with_capacity(total),
            cpu_calls: Some(0),
            cpu_pipe: Some(0),
        };
        let add = |sum: &mut Option<u64>, before: Option<u64>, after: Option<u64>| {
            *sum = match (*sum, before, after) {
                (Some(s), Some(b), Some(a)) => Some(s + a.saturating_sub(b)),
                _ => None,
            };
        };
        for _ in 0..blocks {
            let before = stats::cpu_pair_ns(pid);
            for _ in 0..total / blocks {
                let t = Instant::now();
                let n = kv.get(KEY16).await?;
                out.calls.push(t.elapsed().as_secs_f64() * 1e6);
                anyhow::ensure!(n == 16, "kv.get returned {n} bytes");
            }
            add(&mut out.cpu_calls, before, stats::cpu_pair_ns(pid));
            let before = stats::cpu_pair_ns(echo_pid);
            for _ in 0..total / blocks {
                out.pipe.push(echo.round_trip()?);
            }
            add(&mut out.cpu_pipe, before, stats::cpu_pair_ns(echo_pid));
        }
        anyhow::Ok(out)
    }
    .await;
    if let Some(saved) = &saved {
        unpin(saved, &pinned);
    }
    echo.finish()?;
    result
}

/// Blocks in the interleaved sequential series (calls, pipe, calls, pipe, ...).
const INTERLEAVED_BLOCKS: usize = 20;

#[allow(clippy::too_many_arguments)]
async fn small_calls<B: Backend>(
    backend: &B,
    helper: &Path,
    one_cpu: bool,
    kv_cmd: &PluginCmd,
    c: &Counts,
    slow: bool,
    prefix: &str,
    section: &str,
    r: &mut Results,
) -> anyhow::Result<()> {
    let div = if slow { c.slow_divisor.max(1) } else { 1 };
    let id = |name: &str| format!("{prefix}.{name}");

    // Sequential get of a 16-byte value.
    eprintln!("  {prefix}: sequential kv.get");
    let (kv, plugin) = backend.start_kv(kv_cmd, false).await.context("starting the kv plugin")?;
    kv.put(KEY16, VALUE16).await.context("kv.put")?;
    for _ in 0..c.warmup / div {
        kv.get(KEY16).await?;
    }
    // Blocks of calls alternate with blocks of raw pipe ping-pongs, so that the calls and their
    // baseline see the same machine.
    let pid = backend.pid(&plugin);
    let total = c.get_seq / div;
    let Series { calls: s, pipe: p, cpu_calls, cpu_pipe } =
        interleaved(&kv, helper, pid, total, c.warmup / div, false).await?;
    r.add(id(ids::GET_SEQ), section, "sequential kv.get, 16 B value", Unit::Micros, stats::of_costs(&s));
    if let Some(cpu) = per_call_micros(Some(0), cpu_calls, s.len()) {
        let label = "CPU time per sequential kv.get, host + plugin";
        r.add(id(ids::CPU_GET_SEQ), section, label, Unit::Micros, stats::one(cpu));
    }
    let label = "raw pipe ping-pong, interleaved with the calls above";
    r.add(id(ids::PIPE_INTERLEAVED), section, label, Unit::Micros, stats::of_costs(&p));
    r.note_last("the x pipe baseline of this section's µs rows");
    if let Some(cpu) = per_call_micros(Some(0), cpu_pipe, p.len()) {
        let label = "CPU time per interleaved ping-pong, both processes";
        r.add(id(ids::PIPE_INTERLEAVED_CPU), section, label, Unit::Micros, stats::one(cpu));
    }

    // The same with the host thread, the plugin and the echo child on one CPU: every hand-off is
    // a context switch, never a wake-up of an idle CPU (current_thread only: a multi-thread
    // runtime's workers cannot all be pinned from here).
    if one_cpu {
        let pinned = interleaved(&kv, helper, pid, total, c.warmup / div, true).await?;
        let label = "sequential kv.get, host + plugin on one CPU";
        r.add(id(ids::GET_SEQ_ONE_CPU), section, label, Unit::Micros, stats::of_costs(&pinned.calls));
        let label = "raw pipe ping-pong on one CPU, interleaved with those";
        r.add(id(ids::PIPE_INTERLEAVED_ONE_CPU), section, label, Unit::Micros, stats::of_costs(&pinned.pipe));
        r.note_last("the x pipe baseline of the one-CPU row");
    }

    // Throughput with N calls in flight: N tasks, each calling in a loop.
    for inflight in [1usize, 8, 64] {
        eprintln!("  {prefix}: {inflight} in flight");
        let calls = (c.tput_calls / div).max(inflight).div_ceil(inflight) * inflight;
        let mut secs = Vec::new();
        let mut cpu_before = None;
        for rep in 0..=c.tput_reps {
            if rep == 1 {
                cpu_before = stats::cpu_pair_ns(pid);
            }
            let t = Instant::now();
            let mut tasks = Vec::with_capacity(inflight);
            for _ in 0..inflight {
                let kv = kv.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..calls / inflight {
                        kv.get(KEY16).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for task in tasks {
                task.await.context("throughput task")??;
            }
            if rep > 0 {
                secs.push(t.elapsed().as_secs_f64());
            }
        }
        r.add(
            id(&format!("{}{inflight}", ids::TPUT_PREFIX)),
            section,
            format!("kv.get throughput, {inflight} in flight"),
            Unit::CallsPerSec,
            stats::of_rates(calls as f64, &secs),
        );
        if inflight == 64 {
            if let Some(cpu) = per_call_micros(cpu_before, stats::cpu_pair_ns(pid), calls * secs.len()) {
                let label = "CPU time per kv.get, 64 in flight, host + plugin";
                r.add(id(ids::CPU_TPUT_64), section, label, Unit::Micros, stats::one(cpu));
            }
        }
    }

    backend.stop(plugin).await.context("stopping the kv plugin")?;
    Ok(())
}

fn per_call_micros(before: Option<u64>, after: Option<u64>, calls: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if calls > 0 => Some(a.saturating_sub(b) as f64 / 1e3 / calls as f64),
        _ => None,
    }
}

/// Runs `part`, noting its failure (or that it hung for `limit_secs`) instead of failing the
/// run, so that one broken path does not hide the other figures.
async fn part(what: &str, limit_secs: u64, part: impl Future<Output = anyhow::Result<()>>) -> Option<String> {
    match tokio::time::timeout(std::time::Duration::from_secs(limit_secs), part).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{what}: failed: {e:#}")),
        Err(_) => Some(format!("{what}: no answer within {limit_secs} s (hung; the plugin was killed)")),
    }
}

/// Measures every figure of one plugin language through `backend`, adding them under `prefix`
/// (`rust.mt`, ...) in `section`. A part that fails or hangs is noted in the results and the
/// other parts still run.
#[allow(clippy::too_many_arguments)]
pub async fn measure<B: Backend>(
    backend: &B,
    helper: &Path,
    kv_cmd: &PluginCmd,
    counter_cmd: Option<&PluginCmd>,
    c: &Counts,
    slow: bool,
    sel: Selection,
    prefix: &str,
    section: &str,
    r: &mut Results,
) {
    let what = format!("{section}: sequential calls and throughput");
    let failed = part(
        &what,
        c.part_limit_secs,
        small_calls(backend, helper, sel.one_cpu, kv_cmd, c, slow, prefix, section, r),
    )
    .await;
    r.note_failure(failed);
    let what = format!("{section}: large values");
    let failed =
        part(&what, c.part_limit_secs, large_values(backend, kv_cmd, c, slow, prefix, section, r)).await;
    r.note_failure(failed);
    if let (true, Some(cmd)) = (sel.callback, counter_cmd) {
        let what = format!("{section}: callback");
        let failed =
            part(&what, c.part_limit_secs, callback(backend, cmd, c, slow, sel.one_cpu, prefix, section, r))
                .await;
        r.note_failure(failed);
    }
    if sel.start {
        let what = format!("{section}: start");
        let failed =
            part(&what, c.part_limit_secs, start(backend, kv_cmd, c, slow, sel, prefix, section, r)).await;
        r.note_failure(failed);
    }
}

async fn large_values<B: Backend>(
    backend: &B,
    kv_cmd: &PluginCmd,
    c: &Counts,
    slow: bool,
    prefix: &str,
    section: &str,
    r: &mut Results,
) -> anyhow::Result<()> {
    let div = if slow { c.slow_divisor.max(1) } else { 1 };
    let id = |name: &str| format!("{prefix}.{name}");
    let (kv, plugin) = backend.start_kv(kv_cmd, false).await.context("starting the kv plugin")?;
    for (mib, reps, put_id, get_id) in
        [(1usize, c.big_reps_1m, "put_1m", "get_1m"), (16, c.big_reps_16m, ids::PUT_16M, ids::GET_16M)]
    {
        eprintln!("  {prefix}: {mib} MiB values");
        let value = vec![0xc3u8; mib << 20];
        let key = format!("bench-{mib}m");
        let reps = (reps / div).max(1);
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for rep in 0..=reps {
            let t = Instant::now();
            kv.put(&key, &value).await.with_context(|| format!("kv.put of {mib} MiB"))?;
            let put = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let n = kv.get(&key).await.with_context(|| format!("kv.get of {mib} MiB"))?;
            let get = t.elapsed().as_secs_f64();
            anyhow::ensure!(n == value.len(), "kv.get returned {n} bytes");
            if rep > 0 {
                puts.push(put);
                gets.push(get);
            }
        }
        let mb = value.len() as f64 / 1e6;
        r.add(
            id(put_id),
            section,
            format!("kv.put {mib} MiB value"),
            Unit::MegabytesPerSec,
            stats::of_rates(mb, &puts),
        );
        r.add(
            id(get_id),
            section,
            format!("kv.get {mib} MiB value"),
            Unit::MegabytesPerSec,
            stats::of_rates(mb, &gets),
        );
    }
    backend.stop(plugin).await.context("stopping the kv plugin")?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn callback<B: Backend>(
    backend: &B,
    cmd: &PluginCmd,
    c: &Counts,
    slow: bool,
    one_cpu: bool,
    prefix: &str,
    section: &str,
    r: &mut Results,
) -> anyhow::Result<()> {
    let div = if slow { c.slow_divisor.max(1) } else { 1 };
    let id = |name: &str| format!("{prefix}.{name}");
    eprintln!("  {prefix}: counter.put with callback");
    let (counter, plugin) = backend.start_counter(cmd).await.context("starting the counter plugin")?;
    for _ in 0..c.warmup / div {
        counter.put("warm", 1).await?;
    }
    let series = || async {
        let mut s = Vec::new();
        for _ in 0..c.callback / div {
            let t = Instant::now();
            counter.put("bench", 1).await?;
            s.push(t.elapsed().as_secs_f64() * 1e6);
        }
        anyhow::Ok(s)
    };
    let s = series().await?;
    let label = "counter.put with its adder.sum callback";
    r.add(id(ids::CALLBACK_PUT), section, label, Unit::Micros, stats::of_costs(&s));
    // Four hand-offs per put: on a small VM, any of them that wakes an idle CPU costs tens of
    // µs. On one CPU, the row shows the cost of the calls themselves, beside the one-CPU call.
    if let (true, Some(pid)) = (one_cpu, backend.pid(&plugin)) {
        let saved = pin_to_cpu0(&[pid])?;
        let pinned = series().await;
        unpin(&saved, &[pid]);
        let label = "the same, host + plugin on one CPU";
        r.add(id(ids::CALLBACK_PUT_ONE_CPU), section, label, Unit::Micros, stats::of_costs(&pinned?));
    }
    backend.stop(plugin).await.context("stopping the counter plugin")?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn start<B: Backend>(
    backend: &B,
    kv_cmd: &PluginCmd,
    c: &Counts,
    slow: bool,
    sel: Selection,
    prefix: &str,
    section: &str,
    r: &mut Results,
) -> anyhow::Result<()> {
    let div = if slow { c.slow_divisor.max(1) } else { 1 };
    let id = |name: &str| format!("{prefix}.{name}");
    {
        let variants: &[(bool, &str, &str)] = if sel.checksum {
            &[
                (false, ids::START, "spawn + handshake to first answered call"),
                (true, ids::START_CHECKSUM, "the same, with the SHA-256 checksum option"),
            ]
        } else {
            &[(false, ids::START, "spawn + handshake to first answered call")]
        };
        for &(checksum, fig, label) in variants {
            eprintln!("  {prefix}: {fig}");
            let mut s = Vec::new();
            for rep in 0..=(c.start_reps / div).max(1) {
                let t = Instant::now();
                let (kv, plugin) =
                    backend.start_kv(kv_cmd, checksum).await.context("starting the kv plugin")?;
                kv.put(KEY16, VALUE16).await?;
                let elapsed = t.elapsed().as_secs_f64() * 1e3;
                backend.stop(plugin).await?;
                if rep > 0 {
                    s.push(elapsed);
                }
            }
            r.add(id(fig), section, label, Unit::Millis, stats::of_costs(&s));
        }
    }

    Ok(())
}
