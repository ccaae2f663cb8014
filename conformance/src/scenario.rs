//! Scenarios (`--scenarios DIR`): an application's own transcripts, each replayed in a fresh
//! plugin process and reported as the check `scenario.<file stem>`.
//!
//! The judge plays the host: it writes each `-->` line (with captured values substituted) and
//! reads the plugin's lines, which must match the `<--` lines in order (or in any order inside an
//! `@unordered` group), each within its time limit. The first line that differs fails the
//! scenario with the file and line, the expected line, the line the plugin sent and the JSON
//! pointer of the difference. The format is `spec/transcripts/README.md`, "Scenarios".

mod matcher;
mod parse;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tether_spec::{format::show_bytes, Message, NotificationMethod, StreamCredit};

use crate::checks::{Context, Failure, Tier};
use crate::driver::{CookieMode, Observations, PluginSpec, RecvError, Session, START_ALLOWANCE};
use crate::report::{CheckResult, Status};

pub(crate) use parse::Scenario;

/// The time a whole scenario may take when it sets no `@deadline`.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// How many bytes of a line are shown in a failure.
const SHOWN: usize = 400;

/// What a scenario run needs from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The time allowed for each expectation without `@within` (`--timeout-ms`).
    pub(crate) timeout: Duration,
    /// The time the plugin has to exit after the last line (`--grace-ms`).
    pub(crate) grace: Duration,
    /// Keep the frames exchanged for failures (`--verbose`).
    pub(crate) verbose: bool,
}

/// Reads every `*.tether` file of `dir`, sorted by name; a file that is not a valid scenario is
/// an error naming its line (the scenario is wrong, not the plugin).
pub(crate) fn load(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read the scenario directory {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tether") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!("the scenario directory {} holds no *.tether file", dir.display());
    }
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read the scenario {}: {e}", p.display()))?;
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            parse::parse(&p.display().to_string(), &stem, &bytes).map_err(anyhow::Error::msg)
        })
        .collect()
}

/// The check id of a scenario.
pub(crate) fn id(s: &Scenario) -> String {
    format!("scenario.{}", s.stem)
}

/// Replays every scenario, `jobs` at a time, each in a fresh plugin process; results in the
/// scenarios' order, with what each observed.
pub(crate) async fn run_all(
    scenarios: &[Scenario],
    spec: &PluginSpec,
    limits: Limits,
    jobs: usize,
) -> Vec<(CheckResult, Observations)> {
    futures::stream::iter(scenarios.iter().map(|sc| run(sc, spec, limits)))
        .buffered(jobs.max(1))
        .collect()
        .await
}

/// Replays one scenario in a fresh plugin process.
pub(crate) async fn run(sc: &Scenario, spec: &PluginSpec, limits: Limits) -> (CheckResult, Observations) {
    let started = Instant::now();
    let title = format!("the plugin answers as {} says", sc.path);
    let outcome = match Session::start(spec, CookieMode::Set, limits.verbose) {
        Err(e) => {
            (Err(Failure::new(e.to_string()).fix("check the --plugin command line")), Observations::default())
        }
        Ok(mut s) => {
            let deadline = sc.deadline.unwrap_or(DEFAULT_DEADLINE);
            let r = match tokio::time::timeout(deadline, replay(sc, &mut s, limits)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::new(format!(
                    "{}: the scenario did not finish within its deadline of {}",
                    sc.path,
                    secs(deadline)
                ))
                .expected(if sc.deadline.is_some() {
                    "the `@deadline` of the file"
                } else {
                    "the default deadline"
                })
                .fix("answer sooner, or raise `@deadline` in the scenario")),
            };
            let r = r.map_err(|mut f| {
                f.context = Some(Box::new(Context {
                    stderr: s.stderr_tail(12),
                    transcript: s.transcript().join("\n"),
                }));
                f
            });
            if r.is_err() {
                s.give_up();
            }
            let (obs, _) = s.finish(limits.grace).await;
            (r, obs)
        }
    };
    let (status, reason, failure) = match outcome.0 {
        Ok(()) => (Status::Pass, String::new(), None),
        Err(f) => (Status::Fail, f.summary.clone(), Some(f)),
    };
    let result = CheckResult {
        id: id(sc),
        section: "scenario".into(),
        title,
        tier: Tier::Core,
        status,
        duration: started.elapsed(),
        reason,
        failure,
    };
    (result, outcome.1)
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The next message the scenario matches: `$/stream.credit` is skipped (a consumer grants when
/// it likes) and `$/log` is kept by the driver for the generic checks.
async fn next(s: &mut Session, until: Instant) -> Result<(Value, Vec<u8>), RecvError> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let msg = s.recv(left).await?;
        if matches!(&msg, Message::Notification(n) if n.method == StreamCredit::METHOD) {
            continue;
        }
        let body = msg.to_body();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Ok((value, body));
    }
}

