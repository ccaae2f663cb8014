//! go-plugin measured in the same run: builds the Go host and plugin of `bench/go-plugin/`
//! (go-plugin's KV example over gRPC and net/rpc, and its bidirectional counter with a
//! GRPCBroker callback) when Go and Debian's go-plugin packages are present, runs the same
//! workloads as the Tether rows, and adds their figures, so that the `gain` column divides two
//! figures of one run. Without Go the rows are skipped with a note, and the table falls back to
//! the reference constants of [`crate::report::GO_PLUGIN`], marked as such.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::config::{repo_root, Counts};
use crate::report::{ids, Results, Unit};
use crate::stats;

/// The section of the go-plugin rows.
pub const SECTION: &str = "go-plugin 1.0.1 measured in this run (Go host and plugin, bench/go-plugin/)";

/// The figure id prefix of go-plugin's gRPC rows: `go.grpc.<figure>`, with the figure names of
/// the Tether rows (`get_seq`, `tput_64`, ...), which [`Results::finish`] compares with.
pub const GRPC_PREFIX: &str = "go.grpc";

/// The two binaries, built.
#[derive(Debug, Clone)]
pub struct Built {
    host: PathBuf,
    plugin: PathBuf,
}

/// The raw repetitions one workload of the Go host printed.
#[derive(Debug, Deserialize)]
pub struct Output {
    /// `us`, `ms` or `s` (seconds per repetition of `work`).
    pub unit: String,
    /// Calls or bytes per repetition, for the rates.
    #[serde(default)]
    pub work: f64,
    /// The wall time of the whole workload in seconds (the `latency` workload).
    #[serde(default)]
    pub wall: f64,
    /// The repetitions.
    pub values: Vec<f64>,
}

/// Where the Go build goes: `<target dir>/go-plugin`.
fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("go-plugin")
}

/// Builds the go-plugin peer with `bench/go-plugin/build.sh`. `Ok(None)` with the reason when Go
/// or the packages are missing (the run goes on without the rows); an error when the build
/// itself fails.
pub fn build() -> anyhow::Result<Result<Built, String>> {
    let script = repo_root().join("bench").join("go-plugin").join("build.sh");
    let out = out_dir();
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(Ok(Built { host: out.join("go-plugin-host"), plugin: out.join("go-plugin-kv") })),
        // build.sh's "a tool or the sources are missing" status.
        Some(3) => Ok(Err(format!("{stderr}; go-plugin rows skipped, reference figures used instead"))),
        _ => bail!("bench/go-plugin/build.sh failed ({}): {stderr}", output.status),
    }
}

/// One workload of the Go host, unpinned, with its raw output (for [`crate::scaling`]).
pub fn run_raw(built: &Built, protocol: &str, workload: &str, args: &[String]) -> anyhow::Result<Output> {
    run(built, protocol, workload, args, false)
}

/// One workload of the Go host. `pin` runs it under `taskset -c 0` (host and plugin on CPU 0).
fn run(built: &Built, protocol: &str, workload: &str, args: &[String], pin: bool) -> anyhow::Result<Output> {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&built.host);
        c
    } else {
        Command::new(&built.host)
    };
    cmd.arg("-plugin").arg(&built.plugin).args(["-protocol", protocol, "-workload", workload]).args(args);
    let output = cmd.output().with_context(|| format!("running {}", built.host.display()))?;
    if !output.status.success() {
        bail!(
            "go-plugin {protocol} {workload}: {} ({})",
            String::from_utf8_lossy(&output.stderr).trim(),
            output.status
        );
    }
    let parsed: Output = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("go-plugin {protocol} {workload}: reading its JSON"))?;
    if parsed.values.is_empty() {
        bail!("go-plugin {protocol} {workload}: no repetitions");
    }
    Ok(parsed)
}

fn args(pairs: &[(&str, usize)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [format!("-{k}"), v.to_string()]).collect()
}

