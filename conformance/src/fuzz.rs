//! `--fuzz N` and `--replay FILE`: throws N generated and mutated inputs at a plugin in bursts,
//! checks after each burst that it is alive, answers and wrote only frames, and on a failure
//! writes the smallest input that reproduces it as a replay file (README.md, "Fuzzing").
//!
//! It runs on the judge's own strict driver (`driver.rs`), like the checks, so that a bug in the
//! SDK or the host crate cannot hide the same bug in a plugin.

mod burst;
mod corpus;
mod minimize;
mod mutate;
mod replay;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checks::{Failure, Tier};
use crate::driver::PluginSpec;
use crate::report::{CheckResult, Status};
use burst::{Fault, FaultKind, Plugin, Setup};
use minimize::Budget;
use mutate::{Gen, Item};
use replay::{ReplayFile, ReplayFrame};

/// Inputs per burst: the health checks run after each.
const BURST: usize = 100;
/// After this many failures (each minimized), the run stops.
const MAX_FAILURES: usize = 3;
/// Trials spent making the last failing frame smaller.
const SHRINK_TRIALS: usize = 40;
/// Bursts kept before a failing one, to reproduce a failure that needs what came before.
const HISTORY: usize = 8;

/// What a fuzz run is told.
#[derive(Debug, Clone)]
pub(crate) struct FuzzOpts {
    /// How many inputs to send in all.
    pub(crate) frames: u64,
    /// The seed of the generator.
    pub(crate) seed: u64,
    /// Where replay files go.
    pub(crate) out_dir: PathBuf,
    /// The time allowed for each answer.
    pub(crate) timeout: Duration,
    /// The interfaces to offer (`--interface`); empty for every reference one.
    pub(crate) only: Vec<String>,
    /// The plugin's label (its `--plugin` text), for the replay command.
    pub(crate) label: String,
}

/// What a fuzz run or a replay did, for the table and the JSON output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    /// The generator's seed (none for a replay).
    pub(crate) seed: Option<u64>,
    /// Inputs sent (minimizer trials not counted).
    pub(crate) frames: u64,
    /// Bursts sent, each followed by the health checks.
    pub(crate) bursts: u64,
    /// Wall time.
    pub(crate) elapsed: Duration,
    /// The replay files written.
    pub(crate) replays: Vec<PathBuf>,
}

