//! The soak run (issue 14): does anything grow in the host when it calls one plugin a million
//! times and starts and ends a thousand more? `cargo bench -p tether-bench -- --soak` (counts
//! with `--soak-calls N`, `--soak-cycles N`; languages with `--only`).
//!
//! For each language, through `tether-host` on a multi-thread runtime: a warm-up, the baseline
//! sample, then the mixed calls of [`mixed`] on one `kv` and one `counter` plugin (sampled
//! every tenth of the calls), then start/call/shutdown cycles and start/kill cycles (sampled
//! every tenth of the cycles). Each sample reads the bench's own resources ([`sample`]);
//! [`verdict`] says per resource whether it stayed within a constant. The tables go to stdout
//! (Markdown, for `BENCHMARKS.md`) and everything to `bench-results/soak.json`.

pub mod cancel;
pub mod mixed;
pub mod sample;
pub mod verdict;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context as _};
use serde::Serialize;
use tether::interfaces::KvClient;
use tether::spec::interfaces::{counter, kv};
use tether_host::{PluginProcess, Stopped};

use self::cancel::Stalls;
use self::mixed::{Mixed, Tally};
use self::sample::{Sample, COLUMNS};
use self::verdict::Verdict;
use crate::config::{repo_root, Flavor, Lang, Options};
use crate::report::{self, Machine};
use crate::scenario::PluginCmd;

/// The counts of a soak run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Mixed calls on the one `kv` and `counter` plugins (1,000,000 by default).
    pub calls: u64,
    /// Start/call/shutdown cycles, and as many start/kill cycles (1,000 by default).
    pub cycles: u64,
    /// Calls of the warm-up, before the baseline (at least a thousand, to make every kind).
    pub warmup: u64,
    /// Where the JSON goes.
    pub json: PathBuf,
}

impl SoakOptions {
    /// The counts, JSON at `bench-results/soak.json`.
    pub fn full() -> Self {
        SoakOptions { calls: 1_000_000, cycles: 1_000, warmup: 2_000, json: default_json() }
    }
}

/// `bench-results/soak.json` at the repository root (gitignored).
pub fn default_json() -> PathBuf {
    repo_root().join("bench-results").join("soak.json")
}

/// One language's soak.
#[derive(Debug, Clone, Serialize)]
pub struct LangSoak {
    /// `rust`, `python` or `node`.
    pub lang: &'static str,
    /// The readings, in order.
    pub samples: Vec<Sample>,
    /// The judgement per resource.
    pub verdicts: Vec<Verdict>,
    /// The mixed calls made after the baseline, by kind.
    pub calls: Tally,
    /// Start/call/shutdown cycles done.
    pub shutdown_cycles: u64,
    /// Start/kill cycles done.
    pub kill_cycles: u64,
    /// Seconds the language took.
    pub secs: f64,
    /// What stopped the soak before its end, if anything.
    pub error: Option<String>,
}

impl LangSoak {
    /// Whether it ran to its end and every resource passed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.verdicts.is_empty() && self.verdicts.iter().all(|v| v.pass)
    }
}

/// The JSON document.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Format version of this document.
    pub schema: &'static str,
    /// Seconds since the Unix epoch at the end of the run.
    pub unix_time: u64,
    /// The machine.
    pub machine: Machine,
    /// Mixed calls asked for, per language.
    pub calls: u64,
    /// Cycles of each kind asked for, per language.
    pub cycles: u64,
    /// Bounds of the memory verdict (KiB).
    pub rss_bound_kib: u64,
    /// See [`verdict::RSS_FLAT_KIB`].
    pub rss_flat_kib: u64,
    /// Per language.
    pub languages: Vec<LangSoak>,
    /// Languages skipped, and why.
    pub notes: Vec<String>,
}

/// How long a sample with no plugin running waits for the ended plugins' tasks.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the sampling needs to know between samples.
struct Watch {
    started: Instant,
    /// Process groups of the plugins ended so far.
    ended: Vec<u32>,
    stalls: Stalls,
    samples: Vec<Sample>,
    lang: &'static str,
}

impl Watch {
    /// Takes a sample; `live` are the pids of the plugins running. With none running, first
    /// waits (at most [`SETTLE_LIMIT`]) for the runtime's tasks to end: an ended plugin's
    /// session tasks drop its pipes on another worker thread a moment after `shutdown()` or
    /// `kill()` returned, and a reading in that moment would count a descriptor about to close.
    /// What does not end within the limit is read as it is, and judged.
    async fn sample(&mut self, phase: &str, done: u64, live: &[u32]) {
        let settling = Instant::now();
        let metrics = tokio::runtime::Handle::current().metrics();
        while live.is_empty() && metrics.num_alive_tasks() > 0 && settling.elapsed() < SETTLE_LIMIT {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let settle_ms = settling.elapsed().as_secs_f64() * 1e3;
        let tasks = metrics.num_alive_tasks() as u64;
        let res = sample::read(&self.ended, self.stalls.live(), tasks, live);
        let live_plugins = live.len() as u64;
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "soak {}: {phase} {done}: rss {} KiB, fds {}, threads {}, zombies {}, children {}, strays {}, stalled {}, tasks {}, plugins' rss {} KiB ({secs:.0} s, settled in {settle_ms:.1} ms)",
            self.lang, res.rss_kib, res.fds, res.threads, res.zombies, res.children, res.strays, res.stalled, res.tasks, res.plugin_rss_kib
        );
        self.samples.push(Sample { phase: phase.into(), done, live_plugins, res, secs, settle_ms });
    }

