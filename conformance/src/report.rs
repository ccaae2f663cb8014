//! Results: the baseline of expected failures, and the table, JSON and JUnit outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::checks::{Failure, Tier};

/// A check's final status, after the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Passed.
    Pass,
    /// Failed (and not listed in the baseline).
    Fail,
    /// Not applicable.
    Skip,
    /// Not run: an earlier failure (the handshake) made it pointless.
    NotRun,
    /// Failed, listed in the baseline: does not fail the run.
    XFail,
    /// Passed although listed in the baseline: fails the run until the entry is removed.
    Stale,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::NotRun => "NOTRUN",
            Status::XFail => "XFAIL",
            Status::Stale => "STALE",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::NotRun => "not-run",
            Status::XFail => "expected-failure",
            Status::Stale => "stale",
        }
    }

    /// Whether this status fails the run.
    pub(crate) fn fails_run(self) -> bool {
        matches!(self, Status::Fail | Status::Stale)
    }
}

/// One check's result.
#[derive(Debug, Clone)]
pub(crate) struct CheckResult {
    /// The check id.
    pub(crate) id: String,
    /// The spec sections.
    pub(crate) section: String,
    /// What it checks.
    pub(crate) title: String,
    /// The tier of the check.
    pub(crate) tier: Tier,
    /// The status.
    pub(crate) status: Status,
    /// How long it took.
    pub(crate) duration: Duration,
    /// One line: why it failed or was skipped.
    pub(crate) reason: String,
    /// Failure details.
    pub(crate) failure: Option<Failure>,
}

/// The results for one plugin.
#[derive(Debug, Clone)]
pub(crate) struct PluginReport {
    /// The plugin's label (its command line, or e.g. `python/kv` in the default run).
    pub(crate) label: String,
    /// The command line run.
    pub(crate) command: String,
    /// Notes (skipped setups, warnings).
    pub(crate) notes: Vec<String>,
    /// The checks in order.
    pub(crate) results: Vec<CheckResult>,
    /// With `--fuzz` or `--replay`: what was sent, how long it took.
    pub(crate) fuzz: Option<crate::fuzz::Stats>,
}

/// Counts of a set of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Passed.
    pub(crate) passed: usize,
    /// Failed, stale entries included.
    pub(crate) failed: usize,
    /// Skipped.
    pub(crate) skipped: usize,
    /// Not run.
    pub(crate) not_run: usize,
    /// Expected failures.
    pub(crate) xfail: usize,
    /// Stale baseline entries (also counted in `failed`).
    pub(crate) stale: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Skip => self.skipped += 1,
            Status::NotRun => self.not_run += 1,
            Status::XFail => self.xfail += 1,
            Status::Stale => {
                self.failed += 1;
                self.stale += 1;
            }
        }
    }

    /// Of one plugin.
    pub(crate) fn of(report: &PluginReport) -> Counts {
        let mut c = Counts::default();
        for r in &report.results {
            c.add(r.status);
        }
        c
    }

    /// Of every plugin.
    pub(crate) fn total(reports: &[PluginReport]) -> Counts {
        let mut c = Counts::default();
        for r in reports.iter().flat_map(|p| &p.results) {
            c.add(r.status);
        }
        c
    }

    /// `N passed, N failed, N skipped, N not run`.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped, {} not run",
            self.passed, self.failed, self.skipped, self.not_run
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline

/// Expected failures, read from a baseline file.
///
/// The format is line-based: `#` starts a comment, blank lines are ignored, every other line is
/// one check id. Ids before any section are global (expected to fail for every plugin); a line
/// `[label]` starts a section whose ids apply to the plugin with that label only (the `--plugin`
/// command line exactly as given, or `rust/kv`, `python/counter`... in the default run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Baseline {
    /// Ids expected to fail for every plugin.
    pub(crate) global: BTreeSet<String>,
    /// Ids expected to fail per plugin label.
    pub(crate) per_plugin: BTreeMap<String, BTreeSet<String>>,
}

