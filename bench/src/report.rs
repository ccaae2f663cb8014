//! The figures of one run, their ratios to the baseline, the targets, go-plugin's reference
//! figures, the printed table and the JSON file.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stats::Summary;

/// The unit of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Microseconds per operation (lower is better).
    Micros,
    /// Milliseconds per operation (lower is better).
    Millis,
    /// Calls per second (higher is better).
    CallsPerSec,
    /// Megabytes (10^6 bytes) of value per second (higher is better).
    MegabytesPerSec,
    /// KiB of resident memory (lower is better).
    Kib,
}

impl Unit {
    /// Whether a higher number is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::CallsPerSec | Unit::MegabytesPerSec)
    }

    fn label(self) -> &'static str {
        match self {
            Unit::Micros => "µs",
            Unit::Millis => "ms",
            Unit::CallsPerSec => "calls/s",
            Unit::MegabytesPerSec => "MB/s",
            Unit::Kib => "KiB",
        }
    }

    /// The figure of the raw pipe baseline that a figure of this unit is compared with.
    fn baseline(self) -> Option<&'static str> {
        match self {
            Unit::Micros | Unit::CallsPerSec => Some(ids::PIPE_PING_PONG),
            Unit::MegabytesPerSec => Some(ids::PIPE_ECHO_BW),
            Unit::Millis => Some(ids::PIPE_SPAWN),
            Unit::Kib => None,
        }
    }

    fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "-".into();
        }
        match self {
            Unit::Micros | Unit::Millis => {
                if v >= 100.0 {
                    format!("{v:.0}")
                } else if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            }
            Unit::CallsPerSec => {
                if v >= 1e6 {
                    format!("{:.2}M", v / 1e6)
                } else if v >= 1e3 {
                    format!("{:.1}k", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            }
            Unit::MegabytesPerSec | Unit::Kib => {
                if v >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            }
        }
    }
}

/// Stable figure ids (the keys of the JSON file). Per-plugin ids are
/// `<language>.<runtime>.<figure>`, e.g. `rust.mt.get_seq`; see `BENCHMARKS.md`.
pub mod ids {
    /// Raw pipe ping-pong of 64 bytes.
    pub const PIPE_PING_PONG: &str = "pipe.ping_pong_64b";
    /// Raw pipe ping-pong with both processes pinned to one CPU.
    pub const PIPE_PING_PONG_PINNED: &str = "pipe.ping_pong_64b_one_cpu";
    /// CPU time (both processes) per raw pipe ping-pong.
    pub const PIPE_CPU: &str = "pipe.cpu_per_ping_pong";
    /// A raw pipe ping-pong series interleaved with a section's sequential calls.
    pub const PIPE_INTERLEAVED: &str = "pipe_interleaved";
    /// Sequential `kv.get` with host thread and plugin pinned to one CPU.
    pub const GET_SEQ_ONE_CPU: &str = "get_seq_one_cpu";
    /// The pipe ping-pong interleaved with those, also on that CPU.
    pub const PIPE_INTERLEAVED_ONE_CPU: &str = "pipe_interleaved_one_cpu";
    /// CPU time of that series per round trip.
    pub const PIPE_INTERLEAVED_CPU: &str = "cpu_pipe_interleaved";
    /// CPU time (host + plugin) per sequential `kv.get`.
    pub const CPU_GET_SEQ: &str = "cpu_get_seq";
    /// CPU time (host + plugin) per `kv.get` with 64 in flight.
    pub const CPU_TPUT_64: &str = "cpu_tput_64";
    /// The same, measured again at the end of the run.
    pub const PIPE_PING_PONG_END: &str = "pipe.ping_pong_64b_end";
    /// Raw pipe echo bandwidth, 64 KiB blocks.
    pub const PIPE_ECHO_BW: &str = "pipe.echo_bw_64k";
    /// Spawn of the raw helper to its first echo.
    pub const PIPE_SPAWN: &str = "pipe.spawn_first_echo";
    /// Binary attachment what-if: put of 16 MiB raw bytes.
    pub const ATTACH_PUT_16M: &str = "pipe.attach_put_16m";
    /// Binary attachment what-if: get of 16 MiB raw bytes.
    pub const ATTACH_GET_16M: &str = "pipe.attach_get_16m";
    /// `python3 -c pass`.
    pub const BARE_PYTHON: &str = "bare.python_start";
    /// `node -e 0`.
    pub const BARE_NODE: &str = "bare.node_start";
    /// Sequential `kv.get` of a 16-byte value.
    pub const GET_SEQ: &str = "get_seq";
    /// Throughput with N calls in flight: `tput_1`, `tput_8`, `tput_64`.
    pub const TPUT_PREFIX: &str = "tput_";
    /// `kv.put` of 16 MiB.
    pub const PUT_16M: &str = "put_16m";
    /// `kv.get` of 16 MiB.
    pub const GET_16M: &str = "get_16m";
    /// `counter.put` with its `sum` callback.
    pub const CALLBACK_PUT: &str = "callback_put";
    /// The same with the host thread and every thread of the plugin pinned to one CPU.
    pub const CALLBACK_PUT_ONE_CPU: &str = "callback_put_one_cpu";
    /// Spawn + handshake to the first answered call.
    pub const START: &str = "start_first_call";
    /// The same with the SHA-256 checksum option.
    pub const START_CHECKSUM: &str = "start_first_call_sha256";
    /// Host RSS per live plugin.
    pub const MEM_PER_PLUGIN: &str = "host_rss_per_plugin";
}

