//! `cargo bench -p tether-bench [-- --quick] [-- --only rust,python] [-- --runtime ct|mt]
//! [-- --trace-only] [-- --inproc-only] [-- --soak [--soak-calls N] [--soak-cycles N]]`:
//! see `BENCHMARKS.md` at the repository root.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tether_bench::{config, Flavor, Lang, Mode, Options};

/// Tether against the raw pipe baseline and go-plugin, in one run.
#[derive(Debug, Parser)]
#[command(name = "tether-bench")]
struct Args {
    /// Fewer repetitions (about a quarter of the full run's time).
    #[arg(long)]
    quick: bool,
    /// The smoke test's tiny counts (checks that every path runs; the numbers mean little).
    #[arg(long)]
    smoke: bool,
    /// Only these plugin languages: rust, python, node, and go for go-plugin measured in the
    /// same run (comma-separated; default all, go-plugin when Go is installed). The pipe
    /// baseline always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only this host runtime: ct (current_thread) or mt (multi-thread); default both.
    #[arg(long)]
    runtime: Option<String>,
    /// Skip the rows of how cost grows (calls in flight, value size, live plugins) and their
    /// plots.
    #[arg(long)]
    no_scaling: bool,
    /// Where to write the JSON (default: bench-results/latest.json at the repository root;
    /// also the environment variable TETHER_BENCH_JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the `tether trace` rows (sequential kv.get through the proxy vs directly, Rust).
    #[arg(long)]
    trace_only: bool,
    /// Only the in-process rows and the same rows through a process (Rust, the first runtime
    /// given): issue 15's figures in a short run. Prints the table; writes no JSON.
    #[arg(long)]
    inproc_only: bool,
    /// The soak run instead of the figures (issue 14): one plugin called a million times, then
    /// start/call/shutdown and start/kill cycles; the host's resources sampled and judged
    /// (JSON at bench-results/soak.json unless --json says otherwise).
    #[arg(long)]
    soak: bool,
    /// Mixed calls of the soak run, per language.
    #[arg(long, default_value_t = 1_000_000)]
    soak_calls: u64,
    /// Start/call/shutdown cycles of the soak run, and as many start/kill cycles, per language.
    #[arg(long, default_value_t = 1_000)]
    soak_cycles: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters that `cargo bench NAME` passes; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = if args.smoke {
        Mode::Smoke
    } else if args.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    let mut langs = Vec::new();
    let mut go_plugin = args.only.is_empty();
    for name in &args.only {
        if name.trim() == "go" {
            go_plugin = true;
            continue;
        }
        match Lang::ALL.iter().find(|l| l.id() == name.trim()) {
            Some(l) => langs.push(*l),
            None => {
                eprintln!("--only: unknown language {name:?} (rust, python, node, go)");
                return ExitCode::from(2);
            }
        }
    }
    if args.only.is_empty() {
        langs = Lang::ALL.to_vec();
    }
    let flavors = match args.runtime.as_deref() {
        None => Flavor::ALL.to_vec(),
        Some("ct") => vec![Flavor::CurrentThread],
        Some("mt") => vec![Flavor::MultiThread],
        Some(other) => {
            eprintln!("--runtime: {other:?} is neither ct nor mt");
            return ExitCode::from(2);
        }
    };
    let soak_json = args.json.clone();
    let opts = Options {
        mode,
        langs,
        go_plugin,
        scaling: !args.no_scaling,
        flavors,
        json: args
            .json
            .or_else(|| std::env::var_os("TETHER_BENCH_JSON").map(PathBuf::from))
            .unwrap_or_else(config::default_json),
        helper: PathBuf::from(env!("CARGO_BIN_EXE_tether-bench-helper")),
        release_plugins: true,
        python: PathBuf::from("/usr/bin/python3"),
        node: PathBuf::from("/usr/bin/node"),
    };
    if args.soak {
        let soak = tether_bench::soak::SoakOptions {
            calls: args.soak_calls,
            cycles: args.soak_cycles,
            json: soak_json.unwrap_or_else(tether_bench::soak::default_json),
            ..tether_bench::soak::SoakOptions::full()
        };
        return match tether_bench::soak::run_and_report(&opts, &soak) {
            Ok(report) if report.languages.iter().all(|l| l.passed()) => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("tether-bench: the soak found growth or stopped early (see the verdicts)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("tether-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.trace_only {
        return match tether_bench::trace::run_only(&opts) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tether-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.inproc_only {
        return match tether_bench::inproc::run_only(&opts) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tether-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match tether_bench::run_and_report(&opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
