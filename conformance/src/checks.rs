//! The checks: each has a stable id, cites SPEC.md, and runs in a fresh plugin process (a
//! scenario), except the checks computed from the handshake probe and the checks that judge what
//! every scenario observed (stdout, messages, logs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tether_spec::format::show_bytes;
use tether_spec::{codes, ErrorObject, Id, LogLevel, Message, Outcome, Response};

use crate::driver::{init_params, CookieMode, Observations, PluginSpec, RecvError, Session};
use crate::procs;

/// Runs a scenario body in a fresh, initialized session.
macro_rules! scenario {
    ($ctx:ident, $level:expr, |$s:ident| $body:block) => {{
        let mut $s = match $ctx.open_init($level).await {
            Ok(s) => s,
            Err(e) => return $ctx.fail_open(e).await,
        };
        let r: Result<(), Failure> = async { $body }.await;
        $ctx.close($s, r).await
    }};
}

/// A scenario function as a check's [`Kind`].
macro_rules! s {
    ($f:ident) => {
        Kind::Scenario(|ctx| Box::pin($f(ctx)))
    };
}

// One module per section of the report; a new section (a reference interface, say) is a new
// module here and one line in `all`.
mod attachments;
mod blob;
mod counter;
mod ctx;
mod diagnose;
mod framing;
mod handles;
mod handshake;
mod helpers;
mod kv;
mod launch;
mod logs;
mod output;
mod progress;
mod rpc;
mod stop;
mod streams;
mod transport;

pub(crate) use diagnose::classify;
pub(crate) use handshake::probe;
use helpers::*;

/// What a check needs from the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Nothing: any plugin.
    Any,
    /// At least one reference interface.
    SomeInterface,
    /// The `kv` interface.
    Kv,
    /// `kv` version 2.
    KvV2,
    /// The `counter` interface.
    Counter,
    /// The `kv` interface and the `attachments` capability.
    KvAttachments,
    /// The `kv` interface and the `progress` capability (§14).
    KvProgress,
    /// The `blob` interface (and so the `streams` capability, §9.5).
    Blob,
    /// The `kv` or the `blob` interface (something that carries bytes).
    KvOrBlob,
    /// A run with `--transport fds` (SPEC.md §13).
    FdsTransport,
}

/// Which hosts a check's behaviour matters to (README.md, "Tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// What a conforming host relies on: the handshake, calls, errors a host can cause, handles,
    /// cancellation, logs, shutdown, a clean stdout.
    Core,
    /// What only a broken or hostile host sends: garbage, oversized frames, bad UTF-8, batches,
    /// parse errors, malformed envelopes.
    Hardening,
}

impl Tier {
    /// Its name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tier::Core => "core",
            Tier::Hardening => "hardening",
        }
    }
}

/// How a check is run.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// The handshake probe itself (run first, alone).
    Probe,
    /// Judged from the probe's initialize result, without a new process.
    FromProbe(fn(&Probe) -> Verdict),
    /// A scenario in a fresh plugin process.
    Scenario(fn(Arc<Ctx>) -> BoxFuture<'static, ScenarioOut>),
    /// Judged from what every scenario observed.
    Aggregate(fn(&[Observations]) -> Verdict),
}

/// One check.
#[derive(Clone, Copy)]
pub(crate) struct Check {
    /// The stable id.
    pub(crate) id: &'static str,
    /// The SPEC.md sections it enforces.
    pub(crate) section: &'static str,
    /// What it checks, in one line.
    pub(crate) title: &'static str,
    /// What it needs from the plugin.
    pub(crate) needs: Needs,
    /// Its tier.
    pub(crate) tier: Tier,
    /// How it runs.
    pub(crate) kind: Kind,
}

/// Why a check failed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failure {
    /// One line for the table.
    pub(crate) summary: String,
    /// What the spec asks for.
    pub(crate) expected: String,
    /// What came back.
    pub(crate) got: String,
    /// What to change in the plugin.
    pub(crate) fix: String,
    /// The plugin's stderr and the frames exchanged, when known.
    pub(crate) context: Option<Box<Context>>,
}

/// What the plugin wrote on stderr, and the frames exchanged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    /// The last lines of the plugin's stderr.
    pub(crate) stderr: String,
    /// The frames exchanged, one a line (with `--verbose`).
    pub(crate) transcript: String,
}

impl Failure {
    /// The last lines of the plugin's stderr.
    pub(crate) fn stderr(&self) -> &str {
        self.context.as_ref().map_or("", |c| c.stderr.as_str())
    }

    /// The frames exchanged (with `--verbose`).
    pub(crate) fn transcript(&self) -> &str {
        self.context.as_ref().map_or("", |c| c.transcript.as_str())
    }