/// A figure compared with the raw pipe baseline.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineRatio {
    /// The id of the baseline figure.
    pub baseline: String,
    /// For costs, median / baseline median (how many times slower than the pipe); for rates,
    /// median / baseline rate (the fraction of the pipe's rate; for calls/s the baseline rate is
    /// one ping-pong per ping-pong time).
    pub ratio: f64,
}

/// A target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The target in words.
    pub text: String,
    /// The limit in the figure's unit (a maximum for costs, a minimum for rates).
    pub limit: f64,
    /// Whether the median met it.
    pub met: bool,
}

/// go-plugin's figure for the same workload: measured in this run (`go.grpc.<figure>`) when Go
/// was installed, else the reference constant of [`GO_PLUGIN`].
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    /// The value in the figure's unit.
    pub value: f64,
    /// How much better this figure's median is (> 1: Tether is better).
    pub gain: f64,
    /// `measured` (the id of this run's go-plugin figure) or `reference` (ANCHORS.md's constant).
    pub source: String,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable id.
    pub id: String,
    /// The table section.
    pub section: String,
    /// What was measured, in words.
    pub label: String,
    /// Unit of `median`, `p99` and `best`.
    pub unit: Unit,
    /// Median, p99 and best of the repetitions.
    #[serde(flatten)]
    pub summary: Summary,
    /// Ratio to the raw pipe baseline.
    pub vs_pipe: Option<BaselineRatio>,
    /// The target, when there is one.
    pub target: Option<Target>,
    /// go-plugin's reference figure, when there is one.
    pub go_plugin: Option<Reference>,
    /// A remark.
    pub note: Option<String>,
}

/// go-plugin 1.0.1's figures on this machine kind, from the team's `ANCHORS.md` (kept beside the
/// repository, not in it): reference constants, used where go-plugin was not measured in the same
/// run. `(figure suffix, value, unit, words)`.
pub const GO_PLUGIN: &[(&str, f64, Unit, &str)] = &[
    (ids::GET_SEQ, 127.0, Unit::Micros, "sequential call (gRPC); 103 µs with net/rpc"),
    ("tput_64", 41_000.0, Unit::CallsPerSec, "calls/s with 64 goroutines"),
    (ids::CALLBACK_PUT, 1100.0, Unit::Micros, "put with one broker callback (new broker per call)"),
    (ids::PUT_16M, 395.0, Unit::MegabytesPerSec, "16 MiB put"),
    (ids::GET_16M, 464.0, Unit::MegabytesPerSec, "16 MiB get"),
    (ids::START, 4.8, Unit::Millis, "NewClient to first answered call"),
];

