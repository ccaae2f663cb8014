//! What to run and how many times.

use std::path::PathBuf;

/// How long the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The documented run: `cargo bench -p tether-bench` (a few minutes on 2 cores).
    Full,
    /// `-- --quick`: fewer repetitions, for a look.
    Quick,
    /// The test suite's run (`bench/tests/smoke.rs`): every code path with tiny counts.
    Smoke,
}

impl Mode {
    /// The mode's name, as written in the JSON file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }

    /// The repetition counts of this mode.
    pub fn counts(self) -> Counts {
        match self {
            Mode::Full => Counts {
                ping_pong: 50_000,
                warmup: 2_000,
                echo_total: 64 << 20,
                echo_reps: 15,
                attach_reps: 10,
                spawn_reps: 30,
                get_seq: 20_000,
                tput_reps: 20,
                tput_calls: 10_000,
                big_reps_1m: 30,
                big_reps_16m: 6,
                callback: 10_000,
                start_reps: 30,
                mem_plugins: 16,
                stream_total: 1 << 30,
                slow_divisor: 4,
                part_limit_secs: 120,
            },
            Mode::Quick => Counts {
                ping_pong: 10_000,
                warmup: 500,
                echo_total: 32 << 20,
                echo_reps: 5,
                attach_reps: 3,
                spawn_reps: 10,
                get_seq: 4_000,
                tput_reps: 6,
                tput_calls: 4_000,
                big_reps_1m: 8,
                big_reps_16m: 3,
                callback: 2_000,
                start_reps: 8,
                mem_plugins: 8,
                stream_total: 1 << 30,
                slow_divisor: 2,
                part_limit_secs: 120,
            },
            Mode::Smoke => Counts {
                ping_pong: 50,
                warmup: 5,
                echo_total: 1 << 20,
                echo_reps: 2,
                attach_reps: 1,
                spawn_reps: 2,
                get_seq: 20,
                tput_reps: 2,
                tput_calls: 128,
                big_reps_1m: 1,
                big_reps_16m: 1,
                callback: 10,
                start_reps: 1,
                mem_plugins: 2,
                stream_total: 4 << 20,
                slow_divisor: 1,
                // Generous: the smoke test runs debug builds beside the rest of the suite on 2 cores.
                part_limit_secs: 120,
            },
        }
    }
}

/// Repetition counts.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Timed round trips of the pipe ping-pong.
    pub ping_pong: usize,
    /// Untimed calls before each timed series.
    pub warmup: usize,
    /// Bytes per echo-bandwidth repetition.
    pub echo_total: usize,
    /// Echo-bandwidth repetitions.
    pub echo_reps: usize,
    /// Binary-attachment what-if repetitions (16 MiB each way).
    pub attach_reps: usize,
    /// Spawn + first echo repetitions.
    pub spawn_reps: usize,
    /// Timed sequential `kv.get` calls.
    pub get_seq: usize,
    /// Throughput repetitions per in-flight level.
    pub tput_reps: usize,
    /// Calls per throughput repetition.
    pub tput_calls: usize,
    /// Repetitions of 1 MiB put and get.
    pub big_reps_1m: usize,
    /// Repetitions of 16 MiB put and get.
    pub big_reps_16m: usize,
    /// Timed `counter.put` calls.
    pub callback: usize,
    /// Start-to-first-call repetitions.
    pub start_reps: usize,
    /// Plugins started for the memory figure.
    pub mem_plugins: usize,
    /// Bytes sent through one stream for the stream rows (1 GiB in the full and quick runs).
    pub stream_total: u64,
    /// Call counts are divided by this for the interpreted plugins (Python, Node).
    pub slow_divisor: usize,
    /// How long one part of a language's measurements may take before it counts as hung (the
    /// plugin is then killed, the part noted as failed, and the run goes on).
    pub part_limit_secs: u64,
}

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `rust-sdk/examples/kv.rs`, `counter.rs`.
    Rust,
    /// `examples-python/kv.py`, `counter.py`.
    Python,
    /// `examples-node/kv.mjs`, `counter.mjs`.
    Node,
}

impl Lang {
    /// All languages, in table order.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Node];

    /// The id prefix.
    pub fn id(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Node => "node",
        }
    }

    /// The name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Node => "Node",
        }
    }
}

/// The tokio runtime the host side runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `Builder::new_current_thread()`.
    CurrentThread,
    /// The default multi-thread runtime (`#[tokio::main]`): one worker per core.
    MultiThread,
}

impl Flavor {
    /// Both flavors, in table order.
    pub const ALL: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

    /// The id part.
    pub fn id(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "ct",
            Flavor::MultiThread => "mt",
        }
    }

    /// The name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current_thread runtime",
            Flavor::MultiThread => "multi-thread runtime",
        }
    }

    /// Builds the runtime.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repetition counts.
    pub mode: Mode,
    /// Languages to measure.
    pub langs: Vec<Lang>,
    /// Measure go-plugin in the same run (`bench/go-plugin/`) when Go is installed.
    pub go_plugin: bool,
    /// Measure how cost grows (calls in flight, value size, live plugins) with the Rust plugin,
    /// and draw the plots beside the JSON.
    pub scaling: bool,
    /// Runtimes to measure the host side in.
    pub flavors: Vec<Flavor>,
    /// Where the JSON goes.
    pub json: PathBuf,
    /// The raw pipe helper binary (`tether-bench-helper`).
    pub helper: PathBuf,
    /// Build the Rust example plugins with `--release` (the benchmark) or in the dev profile
    /// (the smoke test, which shares the test build).
    pub release_plugins: bool,
    /// `/usr/bin/python3`.
    pub python: PathBuf,
    /// `/usr/bin/node`.
    pub node: PathBuf,
}

/// The repository root (the workspace of this crate).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The default JSON path: `bench-results/latest.json` at the repository root (gitignored).
pub fn default_json() -> PathBuf {
    repo_root().join("bench-results").join("latest.json")
}