/// One row: which protocol and workload of the Go host, the Tether figure it stands beside, the
/// Go host's arguments, whether host and plugin share CPU 0, and the label.
struct Row {
    protocol: &'static str,
    workload: &'static str,
    figure: &'static str,
    args: Vec<String>,
    pin: bool,
    label: &'static str,
}

/// Runs every workload and adds its row; a workload that fails is noted and the others go on.
pub fn measure(built: &Built, c: &Counts, r: &mut Results) {
    const MIB16: usize = 16 << 20;
    let warm = c.warmup.min(500);
    // go-plugin's calls cost ~100 µs (gRPC), so its call counts are a quarter of Tether's.
    let seq = args(&[("n", (c.get_seq / 4).max(10)), ("warmup", warm)]);
    let big = args(&[("n", c.big_reps_16m), ("warmup", 1), ("size", MIB16)]);
    let row = |protocol, workload, figure, args: &Vec<String>, pin, label| Row {
        protocol,
        workload,
        figure,
        args: args.clone(),
        pin,
        label,
    };
    let rows = [
        row("grpc", "get_seq", ids::GET_SEQ, &seq, false, "sequential get, 16 B (gRPC)"),
        row(
            "grpc",
            "get_seq",
            ids::GET_SEQ_ONE_CPU,
            &seq,
            true,
            "sequential get, host and plugin on one CPU (gRPC)",
        ),
        row("netrpc", "get_seq", ids::GET_SEQ, &seq, false, "sequential get, 16 B (net/rpc)"),
        row(
            "grpc",
            "tput",
            "tput_64",
            &args(&[("n", c.tput_reps), ("calls", c.tput_calls), ("inflight", 64)]),
            false,
            "64 in flight (64 goroutines, gRPC)",
        ),
        row("grpc", "put", ids::PUT_16M, &big, false, "16 MiB put (gRPC)"),
        row("grpc", "get", ids::GET_16M, &big, false, "16 MiB get (gRPC)"),
        row(
            "grpc",
            "callback",
            ids::CALLBACK_PUT,
            &args(&[("n", (c.callback / 10).max(5)), ("warmup", warm.min(100))]),
            false,
            "counter put with one GRPCBroker callback",
        ),
        row(
            "grpc",
            "start",
            ids::START,
            &args(&[("n", c.start_reps.max(2))]),
            false,
            "NewClient to first answered call (gRPC)",
        ),
    ];
    for Row { protocol, workload, figure, args, pin, label } in rows {
        let id = format!("go.{protocol}.{figure}");
        match run(built, protocol, workload, &args, pin) {
            Ok(out) => {
                let (unit, summary) = match out.unit.as_str() {
                    "us" => (Unit::Micros, stats::of_costs(&out.values)),
                    "ms" => (Unit::Millis, stats::of_costs(&out.values)),
                    "s" if workload == "tput" => (Unit::CallsPerSec, stats::of_rates(out.work, &out.values)),
                    "s" => (Unit::MegabytesPerSec, stats::of_rates(out.work / 1e6, &out.values)),
                    other => {
                        r.note(format!("{id}: unknown unit {other:?} from the Go host"));
                        continue;
                    }
                };
                r.add(id, SECTION, label, unit, summary);
                if workload == "callback" {
                    r.note_last("a new broker connection per call, as in go-plugin's bidirectional example");
                }
            }
            Err(e) => r.note(format!("{id}: {e:#}")),
        }
    }
}

/// Whether Go and Debian's go-plugin sources look installed (what `build.sh` checks first), for
/// the smoke test's expectations.
pub fn available() -> bool {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| Path::new(&p).join(tool).is_file()))
            .unwrap_or(false)
    };
    let gocode =
        std::env::var_os("TETHER_GOCODE").map(PathBuf::from).unwrap_or_else(|| "/usr/share/gocode".into());
    ["go", "protoc", "protoc-gen-go"].iter().all(|t| on_path(t))
        && gocode.join("src/github.com/hashicorp/go-plugin").is_dir()
}