/// The figures of one run.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Every figure, in measuring order.
    pub figures: Vec<Figure>,
    /// Notes: skipped languages, failures, profile hints.
    pub notes: Vec<String>,
}

impl Results {
    /// Adds a figure.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        section: &str,
        label: impl Into<String>,
        unit: Unit,
        summary: Summary,
    ) {
        self.figures.push(Figure {
            id: id.into(),
            section: section.to_owned(),
            label: label.into(),
            unit,
            summary,
            vs_pipe: None,
            target: None,
            go_plugin: None,
            note: None,
        });
    }

    /// Adds a note to the last figure.
    pub fn note_last(&mut self, note: impl Into<String>) {
        if let Some(f) = self.figures.last_mut() {
            f.note = Some(note.into());
        }
    }

    /// Adds a run-level note (also printed at once on stderr).
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    /// Notes a failure, if there is one.
    pub fn note_failure(&mut self, failure: Option<String>) {
        if let Some(f) = failure {
            self.note(f);
        }
    }

    /// The median of a figure by id.
    pub fn median(&self, id: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.id == id).map(|f| f.summary.median).filter(|v| v.is_finite())
    }

    /// Fills in the baseline ratios, the targets and go-plugin's reference figures.
    pub fn finish(&mut self) {
        let medians: Vec<(String, f64)> =
            self.figures.iter().map(|f| (f.id.clone(), f.summary.median)).collect();
        let median =
            |id: &str| medians.iter().find(|(i, _)| i == id).map(|(_, v)| *v).filter(|v| v.is_finite());
        for f in &mut self.figures {
            let m = f.summary.median;
            // A section's µs and calls/s rows compare with the ping-pong interleaved with its calls
            // when it has one (the same machine state), else with the run's baseline.
            let section_prefix = f.id.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            let local = format!("{section_prefix}.{}", ids::PIPE_INTERLEAVED);
            let local_cpu = format!("{section_prefix}.{}", ids::PIPE_INTERLEAVED_CPU);
            let base_id: Option<String> = if f.id.contains(".cpu_") {
                Some(if median(&local_cpu).is_some() { local_cpu } else { ids::PIPE_CPU.to_owned() })
            } else if f.id.ends_with(ids::GET_SEQ_ONE_CPU) {
                // go-plugin's section has no interleaved series: the run's pinned ping-pong.
                let local = format!("{section_prefix}.{}", ids::PIPE_INTERLEAVED_ONE_CPU);
                Some(if median(&local).is_some() { local } else { ids::PIPE_PING_PONG_PINNED.to_owned() })
            } else if f.id.ends_with(ids::PIPE_INTERLEAVED_ONE_CPU) {
                None
            } else if matches!(f.unit, Unit::Micros | Unit::CallsPerSec) && median(&local).is_some() {
                Some(local)
            } else {
                f.unit.baseline().map(str::to_owned)
            };
            if let Some(base_id) = base_id {
                if let Some(base) = median(&base_id).filter(|_| f.id != base_id) {
                    let ratio = match f.unit {
                        Unit::CallsPerSec => m / (1e6 / base),
                        _ => m / base,
                    };
                    f.vs_pipe = Some(BaselineRatio { baseline: base_id.clone(), ratio });
                }
            }
            let mut parts = f.id.splitn(3, '.');
            let (lang, rt, name) =
                (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if matches!(lang, "rust" | "python" | "node") {
                let measured_id = format!("{}.{name}", crate::go_plugin::GRPC_PREFIX);
                let go = match median(&measured_id) {
                    Some(v) => Some((v, measured_id)),
                    None => {
                        GO_PLUGIN.iter().find(|(n, ..)| *n == name).map(|(_, v, ..)| (*v, "reference".into()))
                    }
                };
                if let Some((value, source)) = go {
                    let gain = if f.unit.higher_is_better() { m / value } else { value / m };
                    f.go_plugin = Some(Reference { value, gain, source });
                }
            }
            let at_most = |limit: f64, text: String| Target { met: m <= limit, limit, text };
            let at_least = |limit: f64, text: String| Target { met: m >= limit, limit, text };
            f.target = match (lang, name) {
                ("rust", ids::GET_SEQ) => median(&format!("rust.{rt}.{}", ids::PIPE_INTERLEAVED))
                    .or_else(|| median(ids::PIPE_PING_PONG))
                    .map(|b| at_most(2.0 * b, "<= 2x pipe ping-pong".into())),
                ("rust", ids::GET_SEQ_ONE_CPU) => {
                    median(&format!("rust.{rt}.{}", ids::PIPE_INTERLEAVED_ONE_CPU))
                        .map(|b| at_most(2.0 * b, "<= 2x pipe, both one CPU".into()))
                }
                ("rust", "tput_64") => match median(&format!("{}.tput_64", crate::go_plugin::GRPC_PREFIX)) {
                    Some(go) => Some(at_least(10.0 * go, ">= 10x go-plugin, this run".into())),
                    None => Some(at_least(410_000.0, ">= 10x go-plugin (ANCHORS.md)".into())),
                },
                ("rust", ids::CALLBACK_PUT) => median(&format!("rust.{rt}.{}", ids::GET_SEQ))
                    .map(|b| at_most(2.0 * b, "<= 2x plain call".into())),
                ("rust", ids::CALLBACK_PUT_ONE_CPU) => median(&format!("rust.{rt}.{}", ids::GET_SEQ_ONE_CPU))
                    .map(|b| at_most(2.0 * b, "<= 2x plain call, one CPU".into())),
                ("rust", ids::PUT_16M | ids::GET_16M) => {
                    median(ids::PIPE_ECHO_BW).map(|b| at_least(0.5 * b, ">= 1/2 pipe echo bw".into()))
                }
                ("rust", ids::START) => Some(at_most(1.5, "< 1.5 ms".into())),
                ("python", ids::START) => {
                    median(ids::BARE_PYTHON).map(|b| at_most(b + 10.0, "<= bare python3 + 10 ms".into()))
                }
                ("node", ids::START) => {
                    median(ids::BARE_NODE).map(|b| at_most(b + 10.0, "<= bare node + 10 ms".into()))
                }
                _ => None,
            };
        }
    }

    /// The table, as printed.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w_label = self.figures.iter().map(|f| f.label.chars().count()).max().unwrap_or(10).max(30);
        let header = format!(
            "{:<w_label$} {:>9} {:>9} {:<7} {:>8}  {:<26} {:>9}  {:>9} {:>7}",
            "figure", "median", "p99", "unit", "x pipe", "target", "met", "go-plugin", "gain",
        );
        let rule = "-".repeat(header.chars().count());
        // Sections in order of first appearance, each with all its figures.
        let mut sections: Vec<&str> = Vec::new();
        for f in &self.figures {
            if !sections.contains(&f.section.as_str()) {
                sections.push(&f.section);
            }
        }
        let ordered = sections.iter().flat_map(|s| self.figures.iter().filter(move |f| f.section == *s));
        let mut section = "";
        for f in ordered {
            if f.section != section {
                section = &f.section;
                let _ = writeln!(out, "\n== {section}\n{header}\n{rule}");
            }
            let u = f.unit;
            let ratio = f.vs_pipe.as_ref().map(|r| format!("{:.2}", r.ratio)).unwrap_or_else(|| "-".into());
            let (target, met) = match &f.target {
                Some(t) => (
                    format!("{} ({})", t.text, u.format(t.limit)),
                    if t.met { "yes".to_owned() } else { "MISSED".to_owned() },
                ),
                None => ("-".into(), String::new()),
            };
            let (reference, gain) = match &f.go_plugin {
                Some(r) => (u.format(r.value), format!("{:.1}x", r.gain)),
                None => ("-".into(), String::new()),
            };
            let _ = writeln!(
                out,
                "{:<w_label$} {:>9} {:>9} {:<7} {:>8}  {:<26} {:>9}  {:>9} {:>7}",
                f.label,
                u.format(f.summary.median),
                u.format(f.summary.p99),
                u.label(),
                ratio,
                target,
                met,
                reference,
                gain,
            );
            if let Some(note) = &f.note {
                let _ = writeln!(out, "{:<w_label$}   ^ {note}", "");
            }
        }
        let _ = writeln!(
            out,
            "\nx pipe: median over the raw pipe baseline of the same run. µs: times the ping-pong interleaved \
             with the section's sequential calls (the run's first ping-pong where a section has none); \
             CPU rows: times the CPU per interleaved ping-pong; calls/s: over the rate of that \
             ping-pong (one round trip per ping-pong time); MB/s: fraction of the echo bandwidth; ms: over spawn + first echo of the \
             raw helper."
        );
        let measured = self.figures.iter().any(|f| f.id.starts_with(crate::go_plugin::GRPC_PREFIX));
        if measured {
            let _ = writeln!(
                out,
                "go-plugin: its gRPC figure for the same workload measured in this run (the section \
                 above); gain = how many times better the median is. For comparison, ANCHORS.md's \
                 figures from another day:"
            );
        } else {
            let _ = writeln!(
                out,
                "go-plugin: reference figures from ANCHORS.md (go-plugin 1.0.1, gRPC, this machine kind), \
                 NOT measured in this run (Go not installed: bench/go-plugin/setup.sh); gain = how many \
                 times better the median is."
            );
        }
        for (name, value, unit, words) in GO_PLUGIN {
            let _ = writeln!(
                out,
                "  go-plugin {name:<18} {:>8} {:<7} {words}",
                unit.format(*value),
                unit.label()
            );
        }
        let _ = writeln!(out, "  raw pipe ping-pong (ANCHORS.md)        6 µs");
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(out, "  - {n}");
            }
        }
        out
    }
}