    /// A plugin started: its pid is no longer an ended group's (pids are reused).
    fn started(&mut self, plugin: &PluginProcess) {
        let pid = plugin.pid();
        self.ended.retain(|&p| p != pid);
    }

    fn ended(&mut self, pid: u32) {
        self.ended.push(pid);
    }
}

async fn start(
    cmd: &PluginCmd,
    interface: &str,
    versions: &[u32],
    watch: &mut Watch,
) -> anyhow::Result<PluginProcess> {
    let plugin = PluginProcess::builder(&cmd.program)
        .args(&cmd.args)
        .interface(interface, versions.iter().copied())
        .start()
        .await
        .with_context(|| format!("starting {} {}", cmd.program.display(), cmd.args.join(" ")))?;
    watch.started(&plugin);
    Ok(plugin)
}

async fn shut_down(plugin: PluginProcess, watch: &mut Watch) -> anyhow::Result<()> {
    let (pid, name) = (plugin.pid(), plugin.name().to_owned());
    let report = plugin.shutdown().await;
    watch.ended(pid);
    ensure!(
        report.stopped == Stopped::Gracefully && report.exit.success(),
        "{name} stopped {:?}, {}",
        report.stopped,
        report.exit.status_text()
    );
    Ok(())
}

/// The mixed calls on a fresh `kv` and `counter` pair: `calls` of them, sampled every `every`
/// under `phase` when `phase` is given (the warm-up is not sampled).
async fn calls_phase(
    cmds: (&PluginCmd, &PluginCmd),
    calls: u64,
    phase: Option<&str>,
    watch: &mut Watch,
) -> anyhow::Result<Tally> {
    let kv_plugin = start(cmds.0, kv::NAME, kv::VERSIONS, watch).await?;
    let counter_plugin = start(cmds.1, counter::NAME, counter::VERSIONS, watch).await?;
    let stalls = watch.stalls.clone();
    let mixed = Mixed::new(&kv_plugin, &counter_plugin, &stalls).await?;
    let mut tally = Tally::default();
    let live = [kv_plugin.pid(), counter_plugin.pid()];
    let every = (calls / 10).max(1);
    if let Some(phase) = phase {
        watch.sample(phase, 0, &live).await;
    }
    let mut done = 0;
    while done < calls {
        let next = ((done / every + 1) * every).min(calls);
        mixed.run(done, next, &mut tally).await?;
        done = next;
        if let Some(phase) = phase {
            watch.sample(phase, done, &live).await;
        }
    }
    mixed::check_counted(&mixed, &tally).await?;
    drop(mixed);
    shut_down(kv_plugin, watch).await?;
    shut_down(counter_plugin, watch).await?;
    Ok(tally)
}

/// `cycles` starts of the `kv` plugin, each called once and then shut down (or killed, with
/// `kill`), sampled every tenth.
async fn cycles_phase(cmd: &PluginCmd, cycles: u64, kill: bool, watch: &mut Watch) -> anyhow::Result<u64> {
    let phase = if kill { "kill-cycles" } else { "shutdown-cycles" };
    let every = (cycles / 10).max(1);
    for n in 1..=cycles {
        let plugin = start(cmd, kv::NAME, kv::VERSIONS, watch).await?;
        if kill {
            let pid = plugin.pid();
            let exit = plugin.kill().await;
            watch.ended(pid);
            ensure!(exit.signal.is_some(), "a killed plugin exited by itself: {}", exit.status_text());
        } else {
            let client = plugin.client::<KvClient>()?;
            client
                .put(&kv::PutParams { key: "cycle".into(), value: n.to_le_bytes().to_vec().into() })
                .await?;
            let got = client.get(&kv::KeyParams { key: "cycle".into() }).await?;
            ensure!(got.value[..] == n.to_le_bytes(), "cycle {n}: kv.get gave another value");
            shut_down(plugin, watch).await?;
        }
        if n % every == 0 || n == cycles {
            watch.sample(phase, n, &[]).await;
        }
    }
    Ok(cycles)
}