    pub(crate) fn new(summary: impl Into<String>) -> Self {
        Failure { summary: summary.into(), ..Failure::default() }
    }
    pub(crate) fn expected(mut self, s: impl Into<String>) -> Self {
        self.expected = s.into();
        self
    }
    pub(crate) fn got(mut self, s: impl Into<String>) -> Self {
        self.got = s.into();
        self
    }
    pub(crate) fn fix(mut self, s: impl Into<String>) -> Self {
        self.fix = s.into();
        self
    }
}

fn start_failure(e: anyhow::Error) -> Failure {
    Failure::new(e.to_string())
        .expected("the plugin's process to start")
        .fix("check the --plugin command line: the program must exist and be executable")
}

/// A failure with a summary and, when not empty, details shown as what came back.
pub(crate) fn failure(summary: &str, detail: &str) -> Failure {
    Failure::new(summary).got(detail)
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(e.to_string())
            .expected("an answer to every request, within the time allowed (--timeout-ms)")
            .fix("answer every request (§3.1); when the plugin exited, its stderr says why")
    }
}

/// A check's result before the baseline is applied.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// It passed.
    Pass,
    /// It failed.
    Fail(Box<Failure>),
    /// It does not apply.
    Skip(String),
    /// It was not run, for this reason.
    NotRun(String),
}

impl From<Result<(), Failure>> for Verdict {
    fn from(r: Result<(), Failure>) -> Self {
        match r {
            Ok(()) => Verdict::Pass,
            Err(f) => Verdict::Fail(Box::new(f)),
        }
    }
}

/// What a scenario gives back.
pub(crate) struct ScenarioOut {
    /// The check's verdict.
    pub(crate) verdict: Verdict,
    /// What the scenario saw besides.
    pub(crate) obs: Observations,
    /// The probe's findings (the probe scenario only).
    pub(crate) probe: Option<Probe>,
}

/// The options that shape every scenario.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    /// Grace period for exits.
    pub(crate) grace: Duration,
    /// Time allowed for each answer.
    pub(crate) timeout: Duration,
    /// Keep transcripts.
    pub(crate) verbose: bool,
    /// The interfaces to test (`--interface`); empty for every one the plugin declares.
    pub(crate) only: Vec<String>,
}

/// What the handshake probe found.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Each declared interface: chosen version and methods with their schemas.
    pub(crate) interfaces: BTreeMap<String, (u64, BTreeMap<String, Value>)>,
    /// The capabilities its initialize answer announced, when every one was offered (§10.2).
    pub(crate) capabilities: tether_spec::Capabilities,
}

/// Everything a scenario needs.
pub(crate) struct Ctx {
    /// How to start the plugin.
    pub(crate) spec: PluginSpec,
    /// The options.
    pub(crate) opts: Opts,
    /// The probe's findings, once known.
    pub(crate) probe: Option<Probe>,
    /// Set once a scenario's plugin did not exit within the grace period at its end: later
    /// scenarios do not wait the whole grace period again (the `stop.*` checks judge the exit
    /// with their own full wait), which keeps a plugin that ignores end of input within budget.
    pub(crate) slow_exit: std::sync::atomic::AtomicBool,
    /// How many scenarios failed after waiting out a time-out: past [`STALL_LIMIT`], the plugin
    /// has stopped answering, and the checks not yet started are not run.
    pub(crate) stalls: std::sync::atomic::AtomicUsize,
}

/// How many scenarios may fail on a time-out before the rest are not run (issue 9: any plugin,
/// however broken, is judged within 30 s with the default options).
pub(crate) const STALL_LIMIT: usize = 3;

impl Ctx {
    /// A context for one plugin.
    pub(crate) fn new(spec: PluginSpec, opts: Opts, probe: Option<Probe>) -> Ctx {
        Ctx {
            spec,
            opts,
            probe,
            slow_exit: std::sync::atomic::AtomicBool::new(false),
            stalls: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

/// The reference interfaces and the versions the judge offers for each.
pub(crate) const REFERENCE: &[(&str, &[u32])] = &[("kv", &[1, 2]), ("counter", &[1]), ("blob", &[1])];

/// Every check, in the order they are reported.
pub(crate) fn all() -> Vec<Check> {
    [
        launch::checks(),
        handshake::checks(),
        framing::checks(),
        rpc::checks(),
        kv::checks(),
        counter::checks(),
        attachments::checks(),
        blob::checks(),
        handles::checks(),
        logs::checks(),
        // After the log checks: with a plugin that stalls, the scenarios started first run
        // before the stall limit stops the rest, and the log aggregates need theirs.
        progress::checks(),
        stop::checks(),
        transport::checks(),
        output::checks(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_cite_sections() {
        let checks = all();
        let ids: BTreeSet<&str> = checks.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), checks.len());
        assert!(checks.iter().all(|c| c.section.starts_with('§')));
        assert!(checks.iter().all(|c| c.id.split('.').count() == 2));
    }
}
