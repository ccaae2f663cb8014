//! `tether-conformance`: judges any Tether plugin, in any language, by SPEC.md.
//!
//! Give it a plugin's command line (`--plugin "python3 my_plugin.py"`) and it runs every check
//! against fresh processes of that plugin and prints, check by check, what passed and what to
//! fix. Without `--plugin` it builds and judges every example plugin of the repository (Rust,
//! Python and Node). See `README.md` beside this file for the check list and the baseline format.
//!
//! The judge speaks the protocol through its own strict driver (`driver`), built on the wire
//! types of `tether-spec` only: it does not use the `tether` SDK or the `tether-host` crate, so
//! that a bug there cannot hide the same bug in a plugin.

mod checks;
mod driver;
mod fuzz;
mod iface;
mod procs;
mod report;
mod scenario;
mod schema;
mod targets;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use tether_spec::MagicCookie;

use crate::checks::{Check, Ctx, Kind, Needs, Opts, Tier, Verdict};
use crate::driver::{Observations, PluginSpec, Wire};
use crate::report::{Baseline, CheckResult, PluginReport, Status};

/// Judges Tether plugins by the spec, check by check.
#[derive(Debug, Parser)]
#[command(name = "tether-conformance", version, about, long_about = None)]
struct Cli {
    /// A plugin's command line, split like a shell splits words (run without a shell).
    /// Repeatable. Without it, every example plugin of the repository is built and judged.
    #[arg(long = "plugin", value_name = "COMMAND LINE")]
    plugins: Vec<String>,
    /// The magic cookie to set, as KEY=VALUE (default: the reference cookie of SPEC.md §1.4).
    #[arg(long, value_name = "KEY=VALUE")]
    cookie: Option<String>,
    /// An application's interface file (`spec/schema/interface.schema.json`): the plugin is also
    /// judged against it (`iface.<name>.*` checks, README.md). Repeatable.
    #[arg(long = "interface-file", value_name = "FILE")]
    interface_files: Vec<std::path::PathBuf>,
    /// A directory of scenarios (`*.tether`, the format of spec/transcripts/README.md): each is
    /// replayed in a fresh plugin process as the check `scenario.<file stem>`.
    #[arg(long = "scenarios", value_name = "DIR")]
    scenarios: Option<std::path::PathBuf>,
    /// Test only these reference interfaces (default: every one the plugin declares).
    #[arg(long = "interface", value_enum)]
    interfaces: Vec<Interface>,
    /// Run only the checks whose id contains this text, or matches this glob (`*`, `?`).
    /// Repeatable: a check runs when any filter matches.
    #[arg(long = "filter", value_name = "TEXT OR GLOB")]
    filters: Vec<String>,
    /// Leave out the checks whose id contains this text, or matches this glob. Repeatable.
    #[arg(long = "exclude", value_name = "TEXT OR GLOB")]
    excludes: Vec<String>,
    /// Judge only the checks of this tier (default: both). `core` is what a conforming host
    /// relies on; `hardening` is what only a broken or hostile host sends (README.md, "Tiers").
    #[arg(long, value_enum, value_name = "TIER")]
    tier: Option<TierArg>,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// A file of expected failures (see README.md): listed failures do not fail the run, listed
    /// checks that pass fail it as stale.
    #[arg(long, value_name = "FILE")]
    baseline: Option<std::path::PathBuf>,
    /// The grace period for a plugin's exit, in milliseconds (SPEC.md §4.6).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    grace_ms: u64,
    /// The time allowed for each answer, in milliseconds (large values get at least 60 s,
    /// `tether/initialize` 10 s more).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    timeout_ms: u64,
    /// How many scenarios (plugin processes) run at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,
    /// Which descriptors carry the frames (SPEC.md §13): `stdio`, or `fds` (two pipes on the
    /// plugin's descriptors 3 and 4, announced in `TETHER_TRANSPORT`; its stdin is then held
    /// open and its stdout is free text). Every check runs over that transport; the
    /// `transport.*` checks run only with `fds`.
    #[arg(long, value_enum, default_value_t = TransportArg::Stdio, value_name = "TRANSPORT")]
    transport: TransportArg,
    /// Show progress and the frames exchanged in failures.
    #[arg(long)]
    verbose: bool,
    /// Instead of the checks, throw this many generated and mutated frames at each plugin, in
    /// bursts, checking after each burst that it is alive, answers and wrote only frames
    /// (README.md, "Fuzzing"). A failure is minimized and written as a replay file.
    #[arg(long, value_name = "N", conflicts_with = "replay", value_parser = clap::value_parser!(u64).range(1..))]
    fuzz: Option<u64>,
    /// The seed of `--fuzz` (default: a random one, printed), to repeat a run.
    #[arg(long, value_name = "S", requires = "fuzz")]
    seed: Option<u64>,
    /// Where `--fuzz` writes replay files (default: the system's temporary directory).
    #[arg(long, value_name = "DIR", requires = "fuzz")]
    fuzz_out: Option<std::path::PathBuf>,
    /// Instead of the checks, send the frames of a replay file written by `--fuzz` to a fresh
    /// plugin and judge it the same way.
    #[arg(long, value_name = "FILE")]
    replay: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Interface {
    Kv,
    Counter,
    Blob,
}

/// The names of the reference interfaces `--interface` keeps (all when none is given).
fn interface_names(cli: &Cli) -> Vec<String> {
    let name = |i: &Interface| match i {
        Interface::Kv => "kv",
        Interface::Counter => "counter",
        Interface::Blob => "blob",
    };
    cli.interfaces.iter().map(|i| name(i).to_owned()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    Stdio,
    Fds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TierArg {
    Core,
    Hardening,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Junit,
}

/// Whether `id` matches a `--filter`: a glob when it holds `*` or `?`, otherwise a substring.
fn matches_filter(id: &str, filter: &str) -> bool {
    if filter.contains(['*', '?']) {
        glob(filter.as_bytes(), id.as_bytes())
    } else {
        id.contains(filter)
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Whether `--filter` and `--exclude` keep a check with this id (tiers aside).
fn selected_id(cli: &Cli, id: &str) -> bool {
    (cli.filters.is_empty() || cli.filters.iter().any(|f| matches_filter(id, f)))
        && !cli.excludes.iter().any(|f| matches_filter(id, f))
}

fn selected(cli: &Cli, check: &Check) -> bool {
    let tier = match cli.tier {
        None => true,
        Some(TierArg::Core) => check.tier == Tier::Core,
        Some(TierArg::Hardening) => check.tier == Tier::Hardening,
    };
    tier && (cli.filters.is_empty() || cli.filters.iter().any(|f| matches_filter(check.id, f)))
        && !cli.excludes.iter().any(|f| matches_filter(check.id, f))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for c in checks::all() {
            println!("{:<30} {:<16} {:<9} {}", c.id, c.section, c.tier.name(), c.title);
        }
        return ExitCode::SUCCESS;
    }
    let cookie = match &cli.cookie {
        None => MagicCookie::reference(),
        Some(text) => match MagicCookie::parse(text) {
            Some(c) => c,
            None => {
                eprintln!("tether-conformance: --cookie must be KEY=VALUE, got {text:?}");
                return ExitCode::from(2);
            }
        },
    };
    let baseline = match &cli.baseline {
        None => Baseline::default(),
        Some(path) => {
            match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| Baseline::parse(&t)) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("tether-conformance: cannot read the baseline {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
    };
    let known: Vec<&str> = checks::all().iter().map(|c| c.id).collect();
    for id in baseline.ids() {
        // Interface and scenario checks are named by the files given on the command line.
        if !known.contains(&id) && !id.starts_with("iface.") && !id.starts_with("scenario.") {
            eprintln!("tether-conformance: warning: the baseline names an unknown check {id:?}");
        }
    }
    let documents = match iface::load(&cli.interface_files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tether-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let scenarios = match cli.scenarios.as_deref().map(scenario::load).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("tether-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether-conformance: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut reports = match runtime.block_on(run_until_signal(&cli, cookie, &documents, &scenarios)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    for r in &mut reports {
        baseline.apply(r);
    }
    let text = match cli.format {
        Format::Table => report::table(&reports),
        Format::Json => report::json(&reports),
        Format::Junit => report::junit(&reports),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    let failed = reports.iter().flat_map(|p| &p.results).any(|r| r.status.fails_run());
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the judge; on SIGINT or SIGTERM, kills every plugin's process group (a plugin runs in a
/// group of its own, which a terminal's Ctrl-C does not reach) and exits with the conventional
/// status, 128 + the signal's number.
async fn run_until_signal(
    cli: &Cli,
    cookie: MagicCookie,
    documents: &[tether_spec::InterfaceDocument],
    scenarios: &[scenario::Scenario],
) -> anyhow::Result<Vec<PluginReport>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let number = tokio::select! {
        r = run(cli, cookie, documents, scenarios) => return r,
        _ = int.recv() => 2,
        _ = term.recv() => 15,
    };
    let killed = procs::kill_all_groups();
    eprintln!("\ntether-conformance: stopped by signal {number}; killed {killed} plugin process group(s)");
    std::process::exit(128 + number);
}

async fn run(
    cli: &Cli,
    cookie: MagicCookie,
    documents: &[tether_spec::InterfaceDocument],
    scenarios: &[scenario::Scenario],
) -> anyhow::Result<Vec<PluginReport>> {
    let targets = if cli.plugins.is_empty() {
        targets::examples(cli.verbose).await
    } else {
        let mut out = Vec::new();
        for line in &cli.plugins {
            let argv = shlex::split(line)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| anyhow::anyhow!("cannot split the command line {line:?} into words"))?;
            out.push(targets::Target { label: line.clone(), argv: Ok(argv) });
        }
        out
    };
    let mut reports = Vec::new();
    for target in targets {
        match target.argv {
            Ok(argv) => {
                let command = argv
                    .iter()
                    .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned()))
                    .collect::<Vec<_>>()
                    .join(" ");
                if cli.verbose || cli.format == Format::Table {
                    eprintln!("tether-conformance: judging {} ...", target.label);
                }
                let transport = match cli.transport {
                    TransportArg::Stdio => Wire::Stdio,
                    TransportArg::Fds => Wire::Fds,
                };
                let watch = documents.iter().map(|d| d.name.clone()).collect();
                let spec = PluginSpec { argv, cookie: cookie.clone(), transport, watch };
                if cli.fuzz.is_some() || cli.replay.is_some() {
                    let (result, stats) = fuzz_or_replay(cli, &spec, &target.label).await;
                    reports.push(PluginReport {
                        label: target.label,
                        command,
                        notes: Vec::new(),
                        results: vec![result],
                        fuzz: Some(stats),
                    });
                    continue;
                }
                let (mut results, mut seen) = judge(cli, spec.clone(), &target.label).await;
                let (timeout, grace) =
                    (Duration::from_millis(cli.timeout_ms), Duration::from_millis(cli.grace_ms));
                let mut versions = Vec::new();
                for doc in documents {
                    if iface::host_served(doc, documents) {
                        // The host serves it as a handle: only the plugin's invokes are judged.
                        versions.push(doc.versions.last().map(|v| v.version));
                        continue;
                    }
                    let (judged, version) = iface::judge(doc, &spec, timeout, grace).await;
                    results.extend(judged.into_iter().filter(|r| selected_id(cli, &r.id)));
                    versions.push(version);
                }
                let chosen: Vec<scenario::Scenario> =
                    scenarios.iter().filter(|s| selected_id(cli, &scenario::id(s))).cloned().collect();
                let limits = scenario::Limits { timeout, grace, verbose: cli.verbose };
                for (r, mut obs) in scenario::run_all(&chosen, &spec, limits, cli.jobs).await {
                    if cli.verbose {
                        eprintln!("{:<30} {}", r.id, r.reason);
                    }
                    seen.push((r.id.clone(), std::mem::take(&mut obs.iface_messages)));
                    results.push(r);
                }
                for (doc, version) in documents.iter().zip(versions) {
                    let r = iface::messages_valid(doc, version, &seen);
                    if selected_id(cli, &r.id) {
                        results.push(r);
                    }
                }
                reports.push(PluginReport {
                    label: target.label,
                    command,
                    notes: Vec::new(),
                    results,
                    fuzz: None,
                });
            }
            Err(Skipped::Note(note)) => {
                reports.push(PluginReport {
                    label: target.label.clone(),
                    command: String::new(),
                    notes: vec![note],
                    results: Vec::new(),
                    fuzz: None,
                });
            }
            Err(Skipped::Failed { id, reason, detail }) => {
                let failure = checks::failure(&reason, &detail);
                reports.push(PluginReport {
                    label: target.label.clone(),
                    command: String::new(),
                    notes: Vec::new(),
                    results: vec![CheckResult {
                        id,
                        section: "-".into(),
                        title: "building the example plugins".into(),
                        tier: Tier::Core,
                        status: Status::Fail,
                        duration: Duration::ZERO,
                        reason,
                        failure: Some(failure),
                    }],
                    fuzz: None,
                });
            }
        }
    }
    Ok(reports)
}

/// `--fuzz N` or `--replay FILE` against one plugin.
async fn fuzz_or_replay(cli: &Cli, spec: &PluginSpec, label: &str) -> (CheckResult, fuzz::Stats) {
    let timeout = Duration::from_millis(cli.timeout_ms);
    if let Some(file) = &cli.replay {
        return fuzz::replay(spec, file, timeout).await;
    }
    let seed = cli.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("tether-conformance: fuzzing {label} with {} frames, --seed {seed}", cli.fuzz.unwrap_or(0));
    let only = interface_names(cli);
    let opts = fuzz::FuzzOpts {
        frames: cli.fuzz.unwrap_or(0),
        seed,
        out_dir: cli.fuzz_out.clone().unwrap_or_else(std::env::temp_dir),
        timeout,
        only,
        label: label.to_owned(),
    };
    fuzz::fuzz(spec, &opts).await
}

/// Why a target is not judged.
#[derive(Debug, Clone)]
pub(crate) enum Skipped {
    /// Missing interpreter or file: a note, nothing fails.
    Note(String),
    /// A setup step failed: one failing row.
    Failed {
        /// The row's id.
        id: String,
        /// One line.
        reason: String,
        /// Details (the build's output).
        detail: String,
    },
}

fn verdict_result(check: &Check, verdict: Verdict, duration: Duration) -> CheckResult {
    let (status, reason, failure) = match verdict {
        Verdict::Pass => (Status::Pass, String::new(), None),
        Verdict::Skip(why) => (Status::Skip, why, None),
        Verdict::NotRun(why) => (Status::NotRun, why, None),
        Verdict::Fail(f) => (Status::Fail, f.summary.clone(), Some(*f)),
    };
    CheckResult {
        id: check.id.into(),
        section: check.section.into(),
        title: check.title.into(),
        tier: check.tier,
        status,
        duration,
        reason,
        failure,
    }
}

/// What each check saw on the watched application interfaces: (check id, messages).
type SeenByCheck = Vec<(String, Vec<driver::SeenMessage>)>;

/// Runs every selected check against one plugin: the launch checks and the handshake probe
/// first; when the handshake does not complete, that one diagnosis and nothing else. Also gives
/// what each check saw on the watched application interfaces.
async fn judge(cli: &Cli, spec: PluginSpec, label: &str) -> (Vec<CheckResult>, SeenByCheck) {
    let only = interface_names(cli);
    let opts = Opts {
        grace: Duration::from_millis(cli.grace_ms),
        timeout: Duration::from_millis(cli.timeout_ms),
        verbose: cli.verbose,
        only,
    };
    let all = checks::all();
    let chosen: Vec<Check> = all.iter().filter(|c| selected(cli, c)).copied().collect();
    let progress = Progress::new(cli, label, chosen.len());
    let mut results: BTreeMap<&str, CheckResult> = BTreeMap::new();
    let mut observations: Vec<Observations> = Vec::new();
    let mut seen: SeenByCheck = Vec::new();
    // A check that does not finish within this time fails; it never hangs the judge.
    let limit = opts.timeout * 4 + opts.grace * 2 + Duration::from_secs(120);
    let jobs = cli.jobs.max(1);

    // The launch checks need no handshake: they run beside the probe.
    let ctx0 = Arc::new(Ctx::new(spec.clone(), opts.clone(), None));
    let launch: Vec<(Check, ScenarioFn)> = chosen
        .iter()
        .filter(|c| c.id.starts_with("launch."))
        .filter_map(|c| match c.kind {
            Kind::Scenario(f) => Some((*c, f)),
            _ => None,
        })
        .collect();
    let started = Instant::now();
    progress.start("handshake.initialize");
    let probe_run = async {
        match tokio::time::timeout(limit, checks::probe(Arc::clone(&ctx0))).await {
            Ok(out) => out,
            Err(_) => checks::ScenarioOut {
                verdict: Verdict::Fail(Box::new(checks::failure("the handshake did not finish in time", ""))),
                obs: Observations::default(),
                probe: None,
            },
        }
    };
    let (out, launched) =
        tokio::join!(probe_run, run_scenarios(launch, Arc::clone(&ctx0), limit, jobs, &progress));
    for (check, mut out, elapsed) in launched {
        seen.push((check.id.to_owned(), std::mem::take(&mut out.obs.iface_messages)));
        observations.push(out.obs);
        let r = verdict_result(&check, out.verdict, elapsed);
        progress.done(cli, &r);
        results.insert(check.id, r);
    }
    progress.stop("handshake.initialize");
    let probe = out.probe.clone();
    let mut out = out;
    seen.push(("handshake.initialize".to_owned(), std::mem::take(&mut out.obs.iface_messages)));
    observations.push(out.obs);
    let probe_check = all.iter().find(|c| matches!(c.kind, Kind::Probe)).copied();
    if let Some(check) = probe_check {
        // When the handshake failed, its diagnosis is reported even if the check was filtered out.
        if selected(cli, &check) || probe.is_none() {
            let r = verdict_result(&check, out.verdict, started.elapsed());
            progress.done(cli, &r);
            results.insert(check.id, r);
        }
    }
    if probe.is_none() {
        for check in &chosen {
            results.entry(check.id).or_insert_with(|| CheckResult {
                id: check.id.into(),
                section: check.section.into(),
                title: check.title.into(),
                tier: check.tier,
                status: Status::NotRun,
                duration: Duration::ZERO,
                reason: "not run: the handshake did not complete (see handshake.initialize)".into(),
                failure: None,
            });
        }
        progress.clear();
        return (all.iter().filter_map(|c| results.remove(c.id)).collect(), seen);
    }
    let wire = spec.transport;
    let ctx = Arc::new(Ctx::new(spec, opts.clone(), probe.clone()));

    // Which checks apply.
    let declared = |name: &str| {
        probe.as_ref().is_some_and(|p| p.interfaces.contains_key(name))
            && (opts.only.is_empty() || opts.only.iter().any(|o| o == name))
    };
    let why_not = |needs: Needs| -> Option<String> {
        let missing = |name: &str| {
            if !opts.only.is_empty() && !opts.only.iter().any(|o| o == name) {
                Some(format!("{name} not selected with --interface"))
            } else {
                Some(format!("the plugin does not implement {name}"))
            }
        };
        match needs {
            Needs::Any => None,
            Needs::SomeInterface => {
                if declared("kv") || declared("counter") || declared("blob") {
                    None
                } else {
                    Some("the plugin implements no selected reference interface".to_owned())
                }
            }
            Needs::Kv => (!declared("kv")).then(|| missing("kv")).flatten(),
            Needs::KvV2 => {
                if !declared("kv") {
                    missing("kv")
                } else if probe.as_ref().and_then(|p| p.interfaces.get("kv")).is_some_and(|(v, _)| *v < 2) {
                    Some("the plugin does not implement kv version 2".to_owned())
                } else {
                    None
                }
            }
            Needs::Counter => (!declared("counter")).then(|| missing("counter")).flatten(),
            Needs::KvAttachments => {
                if !declared("kv") {
                    missing("kv")
                } else if probe.as_ref().is_some_and(|p| p.capabilities.attachments.is_none()) {
                    Some("the plugin did not announce the attachments capability when offered it (§2.8, §10.2)".to_owned())
                } else {
                    None
                }
            }
            Needs::KvProgress => {
                if !declared("kv") {
                    missing("kv")
                } else if probe.as_ref().is_some_and(|p| p.capabilities.progress.is_none()) {
                    Some("the plugin does not implement progress: it did not announce the progress capability when offered it (§14, §10.2)".to_owned())
                } else {
                    None
                }
            }
            Needs::Blob => (!declared("blob")).then(|| missing("blob")).flatten(),
            Needs::FdsTransport => {
                (wire != Wire::Fds).then(|| "only with --transport fds (SPEC.md §13)".to_owned())
            }
            Needs::KvOrBlob => (!declared("kv") && !declared("blob"))
                .then(|| "the plugin implements neither kv nor blob (no bytes to carry)".to_owned()),
        }
    };

    let mut scenarios = Vec::new();
    for check in &chosen {
        if matches!(check.kind, Kind::Probe) || results.contains_key(check.id) {
            continue;
        }
        if let Some(why) = why_not(check.needs) {
            let r = verdict_result(check, Verdict::Skip(why), Duration::ZERO);
            progress.done(cli, &r);
            results.insert(check.id, r);
            continue;
        }
        match check.kind {
            Kind::FromProbe(f) => {
                if let Some(p) = &probe {
                    let r = verdict_result(check, f(p), Duration::ZERO);
                    progress.done(cli, &r);
                    results.insert(check.id, r);
                }
            }
            Kind::Scenario(f) => scenarios.push((*check, f)),
            Kind::Aggregate(_) | Kind::Probe => {}
        }
    }
    for (check, mut out, elapsed) in run_scenarios(scenarios, ctx, limit, jobs, &progress).await {
        seen.push((check.id.to_owned(), std::mem::take(&mut out.obs.iface_messages)));
        observations.push(out.obs);
        let r = verdict_result(&check, out.verdict, elapsed);
        progress.done(cli, &r);
        results.insert(check.id, r);
    }
    for check in &chosen {
        if let Kind::Aggregate(f) = check.kind {
            if why_not(check.needs).is_none() {
                let r = verdict_result(check, f(&observations), Duration::ZERO);
                progress.done(cli, &r);
                results.insert(check.id, r);
            }
        }
    }
    progress.clear();
    (all.iter().filter_map(|c| results.remove(c.id)).collect(), seen)
}

/// A scenario check's function.
type ScenarioFn = fn(Arc<Ctx>) -> futures::future::BoxFuture<'static, checks::ScenarioOut>;

/// Runs scenarios, `jobs` at a time, each in its own task and bounded by `limit`.
async fn run_scenarios(
    scenarios: Vec<(Check, ScenarioFn)>,
    ctx: Arc<Ctx>,
    limit: Duration,
    jobs: usize,
    progress: &Progress,
) -> Vec<(Check, checks::ScenarioOut, Duration)> {
    futures::stream::iter(scenarios.into_iter().map(|(check, f)| {
        let ctx = Arc::clone(&ctx);
        progress.start(check.id);
        async move {
            let started = Instant::now();
            if ctx.stalls.load(std::sync::atomic::Ordering::Relaxed) >= checks::STALL_LIMIT {
                let why = format!(
                    "not run: {} checks already waited out their time-out (the plugin stopped answering); fix those first",
                    checks::STALL_LIMIT
                );
                let out = checks::ScenarioOut { verdict: Verdict::NotRun(why), obs: Observations::default(), probe: None };
                return (check, out, Duration::ZERO);
            }
            let task = tokio::spawn(f(ctx));
            // Dropping a JoinHandle detaches its task: abort it on time-out, which drops the
            // session and so kills the plugin's process group.
            let abort = task.abort_handle();
            let out = match tokio::time::timeout(limit, task).await {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => checks::ScenarioOut {
                    verdict: Verdict::Fail(Box::new(checks::failure(
                        &format!("the judge's scenario failed: {e}"),
                        "",
                    ))),
                    obs: Observations::default(),
                    probe: None,
                },
                Err(_) => {
                    abort.abort();
                    checks::ScenarioOut {
                        verdict: Verdict::Fail(Box::new(checks::failure(
                            &format!("the check did not finish within {} s", limit.as_secs()),
                            "",
                        ))),
                        obs: Observations::default(),
                        probe: None,
                    }
                }
            };
            (check, out, started.elapsed())
        }
    }))
    .buffer_unordered(jobs)
    .collect()
    .await
}

/// The live progress line on a terminal: the plugin, checks done of total, a check in progress.
/// Nothing when stderr is not a terminal (CI logs, tests) or with `--verbose`: indicatif hides a
/// stderr bar by itself when stderr is not a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
    running: std::sync::Mutex<Vec<&'static str>>,
}

impl Progress {
    fn new(cli: &Cli, label: &str, total: usize) -> Progress {
        let bar = if cli.verbose {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            )
        };
        // The template is a constant; should indicatif ever refuse it, its default style serves.
        if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix}: {pos}/{len} checks  {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        Progress { bar, running: std::sync::Mutex::new(Vec::new()) }
    }

    fn start(&self, id: &'static str) {
        if let Ok(mut running) = self.running.lock() {
            running.push(id);
        }
        self.show_running();
    }

    /// A check is no longer in progress (without counting it: the probe when not selected).
    fn stop(&self, id: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.retain(|r| *r != id);
        }
        self.show_running();
    }

    fn done(&self, cli: &Cli, r: &CheckResult) {
        if cli.verbose {
            eprintln!("  {:<30} {:?} {}ms {}", r.id, r.status, r.duration.as_millis(), r.reason);
        }
        if let Ok(mut running) = self.running.lock() {
            running.retain(|id| *id != r.id);
        }
        if self.bar.position() < self.bar.length().unwrap_or(u64::MAX) {
            self.bar.inc(1);
        }
        self.show_running();
    }

    /// The first check still running, as the bar's message.
    fn show_running(&self) {
        let current = self.running.lock().ok().and_then(|r| r.first().copied()).unwrap_or("");
        self.bar.set_message(current);
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_substrings_or_globs() {
        assert!(matches_filter("kv.large-16mib", "large"));
        assert!(matches_filter("kv.large-16mib", "kv.*"));
        assert!(matches_filter("kv.large-16mib", "*16mib"));
        assert!(matches_filter("kv.put-get", "kv.put-???"));
        assert!(!matches_filter("rpc.batch", "kv.*"));
        assert!(matches_filter("kv.put-get", "kv.put")); // substring without glob characters
    }
}