/// One language, on its own runtime; the result holds the error, if any, instead of failing.
fn soak_language(lang: Lang, opts: &Options, soak: &SoakOptions) -> LangSoak {
    let started = Instant::now();
    let mut out = LangSoak {
        lang: lang.id(),
        samples: Vec::new(),
        verdicts: Vec::new(),
        calls: Tally::default(),
        shutdown_cycles: 0,
        kill_cycles: 0,
        secs: 0.0,
        error: None,
    };
    let mut watch =
        Watch { started, ended: Vec::new(), stalls: Stalls::default(), samples: Vec::new(), lang: lang.id() };
    let run = async {
        let plugins = crate::plugins::find(lang, opts)?;
        let counter = plugins.counter.context("no counter plugin")?;
        watch.sample(verdict::START, 0, &[]).await;
        calls_phase((&plugins.kv, &counter), soak.warmup, None, &mut watch).await.context("warm-up")?;
        watch.sample(verdict::BASELINE, 0, &[]).await;
        out.calls = calls_phase((&plugins.kv, &counter), soak.calls, Some("calls"), &mut watch).await?;
        watch.sample("after-calls", soak.calls, &[]).await;
        out.shutdown_cycles = cycles_phase(&plugins.kv, soak.cycles, false, &mut watch).await?;
        out.kill_cycles = cycles_phase(&plugins.kv, soak.cycles, true, &mut watch).await?;
        anyhow::Ok(())
    };
    let result =
        Flavor::MultiThread.runtime().context("building the tokio runtime").and_then(|rt| rt.block_on(run));
    if let Err(e) = result {
        eprintln!("soak {}: {e:#}", lang.id());
        out.error = Some(format!("{e:#}"));
    }
    out.verdicts = verdict::judge(&watch.samples);
    out.samples = watch.samples;
    out.secs = started.elapsed().as_secs_f64();
    out
}

/// Runs the soak of each language of `opts.langs`, prints the tables and writes the JSON.
pub fn run_and_report(opts: &Options, soak: &SoakOptions) -> anyhow::Result<SoakReport> {
    let load = report::loadavg();
    let mut languages = Vec::new();
    let mut notes = Vec::new();
    for &lang in &opts.langs {
        if let Err(e) = crate::plugins::find(lang, opts) {
            notes.push(format!("{} skipped: {e:#}", lang.title()));
            continue;
        }
        eprintln!("soak {}: {} calls, {} cycles of each kind...", lang.id(), soak.calls, soak.cycles);
        languages.push(soak_language(lang, opts, soak));
    }
    let doc = SoakReport {
        schema: "tether-bench-soak/1",
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        machine: Machine::now(load),
        calls: soak.calls,
        cycles: soak.cycles,
        rss_bound_kib: verdict::RSS_BOUND_KIB,
        rss_flat_kib: verdict::RSS_FLAT_KIB,
        languages,
        notes,
    };
    println!("{}", table(&doc));
    if let Some(dir) = soak.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(&soak.json, text + "\n").with_context(|| format!("writing {}", soak.json.display()))?;
    println!("results written to {}", soak.json.display());
    Ok(doc)
}

/// The report as Markdown: per language, its samples and verdicts.
pub fn table(doc: &SoakReport) -> String {
    let mut out = String::new();
    let m = &doc.machine;
    out += &format!(
        "Soak: {} calls, {} cycles of each kind; {} cores, kernel {}, load {} at start, {} at end\n",
        doc.calls, doc.cycles, m.cores, m.kernel, m.loadavg_start, m.loadavg_end
    );
    for l in &doc.languages {
        let c = &l.calls;
        out += &format!(
            "\n### {} ({:.0} s): {} calls ({} small puts, {} small gets, {} 1 MiB puts, {} 1 MiB gets, {} callbacks, {} dropped, {} timed out), {} shutdown cycles, {} kill cycles\n\n",
            l.lang, l.secs, c.total(), c.small_puts, c.small_gets, c.big_puts, c.big_gets, c.callbacks, c.dropped, c.timed_out, l.shutdown_cycles, l.kill_cycles
        );
        out += "| phase | done | plugins |";
        for (name, _) in COLUMNS {
            out += &format!(" {name} |");
        }
        out += " s | settle ms |\n|---|---:|---:|";
        out += &"---:|".repeat(COLUMNS.len() + 2);
        out += "\n";
        for s in &l.samples {
            out += &format!("| {} | {} | {} |", s.phase, s.done, s.live_plugins);
            for (_, get) in COLUMNS {
                out += &format!(" {} |", get(&s.res));
            }
            out += &format!(" {:.0} | {:.1} |\n", s.secs, s.settle_ms);
        }
        out += "\n";
        for v in &l.verdicts {
            out += &format!("- {}: {} ({})\n", v.resource, if v.pass { "PASS" } else { "FAIL" }, v.why);
        }
        if let Some(e) = &l.error {
            out += &format!("- stopped early: {e}\n");
        }
    }
    for n in &doc.notes {
        out += &format!("\nnote: {n}\n");
    }
    out
}