impl Baseline {
    /// Parses a baseline file's text.
    pub(crate) fn parse(text: &str) -> Result<Baseline, String> {
        let mut b = Baseline::default();
        let mut section: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.split_once('#').map_or(line, |(before, _)| before).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(label) = line.strip_prefix('[') {
                let label = label
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {}: a section header must end with ']'", n + 1))?;
                section = Some(label.trim().to_owned());
                b.per_plugin.entry(label.trim().to_owned()).or_default();
                continue;
            }
            if line.contains(char::is_whitespace) {
                return Err(format!("line {}: one check id per line, got {line:?}", n + 1));
            }
            match &section {
                None => b.global.insert(line.to_owned()),
                Some(label) => b.per_plugin.entry(label.clone()).or_default().insert(line.to_owned()),
            };
        }
        Ok(b)
    }

    /// Whether `id` is expected to fail for `label`.
    pub(crate) fn lists(&self, label: &str, id: &str) -> bool {
        self.global.contains(id) || self.per_plugin.get(label).is_some_and(|s| s.contains(id))
    }

    /// Every id the file names, for warnings about unknown ids.
    pub(crate) fn ids(&self) -> BTreeSet<&str> {
        self.global.iter().chain(self.per_plugin.values().flatten()).map(String::as_str).collect()
    }

    /// Turns listed failures into expected failures and listed passes into stale entries.
    pub(crate) fn apply(&self, report: &mut PluginReport) {
        for r in &mut report.results {
            if !self.lists(&report.label, &r.id) {
                continue;
            }
            match r.status {
                Status::Fail => {
                    r.status = Status::XFail;
                    r.reason = format!("expected failure (baseline): {}", r.reason);
                }
                Status::Pass => {
                    r.status = Status::Stale;
                    r.reason = "listed in the baseline but passes now: remove it from the baseline".into();
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// The readable table, a section per plugin, details of failures, and the summary line.
pub(crate) fn table(reports: &[PluginReport]) -> String {
    let mut out = String::new();
    let width = reports.iter().flat_map(|p| &p.results).map(|r| r.id.len()).max().unwrap_or(10).max(5);
    for p in reports {
        let _ = writeln!(out, "== {} ==", p.label);
        if p.command != p.label {
            let _ = writeln!(out, "   command: {}", p.command);
        }
        for note in &p.notes {
            let _ = writeln!(out, "   note: {note}");
        }
        if let Some(f) = &p.fuzz {
            let _ = writeln!(out, "   fuzz: {}", f.line());
        }
        if !p.results.is_empty() {
            let _ = writeln!(
                out,
                "{:<width$}  {:<14} {:<9} {:<6} {:>8}  REASON",
                "CHECK", "SPEC", "TIER", "RESULT", "TIME"
            );
        }
        for r in &p.results {
            let _ = writeln!(
                out,
                "{:<width$}  {:<14} {:<9} {:<6} {:>8}  {}",
                r.id,
                r.section,
                r.tier.name(),
                r.status.label(),
                ms(r.duration),
                one_line(&r.reason, 110)
            );
        }
        let failed: Vec<&CheckResult> = p.results.iter().filter(|r| r.status == Status::Fail).collect();
        for r in failed {
            let _ = writeln!(out, "\n-- FAIL {} ({}): {}", r.id, r.section, r.title);
            if let Some(f) = &r.failure {
                for (name, text) in
                    [("what", &f.summary), ("expected", &f.expected), ("got", &f.got), ("fix", &f.fix)]
                {
                    if !text.is_empty() {
                        let _ = writeln!(
                            out,
                            "   {:<10}{}",
                            format!("{name}:"),
                            text.replace('\n', "\n             ")
                        );
                    }
                }
                if !f.stderr().trim().is_empty() {
                    let _ = writeln!(out, "   stderr (last lines):");
                    for line in f.stderr().lines() {
                        let _ = writeln!(out, "     | {}", one_line(line, 200));
                    }
                }
                if !f.transcript().is_empty() {
                    let _ = writeln!(out, "   frames:");
                    for line in f.transcript().lines() {
                        let _ = writeln!(out, "     {line}");
                    }
                }
            }
        }
        let c = Counts::of(p);
        let _ = writeln!(out, "\n{}: {}", p.label, c.line());
        if c.xfail + c.stale > 0 {
            let _ = writeln!(
                out,
                "{}: baseline: {} expected failures, {} stale entries",
                p.label, c.xfail, c.stale
            );
        }
        out.push('\n');
    }
    let total = Counts::total(reports);
    if total.xfail + total.stale > 0 {
        let _ = writeln!(out, "baseline: {} expected failures, {} stale entries", total.xfail, total.stale);
    }
    let _ = writeln!(out, "{}", total.line());
    out
}

/// Per-check JSON objects, grouped by plugin.
pub(crate) fn json(reports: &[PluginReport]) -> String {
    let plugins: Vec<serde_json::Value> = reports
        .iter()
        .map(|p| {
            let c = Counts::of(p);
            json!({
                "label": p.label,
                "command": p.command,
                "notes": p.notes,
                "summary": counts_json(c),
                "fuzz": p.fuzz.as_ref().map(|f| json!({
                    "seed": f.seed,
                    "frames": f.frames,
                    "bursts": f.bursts,
                    "seconds": f.elapsed.as_secs_f64(),
                    "framesPerSecond": f.rate(),
                    "replayFiles": f.replays.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                })),
                "checks": p.results.iter().map(|r| json!({
                    "id": r.id,
                    "section": r.section,
                    "tier": r.tier.name(),
                    "title": r.title,
                    "status": r.status.json(),
                    "durationMs": r.duration.as_millis() as u64,
                    "reason": r.reason,
                    "expected": r.failure.as_ref().map(|f| f.expected.clone()),
                    "got": r.failure.as_ref().map(|f| f.got.clone()),
                    "fix": r.failure.as_ref().map(|f| f.fix.clone()),
                    "stderr": r.failure.as_ref().map(|f| f.stderr().to_owned()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({ "plugins": plugins, "summary": counts_json(Counts::total(reports)) });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn counts_json(c: Counts) -> serde_json::Value {
    json!({"passed": c.passed, "failed": c.failed, "skipped": c.skipped, "notRun": c.not_run, "expectedFailures": c.xfail, "stale": c.stale})
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a test suite per plugin, a test case per check.
pub(crate) fn junit(reports: &[PluginReport]) -> String {
    let total = Counts::total(reports);
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let all_time: Duration = reports.iter().flat_map(|p| &p.results).map(|r| r.duration).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"tether-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
        reports.iter().map(|p| p.results.len()).sum::<usize>(),
        total.failed,
        total.skipped + total.xfail,
        secs(all_time)
    );
    for p in reports {
        let c = Counts::of(p);
        let time: Duration = p.results.iter().map(|r| r.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
            xml(&p.label),
            p.results.len(),
            c.failed,
            c.skipped + c.xfail,
            secs(time)
        );
        for r in &p.results {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{} ({})\" time=\"{}\"",
                xml(&p.label),
                xml(&r.id),
                xml(&r.section),
                secs(r.duration)
            );
            match r.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Skip | Status::NotRun | Status::XFail => {
                    let _ =
                        writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(&r.reason));
                }
                Status::Fail | Status::Stale => {
                    let body = r.failure.as_ref().map_or(String::new(), |f| {
                        format!(
                            "expected: {}\ngot: {}\nfix: {}\nstderr:\n{}",
                            f.expected,
                            f.got,
                            f.fix,
                            f.stderr()
                        )
                    });
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(&r.reason),
                        xml(&body)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: Status) -> CheckResult {
        CheckResult {
            id: id.into(),
            section: "§1".into(),
            title: "t".into(),
            tier: Tier::Core,
            status,
            duration: Duration::from_millis(3),
            reason: if status == Status::Fail { "broke <&>".into() } else { String::new() },
            failure: (status == Status::Fail).then(|| Failure {
                summary: "broke".into(),
                expected: "x".into(),
                got: "y\u{1}".into(),
                fix: "z".into(),
                ..Failure::default()
            }),
        }
    }

    fn report(label: &str, results: Vec<CheckResult>) -> PluginReport {
        PluginReport { label: label.into(), command: label.into(), notes: vec![], results, fuzz: None }
    }

    #[test]
    fn baseline_parses_global_and_sections() {
        let text = "# expected failures\nrpc.batch\n\n[python3 p.py]  # this plugin\nkv.large-16mib # slow\n[other]\n";
        let b = Baseline::parse(text).unwrap();
        assert!(b.lists("anything", "rpc.batch"));
        assert!(b.lists("python3 p.py", "kv.large-16mib"));
        assert!(!b.lists("other", "kv.large-16mib"));
        assert_eq!(b.ids(), BTreeSet::from(["rpc.batch", "kv.large-16mib"]));
        assert!(Baseline::parse("[unclosed\n").is_err());
        assert!(Baseline::parse("two ids\n").is_err());
    }

    #[test]
    fn baseline_turns_failures_into_expected_and_passes_into_stale() {
        let b = Baseline::parse("a.fail\n[p]\nb.pass\nc.skip\n").unwrap();
        let mut r = report(
            "p",
            vec![
                result("a.fail", Status::Fail),
                result("b.pass", Status::Pass),
                result("c.skip", Status::Skip),
                result("d.fail", Status::Fail),
                result("e.pass", Status::Pass),
            ],
        );
        b.apply(&mut r);
        let statuses: Vec<Status> = r.results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![Status::XFail, Status::Stale, Status::Skip, Status::Fail, Status::Pass]);
        let c = Counts::of(&r);
        assert_eq!(c, Counts { passed: 1, failed: 2, skipped: 1, not_run: 0, xfail: 1, stale: 1 });
        assert_eq!(c.line(), "1 passed, 2 failed, 1 skipped, 0 not run");
        assert!(r.results.iter().any(|r| r.status.fails_run()));
        // A listed failure alone does not fail the run.
        let mut only = report("q", vec![result("a.fail", Status::Fail), result("e.pass", Status::Pass)]);
        b.apply(&mut only);
        assert!(!only.results.iter().any(|r| r.status.fails_run()));
        assert_eq!(Counts::of(&only).line(), "1 passed, 0 failed, 0 skipped, 0 not run");
    }

    #[test]
    fn table_ends_with_the_summary_line() {
        let reports = vec![
            report("one", vec![result("x.a", Status::Pass), result("x.b", Status::Fail)]),
            report("two", vec![result("x.a", Status::Pass), result("x.c", Status::Skip)]),
        ];
        let t = table(&reports);
        assert_eq!(t.lines().last(), Some("2 passed, 1 failed, 1 skipped, 0 not run"));
        assert!(t.contains("== one ==") && t.contains("== two =="));
        assert!(t.contains("-- FAIL x.b"));
        assert!(t.contains("one: 1 passed, 1 failed, 0 skipped, 0 not run"));
    }

    #[test]
    fn json_has_per_check_objects() {
        let reports = vec![report("one", vec![result("x.a", Status::Pass), result("x.b", Status::Fail)])];
        let v: serde_json::Value = serde_json::from_str(&json(&reports)).unwrap();
        assert_eq!(v["plugins"][0]["checks"][1]["id"], "x.b");
        assert_eq!(v["plugins"][0]["checks"][1]["status"], "fail");
        assert_eq!(v["plugins"][0]["checks"][1]["expected"], "x");
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["summary"]["passed"], 1);
    }

    #[test]
    fn junit_is_escaped_xml() {
        let reports = vec![report(
            "a \"b\"",
            vec![result("x.a", Status::Pass), result("x.b", Status::Fail), result("x.c", Status::Skip)],
        )];
        let x = junit(&reports);
        assert!(x.starts_with("<?xml"));
        assert!(x.contains("<testsuite name=\"a &quot;b&quot;\" tests=\"3\" failures=\"1\" skipped=\"1\""));
        assert!(x.contains("<failure message=\"broke &lt;&amp;&gt;\">"));
        assert!(x.contains("\\x01"));
        assert!(x.contains("<skipped"));
        assert_eq!(x.matches("<testcase").count(), 3);
        assert_eq!(x.matches("</testsuite>").count(), 1);
    }
}