/// The JSON document written after a run.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// Format version of this document.
    pub schema: &'static str,
    /// Seconds since the Unix epoch at the end of the run.
    pub unix_time: u64,
    /// `full`, `quick` or `smoke`.
    pub mode: &'a str,
    /// The machine: cores, kernel, load averages at start and end.
    pub machine: Machine,
    /// go-plugin's reference figures (not measured).
    pub go_plugin_reference: Vec<serde_json::Value>,
    /// The figures and notes.
    #[serde(flatten)]
    pub results: &'a Results,
}

/// What the run knows about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Available parallelism.
    pub cores: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `/proc/loadavg` when the run started.
    pub loadavg_start: String,
    /// `/proc/loadavg` when the run ended.
    pub loadavg_end: String,
}

/// `/proc/loadavg`, trimmed.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_owned()).unwrap_or_default()
}

impl Machine {
    /// The machine now, with the load average recorded at the start.
    pub fn now(loadavg_start: String) -> Self {
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            loadavg_start,
            loadavg_end: loadavg(),
        }
    }
}

/// Writes the JSON document to `path`, creating its directory.
pub fn write_json(path: &Path, mode: &str, machine: Machine, results: &Results) -> std::io::Result<()> {
    let doc = Document {
        schema: "tether-bench/1",
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        mode,
        machine,
        go_plugin_reference: GO_PLUGIN
            .iter()
            .map(|(name, value, unit, words)| serde_json::json!({"figure": name, "value": value, "unit": unit, "what": words}))
            .collect(),
        results,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