impl Stats {
    /// Inputs per second.
    pub(crate) fn rate(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: frames, bursts, time, rate.
    pub(crate) fn line(&self) -> String {
        let seed = self.seed.map_or(String::new(), |s| format!(", seed {s}"));
        format!(
            "{} frames in {} bursts, {:.1} s, {:.0} frames/s{seed}",
            self.frames,
            self.bursts,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

fn setup(spec: &PluginSpec, timeout: Duration, only: &[String]) -> Setup {
    let offer = crate::checks::REFERENCE
        .iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == name))
        .map(|(name, versions)| ((*name).to_owned(), versions.to_vec()))
        .collect();
    Setup { spec: spec.clone(), offer, max_frame: tether_spec::MIN_MAX_FRAME_SIZE, timeout }
}

fn row(id: &str, title: String, started: Instant, failures: Vec<Failure>, stats: &Stats) -> CheckResult {
    let status = if failures.is_empty() { Status::Pass } else { Status::Fail };
    let reason = match failures.first() {
        None => stats.line(),
        Some(f) => format!("{} ({})", f.summary, stats.line()),
    };
    let failure = failures.into_iter().reduce(|mut a, b| {
        a.got = format!("{}\n\n{}", a.got, b.got);
        if !a.fix.lines().any(|l| l == b.fix) {
            a.fix = format!("{}\n{}", a.fix, b.fix);
        }
        a
    });
    CheckResult {
        id: id.into(),
        section: "§2.6 §3.4".into(),
        title,
        tier: Tier::Hardening,
        status,
        duration: started.elapsed(),
        reason,
        failure,
    }
}

/// The shell-quoted command that replays `file`.
fn replay_command(label: &str, file: &Path) -> String {
    let quote = |s: &str| shlex::try_quote(s).map_or_else(|_| s.to_owned(), |q| q.into_owned());
    format!("tether-conformance --plugin {} --replay {}", quote(label), quote(&file.display().to_string()))
}

/// Runs `--fuzz`: the one result row (`fuzz.survives`) and the figures.
pub(crate) async fn fuzz(spec: &PluginSpec, opts: &FuzzOpts) -> (CheckResult, Stats) {
    let started = Instant::now();
    let setup = setup(spec, opts.timeout, &opts.only);
    let title = format!(
        "{} fuzzed frames in bursts of {BURST}: after each, the plugin is alive, answers tether/ping and kv.get, and wrote only frames",
        opts.frames
    );
    let mut stats = Stats { seed: Some(opts.seed), ..Stats::default() };
    let seeds = match corpus::seeds() {
        Ok(s) => s,
        Err(e) => {
            let f = Failure::new(format!("the judge's seed transcripts do not parse: {e}"));
            return (row("fuzz.survives", title, started, vec![f], &stats), stats);
        }
    };
    let mut gen = Gen::new(opts.seed, seeds, setup.max_frame);
    let mut failures = Vec::new();
    let mut plugin: Option<Plugin> = None;
    let mut history: std::collections::VecDeque<Vec<Item>> = std::collections::VecDeque::new();
    while stats.frames < opts.frames && failures.len() < MAX_FAILURES {
        let mut p = match plugin.take() {
            Some(p) => p,
            None => match Plugin::start(&setup).await {
                Ok(p) => p,
                Err(e) => {
                    failures.push(
                        Failure::new(format!("the plugin could not be started and initialized: {e}"))
                            .expected(
                                "a plugin that completes the handshake (run the checks without --fuzz first)",
                            ),
                    );
                    break;
                }
            },
        };
        let n = (opts.frames - stats.frames).min(BURST as u64) as usize;
        let items: Vec<Item> = (0..n).map(|_| gen.item()).collect();
        stats.frames += n as u64;
        stats.bursts += 1;
        match p.burst(&items, setup.max_frame).await {
            Ok(()) => {
                history.push_back(items);
                if history.len() > HISTORY {
                    history.pop_front();
                }
                plugin = Some(p);
            }
            Err(fault) => {
                p.finish().await;
                let before: Vec<Item> = history.drain(..).flatten().collect();
                let number = failures.len() + 1;
                failures.push(report_failure(&setup, opts, fault, items, before, number, &mut stats).await);
            }
        }
        if stats.bursts % 100 == 0 {
            eprintln!("tether-conformance: fuzz {}: {}", opts.label, stats.line());
        }
    }
    if let Some(p) = plugin {
        p.finish().await;
    }
    stats.elapsed = started.elapsed();
    (row("fuzz.survives", title, started, failures, &stats), stats)
}

/// Minimizes a failing burst, writes the replay file and says what to run.
async fn report_failure(
    setup: &Setup,
    opts: &FuzzOpts,
    fault: Fault,
    burst: Vec<Item>,
    before: Vec<Item>,
    number: usize,
    stats: &mut Stats,
) -> Failure {
    eprintln!(
        "tether-conformance: fuzz {}: {} after burst {}; minimizing on fresh plugins ...",
        opts.label,
        fault.kind.name(),
        stats.bursts
    );
    let budget = Budget { trials: 400, time: Duration::from_secs(180) };
    // The burst alone on a fresh plugin; else with the bursts before it.
    let (input, reproduced) = if minimize::fails(setup, &burst, fault.kind).await {
        (burst, true)
    } else {
        let mut all = before;
        all.extend(burst);
        let reproduced = minimize::fails(setup, &all, fault.kind).await;
        (all, reproduced)
    };
    let (mut input, mut trials) =
        if reproduced { minimize::minimize(setup, input, fault.kind, budget).await } else { (input, 0) };
    // One frame left: make it smaller too, within a few more trials.
    if reproduced && input.len() == 1 {
        if let Some(item) = input.pop() {
            let (item, more) = minimize::shrink_frame(setup, item, fault.kind, SHRINK_TRIALS).await;
            input.push(item);
            trials += more;
        }
    }
    let file = ReplayFile {
        format: replay::FORMAT.into(),
        plugin: opts.label.clone(),
        seed: opts.seed,
        fault: fault.kind.name().into(),
        detail: fault.detail.clone(),
        max_frame_size: setup.max_frame,
        interfaces: setup.offer.clone(),
        frames: input.iter().map(ReplayFrame::of).collect(),
    };
    let path = opts.out_dir.join(format!("tether-fuzz-{}-{number}.json", opts.seed));
    let written = file.write(&path);
    let command = replay_command(&opts.label, &path);
    let kinds: Vec<&str> = input.iter().map(|i| i.kind).collect();
    let mut got = format!("{}\nafter {} bursts (seed {})", fault.detail, stats.bursts, opts.seed);
    match &written {
        Ok(()) => {
            stats.replays.push(path.clone());
            let how = if reproduced {
                format!(
                    "minimized to {} frame(s) [{}] in {trials} trials on fresh plugins",
                    input.len(),
                    kinds.join(", ")
                )
            } else {
                format!(
                    "{} frames; this failure did not reproduce on a fresh plugin (it may depend on timing)",
                    input.len()
                )
            };
            got.push_str(&format!("\nreplay file: {} ({how})\nreplay with: {command}", path.display()));
            eprintln!("tether-conformance: fuzz {}: replay file {}\n  {command}", opts.label, path.display());
        }
        Err(e) => got.push_str(&format!("\n{e}")),
    }
    let mut f = Failure::new(format!("{}: {}", fault.kind.name(), first_line(&fault.detail)))
        .expected("after each burst: the plugin alive, tether/ping and kv.get answered, tracked inputs answered as §3.4, §3.6 and §6.2 require, nothing but frames on stdout")
        .got(got)
        .fix(fix(fault.kind));
    f.context = Some(Box::new(crate::checks::Context { stderr: fault.stderr, transcript: String::new() }));
    f
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn fix(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Exited => "never exit over a frame: answer -32700 or -32600 (§3.4), skip bytes that are not a frame (§2.6) and read on; replay the file to see which input does it",
        FaultKind::Silent => "keep reading after any input: a frame, bytes that are not one, or a frame cut short (§2.6); answer every request",
        FaultKind::NotAFrame => "write only whole frames in the writer form of §2.2, whatever the input (§8.4)",
        FaultKind::BadMessage => "answer with valid messages only: an id you cannot read is answered with \"id\": null (§3.4)",
        FaultKind::WrongAnswer => "answer unknown methods -32601 (§3.6), unknown handles -32003 (§6.2), never answer a response (§3.4.3)",
    }
}

/// Runs `--replay FILE`: the one result row (`fuzz.replay`) and the figures.
pub(crate) async fn replay(spec: &PluginSpec, path: &Path, timeout: Duration) -> (CheckResult, Stats) {
    let started = Instant::now();
    let mut stats = Stats::default();
    let title = format!(
        "the frames of {} on a fresh plugin: it stays alive, answers and writes only frames",
        path.display()
    );
    let file = match ReplayFile::read(path) {
        Ok(f) => f,
        Err(e) => return (row("fuzz.replay", title, started, vec![Failure::new(e)], &stats), stats),
    };
    let items: Result<Vec<Item>, String> = file.frames.iter().map(ReplayFrame::item).collect();
    let items = match items {
        Ok(i) => i,
        Err(e) => {
            let f = Failure::new(format!("{}: {e}", path.display()));
            return (row("fuzz.replay", title, started, vec![f], &stats), stats);
        }
    };
    let setup =
        Setup { spec: spec.clone(), offer: file.interfaces.clone(), max_frame: file.max_frame_size, timeout };
    let mut failures = Vec::new();
    match Plugin::start(&setup).await {
        Err(e) => {
            failures.push(Failure::new(format!("the plugin could not be started and initialized: {e}")))
        }
        Ok(mut p) => {
            stats.frames = items.len() as u64;
            stats.bursts = 1;
            let result = p.burst(&items, setup.max_frame).await;
            p.finish().await;
            if let Err(fault) = result {
                let mut f = Failure::new(format!("{}: {}", fault.kind.name(), first_line(&fault.detail)))
                    .expected(format!("the plugin survives the {} frames of the file", items.len()))
                    .got(format!(
                        "{}\n(the file recorded: {}: {})",
                        fault.detail,
                        file.fault,
                        first_line(&file.detail)
                    ))
                    .fix(fix(fault.kind));
                f.context = Some(Box::new(crate::checks::Context {
                    stderr: fault.stderr,
                    transcript: String::new(),
                }));
                failures.push(f);
            }
        }
    }
    stats.elapsed = started.elapsed();
    (row("fuzz.replay", title, started, failures, &stats), stats)
}