async fn replay(sc: &Scenario, s: &mut Session, limits: Limits) -> Result<(), Failure> {
    let mut captures = matcher::Captures::new();
    let mut first = true;
    for step in &sc.steps {
        match step {
            parse::Step::Send { line, body } => {
                let bytes = match body {
                    parse::Body::Verbatim(b) => b.clone(),
                    parse::Body::Template(v) => {
                        let v = matcher::substitute(v, &captures)
                            .map_err(|e| Failure::new(format!("{}:{line}: {e}", sc.path)))?;
                        serde_json::to_vec(&v).unwrap_or_default()
                    }
                };
                s.send_scenario(&bytes)
                    .await
                    .map_err(|e| Failure::new(format!("{}:{line}: cannot send this line: {e}", sc.path)))?;
            }
            parse::Step::Expect { lines, within } => {
                let limit =
                    within.unwrap_or(if first { limits.timeout + START_ALLOWANCE } else { limits.timeout });
                first = false;
                expect(sc, s, lines, limit, within.is_some(), &mut captures).await?;
            }
        }
    }
    end(sc, s, limits.grace).await
}

/// Reads the plugin's lines until each of `lines` is met, in order for one line, in any order
/// for a group.
async fn expect(
    sc: &Scenario,
    s: &mut Session,
    lines: &[parse::Expect],
    limit: Duration,
    explicit: bool,
    captures: &mut matcher::Captures,
) -> Result<(), Failure> {
    let until = Instant::now() + limit;
    let mut left: Vec<&parse::Expect> = lines.iter().collect();
    let group = lines.len() > 1;
    while let Some(first) = left.first() {
        let (got, body) = match next(s, until).await {
            Ok(m) => m,
            Err(e) => {
                let why = match e {
                    RecvError::Timeout if explicit => {
                        format!("nothing within the time limit (@within {})", secs(limit))
                    }
                    RecvError::Timeout => {
                        format!("nothing within {} (--timeout-ms; set `@within` to change it)", secs(limit))
                    }
                    RecvError::Closed => "the plugin closed its stdout (it exited?)".to_owned(),
                    RecvError::NotAFrame(v) => format!("bytes that are not a frame: {v}"),
                };
                let still = if group {
                    format!(
                        " ({} of the {} lines of the unordered group at lines {}-{} still expected)",
                        left.len(),
                        lines.len(),
                        lines[0].line,
                        lines[lines.len() - 1].line
                    )
                } else {
                    String::new()
                };
                return Err(Failure::new(format!("{}:{}: {why}{still}", sc.path, first.line))
                    .expected(expected_lines(sc, &left))
                    .got(format!("no line came: {why}"))
                    .fix("send the expected line in time (the plugin's stderr may say why it did not)"));
            }
        };
        let mut misses = Vec::new();
        let hit = left.iter().position(|e| match matcher::matches(&e.pattern, &got, captures) {
            Ok(()) => true,
            Err(m) => {
                misses.push((e.line, m));
                false
            }
        });
        match hit {
            Some(i) => {
                left.remove(i);
            }
            None => {
                // The line that came closest (the deepest difference) is named first.
                misses.sort_by_key(|(_, m)| std::cmp::Reverse(m.at.matches('/').count()));
                let detail: Vec<String> = misses
                    .iter()
                    .map(|(line, m)| format!("{}:{line}: at {:?}: {}", sc.path, m.at, m.why))
                    .collect();
                let summary = if group {
                    format!(
                        "{}:{}-{}: a line that matches none of the {} lines still expected in the unordered group ({})",
                        sc.path,
                        lines[0].line,
                        lines[lines.len() - 1].line,
                        left.len(),
                        detail.first().cloned().unwrap_or_default()
                    )
                } else {
                    detail.first().cloned().unwrap_or_default()
                };
                return Err(Failure::new(summary)
                    .expected(expected_lines(sc, &left))
                    .got(format!("{}\n{}", show_bytes(&body, SHOWN), detail.join("\n")))
                    .fix("make the plugin send what the scenario expects (or correct the scenario)"));
            }
        }
    }
    Ok(())
}

fn expected_lines(sc: &Scenario, left: &[&parse::Expect]) -> String {
    left.iter()
        .map(|e| format!("{}:{}: {}", sc.path, e.line, show_bytes(e.text.as_bytes(), SHOWN)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// After the last line: the judge closes the plugin's stdin; the plugin sends nothing more and
/// exits with status 0 within the grace period (SPEC.md §1.6, §4.6).
async fn end(sc: &Scenario, s: &mut Session, grace: Duration) -> Result<(), Failure> {
    s.close_stdin();
    let until = Instant::now() + grace;
    // End of output (or the grace period) ends the wait; any message before it fails.
    if let Ok((_, body)) = next(s, until).await {
        return Err(Failure::new(format!(
            "{}: after the scenario's last line the plugin sent a line it does not expect",
            sc.path
        ))
        .expected("nothing more, then an exit with status 0")
        .got(show_bytes(&body, SHOWN))
        .fix("send only what the scenario expects (or add the line to the scenario)"));
    }
    let left = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    match s.wait_exit(left).await {
        Some(status) if status.success() => Ok(()),
        Some(status) => {
            Err(Failure::new(format!("{}: at the end of input the plugin exited with {status}", sc.path))
                .expected("exit status 0 (SPEC.md §1.6)")
                .got(status.to_string())
                .fix("exit with status 0 when stdin closes"))
        }
        None => Err(Failure::new(format!(
            "{}: the plugin did not exit within {} after its stdin closed",
            sc.path,
            secs(grace)
        ))
        .expected("an exit with status 0 at the end of input (SPEC.md §1.6)")
        .got("still running")
        .fix("exit when stdin reaches its end")),
    }
}
