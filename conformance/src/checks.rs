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

    fn new(summary: impl Into<String>) -> Self {
        Failure { summary: summary.into(), ..Failure::default() }
    }
    fn expected(mut self, s: impl Into<String>) -> Self {
        self.expected = s.into();
        self
    }
    fn got(mut self, s: impl Into<String>) -> Self {
        self.got = s.into();
        self
    }
    fn fix(mut self, s: impl Into<String>) -> Self {
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
}

/// Everything a scenario needs.
pub(crate) struct Ctx {
    /// How to start the plugin.
    pub(crate) spec: PluginSpec,
    /// The options.
    pub(crate) opts: Opts,
    /// The probe's findings, once known.
    pub(crate) probe: Option<Probe>,
}

/// The reference interfaces and the versions the judge offers for each.
pub(crate) const REFERENCE: &[(&str, &[u32])] = &[("kv", &[1, 2]), ("counter", &[1])];

impl Ctx {
    fn t(&self) -> Duration {
        self.opts.timeout
    }

    /// The interfaces to offer: the declared ones (after the probe), else every selected one.
    fn offer(&self) -> Vec<(&'static str, Vec<u32>)> {
        REFERENCE
            .iter()
            .filter(|(name, _)| self.opts.only.is_empty() || self.opts.only.iter().any(|o| o == name))
            .filter(|(name, _)| self.probe.as_ref().is_none_or(|p| p.interfaces.contains_key(*name)))
            .map(|(name, versions)| (*name, versions.to_vec()))
            .collect()
    }

    fn has(&self, iface: &str) -> bool {
        self.offer().iter().any(|(n, _)| *n == iface)
    }

    fn open(&self) -> Result<Session, Failure> {
        Session::start(&self.spec, CookieMode::Set, self.opts.verbose).map_err(start_failure)
    }

    /// Starts a plugin and initializes it with every declared interface at `level`.
    async fn open_init(&self, level: LogLevel) -> Result<Session, (Failure, Option<Session>)> {
        let mut s = self.open().map_err(|f| (f, None))?;
        match self.init(&mut s, &self.offer(), level).await {
            Ok(_) => Ok(s),
            Err(f) => Err((f, Some(s))),
        }
    }

    async fn init(
        &self,
        s: &mut Session,
        offer: &[(&str, Vec<u32>)],
        level: LogLevel,
    ) -> Result<Value, Failure> {
        let resp = s.initialize(&init_params(offer, level), self.t()).await?;
        expect_result(&resp, "tether/initialize").map_err(|f| {
            let mut f = f;
            f.summary = format!("initialize failed: {}", f.summary);
            f
        })
    }

    /// Ends a scenario: kills the plugin and attaches its stderr to a failure.
    async fn close(&self, s: Session, r: Result<(), Failure>) -> ScenarioOut {
        let verdict = self.verdict_with_stderr(&s, r);
        let obs = s.finish(self.opts.grace).await;
        ScenarioOut { verdict, obs, probe: None }
    }

    fn verdict_with_stderr(&self, s: &Session, r: Result<(), Failure>) -> Verdict {
        match r {
            Ok(()) => Verdict::Pass,
            Err(mut f) => {
                f.context = Some(Box::new(Context {
                    stderr: s.stderr_tail(12),
                    transcript: s.transcript().join(
                        "
",
                    ),
                }));
                Verdict::Fail(Box::new(f))
            }
        }
    }

    async fn fail_open(&self, e: (Failure, Option<Session>)) -> ScenarioOut {
        match e {
            (f, Some(s)) => self.close(s, Err(f)).await,
            (f, None) => {
                ScenarioOut { verdict: Verdict::Fail(Box::new(f)), obs: Observations::default(), probe: None }
            }
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Helpers

fn show_response(r: &Response) -> String {
    show_bytes(&Message::Response(r.clone()).to_body(), 300)
}

fn expect_result(r: &Response, what: &str) -> Result<Value, Failure> {
    match &r.outcome {
        Outcome::Result(raw) => serde_json::from_str(raw.get())
            .map_err(|e| Failure::new(format!("{what}: unreadable result: {e}")).got(show_response(r))),
        Outcome::Error(e) => Err(Failure::new(format!("{what} answered error {}: {}", e.code, e.message))
            .expected(format!("a result for {what}"))
            .got(show_response(r))),
    }
}

fn expect_error(r: &Response, code: i64, what: &str, fix: &str) -> Result<ErrorObject, Failure> {
    let name = codes::name(code).unwrap_or("error");
    match &r.outcome {
        Outcome::Error(e) if e.code == code => Ok(e.clone()),
        Outcome::Error(e) => Err(Failure::new(format!("{what}: error {} instead of {code}", e.code))
            .expected(format!("error {code} ({name})"))
            .got(show_response(r))
            .fix(fix)),
        Outcome::Result(_) => Err(Failure::new(format!("{what}: a result instead of error {code}"))
            .expected(format!("error {code} ({name})"))
            .got(show_response(r))
            .fix(fix)),
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str, fix: &str) -> Result<(), Failure> {
    if got == want {
        Ok(())
    } else {
        Err(Failure::new(format!("{what}: got {got:?}, expected {want:?}"))
            .expected(format!("{want:?}"))
            .got(format!("{got:?}"))
            .fix(fix))
    }
}

fn recv_failure(s: &Session, what: &str, e: RecvError) -> Failure {
    Failure::from(s.explain(what, e))
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn adder(handle: &str) -> Value {
    json!({"$handle": handle, "interface": "adder"})
}

async fn ping(ctx: &Ctx, s: &mut Session, after: &str) -> Result<(), Failure> {
    let resp = s.call("tether/ping", json!({}), ctx.t()).await.map_err(|e| {
        Failure::new(format!("the session did not survive {after}: {e}"))
            .expected(format!("a tether/ping after {after} is answered"))
            .fix("keep the session going: answer the error and read the next frame")
    })?;
    expect_result(&resp, "tether/ping").map(|_| ())
}

async fn kv_put(ctx: &Ctx, s: &mut Session, key: &str, value: &[u8], t: Duration) -> Result<(), Failure> {
    let resp = s.call("kv.put", json!({"key": key, "value": b64(value)}), t).await?;
    let _ = ctx;
    expect_result(&resp, "kv.put").map(|_| ())
}

async fn kv_get(s: &mut Session, key: &str, t: Duration) -> Result<Response, Failure> {
    Ok(s.call("kv.get", json!({"key": key}), t).await?)
}

async fn kv_get_value(s: &mut Session, key: &str, t: Duration) -> Result<Vec<u8>, Failure> {
    let resp = kv_get(s, key, t).await?;
    let v = expect_result(&resp, "kv.get")?;
    let text = v.get("value").and_then(Value::as_str).ok_or_else(|| {
        Failure::new("kv.get result has no string `value`")
            .expected("{\"value\": <base64>}")
            .got(show_response(&resp))
    })?;
    STANDARD.decode(text).map_err(|e| {
        Failure::new(format!("kv.get value is not padded standard base64: {e}"))
            .got(show_bytes(text.as_bytes(), 200))
            .fix("encode bytes as standard base64 with padding (§5.3)")
    })
}

fn same_bytes(got: &[u8], want: &[u8], what: &str) -> Result<(), Failure> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    Err(Failure::new(format!("{what}: the value read back differs (at byte {at})"))
        .expected(format!("{} bytes: {}", want.len(), show_bytes(want, 64)))
        .got(format!("{} bytes: {}", got.len(), show_bytes(got, 64)))
        .fix("store and return the exact bytes of the value"))
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The check table

/// Every check, in the order they are reported.
pub(crate) fn all() -> Vec<Check> {
    use Kind::{Aggregate, FromProbe, Probe as P, Scenario as S};
    use Needs::{Any, Counter, Kv, KvV2, SomeInterface};
    macro_rules! s {
        ($f:ident) => {
            S(|ctx| Box::pin($f(ctx)))
        };
    }
    vec![
        Check {
            id: "launch.no-cookie",
            section: "§1.3",
            title: "without the cookie: exit 1 within 1 s, a message on stderr, nothing on stdout",
            needs: Any,
            kind: s!(launch_no_cookie),
        },
        Check {
            id: "launch.wrong-cookie",
            section: "§1.3",
            title: "with a wrong cookie value: the same as without",
            needs: Any,
            kind: s!(launch_wrong_cookie),
        },
        Check {
            id: "handshake.initialize",
            section: "§4.1 §4.4",
            title: "initialize is answered first, with a result valid against the schema",
            needs: Any,
            kind: P,
        },
        Check {
            id: "handshake.method-schemas",
            section: "§4.4 §9",
            title:
                "every declared method has object JSON Schemas that compile and accept the reference shapes",
            needs: SomeInterface,
            kind: FromProbe(method_schemas),
        },
        Check {
            id: "handshake.only-offered",
            section: "§4.3",
            title: "the answer lists only offered interfaces it implements",
            needs: SomeInterface,
            kind: s!(only_offered),
        },
        Check {
            id: "handshake.kv-v1",
            section: "§4.3 §9.2",
            title: "kv offered as [1]: version 1 chosen, kv.delete answered -32601",
            needs: Kv,
            kind: s!(kv_v1),
        },
        Check {
            id: "handshake.kv-v2",
            section: "§4.3 §9.2",
            title: "kv offered as [1, 2, 9]: version 2 chosen",
            needs: Kv,
            kind: s!(kv_v2),
        },
        Check {
            id: "handshake.no-common-version",
            section: "§4.3",
            title:
                "no common interface version: -32001 with {interface, host, plugin}; a later initialize works",
            needs: SomeInterface,
            kind: s!(no_common_version),
        },
        Check {
            id: "handshake.no-common-protocol",
            section: "§4.3",
            title: "no common core version: -32001 with interface \"tether\"",
            needs: Any,
            kind: s!(no_common_protocol),
        },
        Check {
            id: "handshake.not-initialized",
            section: "§4.1",
            title: "a request before initialize: -32002",
            needs: Any,
            kind: s!(not_initialized),
        },
        Check {
            id: "handshake.second-initialize",
            section: "§4.1",
            title: "a second initialize: -32600, the session goes on",
            needs: Any,
            kind: s!(second_initialize),
        },
        Check {
            id: "framing.header-forms",
            section: "§2.3",
            title: "frames with any LSP header block are read (lower case, Content-Type, unknown headers)",
            needs: Any,
            kind: s!(framing_header_forms),
        },
        Check {
            id: "framing.split-frame",
            section: "§2.1",
            title: "a frame that arrives in pieces is read",
            needs: Any,
            kind: s!(framing_split),
        },
        Check {
            id: "framing.resync",
            section: "§2.6",
            title: "bytes that are not a frame are skipped; the next frame is read",
            needs: Any,
            kind: s!(framing_resync),
        },
        Check {
            id: "framing.oversized",
            section: "§2.5 §2.6",
            title: "a request above maxFrameSize: -32004 with its id and {size, max}; the session goes on",
            needs: Any,
            kind: s!(framing_oversized),
        },
        Check {
            id: "framing.bad-utf8",
            section: "§2.4 §3.4",
            title: "a body that is not UTF-8: -32700 with id null, the session goes on",
            needs: Any,
            kind: s!(framing_bad_utf8),
        },
        Check {
            id: "rpc.ping",
            section: "§4.5",
            title: "tether/ping answered with {}",
            needs: Any,
            kind: s!(rpc_ping),
        },
        Check {
            id: "rpc.params-absent",
            section: "§3.1",
            title: "a request without params is treated as {}",
            needs: Any,
            kind: s!(params_absent),
        },
        Check {
            id: "rpc.unknown-method",
            section: "§3.6 §5.1",
            title: "unknown methods (application and tether/): -32601",
            needs: Any,
            kind: s!(unknown_method),
        },
        Check {
            id: "rpc.invalid-params",
            section: "§5.2",
            title: "params of the wrong type: -32602",
            needs: SomeInterface,
            kind: s!(invalid_params),
        },
        Check {
            id: "rpc.parse-error",
            section: "§3.4",
            title: "invalid JSON: -32700 with id null, then the session goes on",
            needs: Any,
            kind: s!(parse_error),
        },
        Check {
            id: "rpc.batch",
            section: "§3.3",
            title: "a batch: one -32600 with id null, elements not processed",
            needs: Any,
            kind: s!(batch),
        },
        Check {
            id: "rpc.invalid-request",
            section: "§3.4",
            title: "a wrong jsonrpc version: -32600 with the message's id",
            needs: Any,
            kind: s!(invalid_request),
        },
        Check {
            id: "rpc.null-id",
            section: "§3.2",
            title: "a request with id null: -32600 with id null",
            needs: Any,
            kind: s!(null_id),
        },
        Check {
            id: "rpc.notifications-unanswered",
            section: "§3.5",
            title: "notifications (unknown, $/unknown, application, tether/ping) are never answered",
            needs: Any,
            kind: s!(notifications_unanswered),
        },
        Check {
            id: "rpc.id-types",
            section: "§3.2",
            title: "string and integer ids (beyond 2^53) echoed exactly, same type",
            needs: Any,
            kind: s!(id_types),
        },
        Check {
            id: "rpc.concurrent-64",
            section: "§3.7",
            title: "64 requests in flight, all answered",
            needs: Any,
            kind: s!(concurrent_64),
        },
        Check {
            id: "rpc.unknown-response-id",
            section: "§3.4",
            title: "a response with an unknown id is ignored",
            needs: Any,
            kind: s!(unknown_response),
        },
        Check {
            id: "kv.put-get",
            section: "§9.1",
            title: "put then get returns the value",
            needs: Kv,
            kind: s!(kv_put_get),
        },
        Check {
            id: "kv.overwrite",
            section: "§9.1",
            title: "a second put replaces the value",
            needs: Kv,
            kind: s!(kv_overwrite),
        },
        Check {
            id: "kv.missing-key",
            section: "§9.1",
            title: "get of a missing key: 1001 with data.key",
            needs: Kv,
            kind: s!(kv_missing),
        },
        Check {
            id: "kv.empty-value",
            section: "§9.1",
            title: "an empty value round-trips",
            needs: Kv,
            kind: s!(kv_empty),
        },
        Check {
            id: "kv.binary-value",
            section: "§9.1 §5.3",
            title: "a value holding all 256 byte values round-trips",
            needs: Kv,
            kind: s!(kv_binary),
        },
        Check {
            id: "kv.unicode-key",
            section: "§9.1",
            title: "Unicode keys (Cyrillic, emoji, CJK, NUL) are distinct and exact",
            needs: Kv,
            kind: s!(kv_unicode),
        },
        Check {
            id: "kv.bad-base64",
            section: "§5.3",
            title: "a value that is not padded base64: -32602",
            needs: Kv,
            kind: s!(kv_bad_base64),
        },
        Check {
            id: "kv.large-1mib",
            section: "§9.1",
            title: "a 1 MiB value round-trips",
            needs: Kv,
            kind: s!(kv_large_1),
        },
        Check {
            id: "kv.large-16mib",
            section: "§9.1 §2.5",
            title: "a 16 MiB value round-trips",
            needs: Kv,
            kind: s!(kv_large_16),
        },
        Check {
            id: "kv.delete",
            section: "§9.2",
            title: "delete on v2: existed true, then get 1001, then existed false",
            needs: KvV2,
            kind: s!(kv_delete),
        },
        Check {
            id: "counter.callback",
            section: "§9.3 §6.2",
            title: "put invokes the host's adder and stores what the host answered",
            needs: Counter,
            kind: s!(counter_callback),
        },
        Check {
            id: "counter.concurrent-puts",
            section: "§9.3 §3.7",
            title: "a second put is served while the first one's sum is pending",
            needs: Counter,
            kind: s!(counter_concurrent),
        },
        Check {
            id: "counter.reentrant-get",
            section: "§6.4",
            title: "counter.get is answered while a sum is pending",
            needs: Counter,
            kind: s!(counter_reentrant),
        },
        Check {
            id: "counter.cancel",
            section: "§7.1 §7.2 §9.3",
            title: "cancelling a put cancels its pending invoke and the put is still answered",
            needs: Counter,
            kind: s!(counter_cancel),
        },
        Check {
            id: "counter.unknown-handle",
            section: "§6.2 §6.3",
            title: "an invoke answered -32003 (expired handle): the put is answered, the plugin goes on",
            needs: Counter,
            kind: s!(counter_unknown_handle),
        },
        Check {
            id: "log.debug-on-put",
            section: "§9.1 §8.1",
            title: "at logLevel debug, kv.put sends a debug $/log with fields.key",
            needs: Kv,
            kind: s!(log_debug_on_put),
        },
        Check {
            id: "log.set-level",
            section: "§8.2",
            title: "$/setLogLevel changes which $/log are sent",
            needs: Kv,
            kind: s!(log_set_level),
        },
        Check {
            id: "log.level-respected",
            section: "§8.1",
            title: "no $/log below the session's level, in any scenario",
            needs: Any,
            kind: Aggregate(agg_level),
        },
        Check {
            id: "log.well-formed",
            section: "§8.1",
            title: "every $/log seen in any scenario has valid params",
            needs: Any,
            kind: Aggregate(agg_logs),
        },
        Check {
            id: "stop.shutdown",
            section: "§4.6 §1.6",
            title: "shutdown answered {}, then exit 0 after stdin closes, within the grace period",
            needs: Any,
            kind: s!(stop_shutdown),
        },
        Check {
            id: "stop.after-shutdown",
            section: "§4.6",
            title: "a request after shutdown: -32005",
            needs: Any,
            kind: s!(stop_after_shutdown),
        },
        Check {
            id: "stop.eof",
            section: "§1.6",
            title: "stdin closed without shutdown: exit 0 within the grace period",
            needs: Any,
            kind: s!(stop_eof),
        },
        Check {
            id: "stop.eof-uninitialized",
            section: "§1.6 §4.3",
            title: "stdin closed before initialize: exit 0 within the grace period",
            needs: Any,
            kind: s!(stop_eof_uninit),
        },
        Check {
            id: "stop.eof-pending-call",
            section: "§1.6 §7.2",
            title: "stdin closed while a sum is pending: exit 0 within the grace period",
            needs: Counter,
            kind: s!(stop_eof_pending),
        },
        Check {
            id: "stop.no-leftovers",
            section: "§1.6 §11.4",
            title: "after the exit no process of the plugin's group is left",
            needs: Any,
            kind: s!(stop_no_leftovers),
        },
        Check {
            id: "output.stdout-clean",
            section: "§8.4 §2.2 §2.7",
            title: "nothing but frames in the writer form on stdout, in any scenario",
            needs: Any,
            kind: Aggregate(agg_stdout),
        },
        Check {
            id: "output.messages-valid",
            section: "§3.1",
            title: "every body is a valid JSON-RPC message with object params/results",
            needs: Any,
            kind: Aggregate(agg_messages),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Launch

async fn launch(ctx: Arc<Ctx>, mode: CookieMode) -> ScenarioOut {
    let mut s = match Session::start(&ctx.spec, mode, ctx.opts.verbose) {
        Ok(s) => s,
        Err(e) => return ctx.fail_open((start_failure(e), None)).await,
    };
    let what = if mode == CookieMode::Absent { "without the cookie" } else { "with a wrong cookie value" };
    let r: Result<(), Failure> = async {
        // "At once" (§1.3) is one second from the start, or, when the interpreter is slow to
        // start (a busy machine), one second from the plugin's sentence on stderr: by then it has
        // checked the cookie, and a plugin that goes on to read stdin still fails.
        const AT_ONCE: Duration = Duration::from_secs(1);
        let mut status = s.wait_exit(AT_ONCE).await;
        let mut waited = "1 s after start".to_owned();
        if status.is_none() {
            match s.wait_first_stderr(ctx.opts.timeout).await {
                Some(said) => {
                    status = s.wait_exit(AT_ONCE.saturating_sub(said.elapsed())).await;
                    waited = "1 s after its message on stderr".to_owned();
                }
                None => {
                    waited =
                        format!("{} ms after start, with nothing on stderr", ctx.opts.timeout.as_millis())
                }
            }
        }
        let Some(status) = status else {
            return Err(Failure::new(format!("still running {waited} {what}, stdin open and silent"))
                .expected("exit status 1 at once, without reading stdin")
                .got("the process kept running")
                .fix(
                    "check the cookie variable before reading stdin; print a sentence on stderr and exit(1)",
                ));
        };
        s.wait_stderr_eof(Duration::from_millis(500)).await;
        // Let the stdout reader see everything.
        let _ = s.recv(Duration::from_millis(200)).await;
        if status.code() != Some(1) {
            return Err(Failure::new(format!("exit status {status} {what}"))
                .expected("exit status 1")
                .got(status.to_string())
                .fix("exit with status 1 when the cookie is missing or wrong (§1.5)"));
        }
        if s.stdout_bytes() > 0 {
            return Err(Failure::new(format!("wrote {} bytes on stdout {what}", s.stdout_bytes()))
                .expected("nothing on stdout")
                .fix("write the message to stderr, not stdout"));
        }
        let err = s.stderr_all();
        if !err.chars().any(char::is_alphabetic) {
            return Err(Failure::new("no message on stderr")
                .expected("a sentence on stderr saying this is a Tether plugin not meant to be run directly")
                .got(show_bytes(err.as_bytes(), 200))
                .fix("print a human sentence to stderr before exiting"));
        }
        Ok(())
    }
    .await;
    ctx.close(s, r).await
}

async fn launch_no_cookie(ctx: Arc<Ctx>) -> ScenarioOut {
    launch(ctx, CookieMode::Absent).await
}

async fn launch_wrong_cookie(ctx: Arc<Ctx>) -> ScenarioOut {
    launch(ctx, CookieMode::Wrong).await
}

// ---------------------------------------------------------------------------------------------
// Handshake

/// The probe: initialize offering every selected reference interface; judged as
/// `handshake.initialize`, and its result decides which other checks apply.
pub(crate) async fn probe(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let offer = ctx.offer();
    let mut found = None;
    let r: Result<(), Failure> = async {
        let params = init_params(&offer, LogLevel::Info);
        let id = s.request("tether/initialize", serde_json::to_value(&params).map_err(anyhow::Error::from)?).await?;
        // §4.1: nothing but $/log before the answer (recv keeps $/log aside).
        let first = s
            .recv(ctx.t() + crate::driver::START_ALLOWANCE)
            .await
            .map_err(|e| recv_failure(&s, "tether/initialize", e))?;
        let resp = match first {
            Message::Response(r) if r.id.as_ref() == Some(&id) => r,
            other => {
                return Err(Failure::new("the plugin sent something else before the initialize answer")
                    .expected("the answer to tether/initialize first (only $/log may come before it)")
                    .got(show_bytes(&other.to_body(), 300))
                    .fix("send nothing but the initialize answer and $/log until initialize is answered"))
            }
        };
        let result = expect_result(&resp, "tether/initialize")?;
        let interfaces = declared_interfaces(&result);
        found = Some(Probe { interfaces });
        let errors = crate::schema::initialize_result_errors(&result);
        if !errors.is_empty() {
            return Err(Failure::new(format!("the initialize result does not match the spec schema: {}", errors[0]))
                .expected("{protocolVersion, plugin: {name, version}, capabilities, interfaces: {name: {version, methods}}} (spec/schema/tether.schema.json, result:tether/initialize)")
                .got(show_bytes(result.to_string().as_bytes(), 400))
                .fix(errors.join("; ")));
        }
        expect_eq(result.get("protocolVersion").and_then(Value::as_u64), Some(1), "protocolVersion", "choose core version 1, the one offered")?;
        let offered: BTreeSet<&str> = offer.iter().map(|(n, _)| *n).collect();
        if let Some(map) = result.get("interfaces").and_then(Value::as_object) {
            for (name, iface) in map {
                if !offered.contains(name.as_str()) {
                    return Err(Failure::new(format!("the answer lists interface {name:?}, which was not offered"))
                        .expected(format!("only offered interfaces: {offered:?}"))
                        .fix("leave out every interface that was not offered (§4.3.3)"));
                }
                let version = iface.get("version").and_then(Value::as_u64).unwrap_or(0);
                // Which versions the plugin speaks is its own business (handshake.kv-v1 and
                // handshake.kv-v2 check the choice); the chosen one must have been offered.
                let offered_versions: Vec<u64> = offer
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.iter().copied().map(u64::from).collect())
                    .unwrap_or_default();
                if !offered_versions.contains(&version) {
                    return Err(Failure::new(format!("interface {name}: version {version} was not offered"))
                        .expected(format!("one of the offered versions {offered_versions:?}"))
                        .got(show_bytes(iface.to_string().as_bytes(), 300))
                        .fix("choose the highest version both sides speak (§4.3)"));
                }
            }
        }
        Ok(())
    }
    .await;
    let mut out = ctx.close(s, r).await;
    out.probe = found;
    out
}

fn declared_interfaces(result: &Value) -> BTreeMap<String, (u64, BTreeMap<String, Value>)> {
    let mut out = BTreeMap::new();
    if let Some(map) = result.get("interfaces").and_then(Value::as_object) {
        for (name, iface) in map {
            let version = iface.get("version").and_then(Value::as_u64).unwrap_or(0);
            let methods = iface
                .get("methods")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            out.insert(name.clone(), (version, methods));
        }
    }
    out
}

/// Sample params and results of the reference methods that a declared schema must accept.
fn samples(iface: &str, method: &str) -> (Vec<Value>, Vec<Value>) {
    match (iface, method) {
        ("kv", "put") => {
            (vec![json!({"key": "k", "value": "aGk="}), json!({"key": "k", "value": ""})], vec![json!({})])
        }
        ("kv", "get") => (vec![json!({"key": "k"})], vec![json!({"value": "aGk="})]),
        ("kv", "delete") => (vec![json!({"key": "k"})], vec![json!({"existed": true})]),
        ("counter", "put") => (vec![json!({"key": "k", "value": 5, "adder": adder("h1")})], vec![json!({})]),
        ("counter", "get") => (vec![json!({"key": "k"})], vec![json!({"value": 5})]),
        _ => (vec![], vec![]),
    }
}

fn expected_methods(iface: &str, version: u64) -> Option<BTreeSet<&'static str>> {
    match (iface, version) {
        ("kv", 1) | ("counter", 1) => Some(BTreeSet::from(["put", "get"])),
        ("kv", 2) => Some(BTreeSet::from(["put", "get", "delete"])),
        _ => None,
    }
}

fn method_schemas(probe: &Probe) -> Verdict {
    let r = (|| {
        for (iface, (version, methods)) in &probe.interfaces {
            if let Some(want) = expected_methods(iface, *version) {
                let got: BTreeSet<&str> = methods.keys().map(String::as_str).collect();
                expect_eq(
                    got,
                    want,
                    &format!("methods of {iface} v{version}"),
                    "declare exactly the methods of the negotiated version (§9)",
                )?;
            }
            for (name, m) in methods {
                for part in ["params", "result"] {
                    let Some(schema) = m.get(part) else {
                        return Err(Failure::new(format!("{iface}.{name} has no {part} schema"))
                            .expected("{\"params\": <JSON Schema>, \"result\": <JSON Schema>}")
                            .got(show_bytes(m.to_string().as_bytes(), 300))
                            .fix("declare both schemas for every method (§4.4)"));
                    };
                    if schema.get("type").and_then(Value::as_str) != Some("object") {
                        return Err(Failure::new(format!(
                            "the {part} schema of {iface}.{name} is not of type object"
                        ))
                        .expected("a JSON Schema with \"type\": \"object\"")
                        .got(show_bytes(schema.to_string().as_bytes(), 300))
                        .fix("params and results are objects: give a schema of type object (§4.4)"));
                    }
                    let validator = jsonschema::validator_for(schema).map_err(|e| {
                        Failure::new(format!("the {part} schema of {iface}.{name} does not compile: {e}"))
                            .got(show_bytes(schema.to_string().as_bytes(), 300))
                            .fix("give a valid JSON Schema (draft 2020-12)")
                    })?;
                    let (params, results) = samples(iface, name);
                    let cases = if part == "params" { params } else { results };
                    for case in cases {
                        if let Some(e) = validator.iter_errors(&case).next() {
                            return Err(Failure::new(format!(
                                "the {part} schema of {iface}.{name} rejects a valid {part} object"
                            ))
                            .expected(format!("{case} to be valid"))
                            .got(format!(
                                "{e} at {}; schema {}",
                                e.instance_path,
                                show_bytes(schema.to_string().as_bytes(), 300)
                            ))
                            .fix("describe the method's real shape (§9)"));
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    r.into()
}

async fn only_offered(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let offer = ctx.offer();
        let first = offer.first().cloned().ok_or_else(|| Failure::new("no interface to offer"))?;
        let result = ctx.init(&mut s, &[first.clone(), ("nosuchinterface", vec![1])], LogLevel::Info).await?;
        let got: BTreeSet<String> = result
            .get("interfaces")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        expect_eq(
            got,
            BTreeSet::from([first.0.to_owned()]),
            "interfaces answered",
            "answer only the offered interfaces you implement (§4.3.3)",
        )
    }
    .await;
    ctx.close(s, r).await
}

async fn kv_version(ctx: Arc<Ctx>, offered: Vec<u32>, want: u64) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let result = ctx.init(&mut s, &[("kv", offered.clone())], LogLevel::Info).await?;
        let version = result.pointer("/interfaces/kv/version").and_then(Value::as_u64);
        expect_eq(
            version,
            Some(want),
            &format!("kv version chosen from {offered:?}"),
            "choose the highest version both sides speak (§4.3)",
        )?;
        let methods: BTreeSet<String> = result
            .pointer("/interfaces/kv/methods")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let has_delete = methods.contains("delete");
        expect_eq(
            has_delete,
            want >= 2,
            "kv.delete declared",
            "declare the methods of the chosen version only",
        )?;
        if want == 1 {
            let resp = s.call("kv.delete", json!({"key": "k"}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::METHOD_NOT_FOUND,
                "kv.delete on a kv v1 session",
                "answer -32601 for a method the negotiated version does not have (§4.3)",
            )?;
        }
        Ok(())
    }
    .await;
    ctx.close(s, r).await
}

async fn kv_v1(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_version(ctx, vec![1], 1).await
}

async fn kv_v2(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_version(ctx, vec![1, 2, 9], 2).await
}

fn check_mismatch(e: &ErrorObject, iface: &str) -> Result<(), Failure> {
    let data = e.data.clone().unwrap_or(Value::Null);
    let ok = data.get("interface").and_then(Value::as_str) == Some(iface)
        && data.get("host") == Some(&json!([9]))
        && data
            .get("plugin")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64));
    if ok {
        Ok(())
    } else {
        Err(Failure::new("the -32001 error's data does not name both sides' versions")
            .expected(format!("data {{\"interface\": {iface:?}, \"host\": [9], \"plugin\": [<versions>]}}"))
            .got(data.to_string())
            .fix("put the interface and both version lists in data (§4.3)"))
    }
}

async fn no_common_version(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let offer = ctx.offer();
        let (iface, versions) =
            offer.first().cloned().ok_or_else(|| Failure::new("no interface to offer"))?;
        let resp = s.initialize(&init_params(&[(iface, vec![9])], LogLevel::Info), ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::UNSUPPORTED_VERSION,
            &format!("initialize with {iface} [9]"),
            "answer -32001 when an offered interface you implement has no common version (§4.3)",
        )?;
        check_mismatch(&e, iface)?;
        // §4.3: the session stays uninitialized and the host may try again.
        ctx.init(&mut s, &[(iface, versions)], LogLevel::Info).await.map_err(|mut f| {
            f.summary = format!("after the -32001, a second initialize failed: {}", f.summary);
            f.fix =
                "after an initialize error, stay uninitialized and accept another initialize (§4.3)".into();
            f
        })?;
        ping(&ctx, &mut s, "a retried initialize").await
    }
    .await;
    ctx.close(s, r).await
}

async fn no_common_protocol(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let mut params = init_params(&ctx.offer(), LogLevel::Info);
        params.protocol_versions = vec![9];
        let resp = s.initialize(&params, ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::UNSUPPORTED_VERSION,
            "initialize with protocolVersions [9]",
            "answer -32001 when no core version is common (§4.3.1)",
        )?;
        check_mismatch(&e, "tether")
    }
    .await;
    ctx.close(s, r).await
}

async fn not_initialized(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let fix = "answer every request before tether/initialize with -32002 (§4.1.3)";
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        expect_error(&resp, codes::NOT_INITIALIZED, "tether/ping before initialize", fix)?;
        if ctx.has("kv") {
            let resp = s.call("kv.get", json!({"key": "k"}), ctx.t()).await?;
            expect_error(&resp, codes::NOT_INITIALIZED, "kv.get before initialize", fix)?;
        }
        ctx.init(&mut s, &ctx.offer(), LogLevel::Info).await?;
        ping(&ctx, &mut s, "initialize").await
    }
    .await;
    ctx.close(s, r).await
}

async fn second_initialize(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.initialize(&init_params(&ctx.offer(), LogLevel::Info), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_REQUEST,
            "a second tether/initialize",
            "answer a second initialize with -32600 (§4.1.3)",
        )?;
        ping(&ctx, &mut s, "a second initialize").await
    })
}

// ---------------------------------------------------------------------------------------------
// Framing (what a plugin reads)

/// Waits for the answers to `ids` (any order); fails naming the ones that did not come.
async fn answers(
    ctx: &Ctx,
    s: &mut Session,
    ids: &[Id],
    what: &str,
    fix: &str,
) -> Result<Vec<Response>, Failure> {
    let mut out = Vec::new();
    for id in ids {
        let r = s.response(id, ctx.t()).await.map_err(|e| {
            recv_failure(s, &format!("the request with id {id}"), e)
                .expected(format!("an answer to {what}"))
                .fix(fix)
        })?;
        out.push(r);
    }
    Ok(out)
}

fn ping_body(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tether/ping","params":{{}}}}"#)
}

async fn framing_header_forms(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let forms = [
            ("lower", "content-length: {n}\r\n\r\n"),
            (
                "ctype",
                "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length:  {n} \r\n\r\n",
            ),
            ("other", "Content-Length: {n}\r\nX-Unknown-Header: yes\r\n\r\n"),
            ("utf8", "CONTENT-LENGTH:{n}\r\ncontent-type: application/json; charset=utf8\r\n\r\n"),
        ];
        let mut ids = Vec::new();
        for (name, header) in forms {
            let body = ping_body(name);
            let mut wire = header.replace("{n}", &body.len().to_string()).into_bytes();
            wire.extend_from_slice(body.as_bytes());
            s.send_wire(&wire).await?;
            ids.push(Id::Str(name.into()));
        }
        let fix = "read any header block the LSP base protocol allows: names case-insensitive, values trimmed, Content-Type and unknown headers ignored (§2.3)";
        for r in answers(&ctx, &mut s, &ids, "pings framed with other header forms", fix).await? {
            expect_result(&r, "tether/ping")?;
        }
        Ok(())
    })
}

async fn framing_split(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = ping_body("split");
        let mut wire = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body.as_bytes());
        for piece in [&wire[..9], &wire[9..20], &wire[20..30], &wire[30..]] {
            s.send_wire(piece).await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let fix = "keep reading until the header block and the whole body have arrived (§2.1)";
        let r =
            answers(&ctx, &mut s, &[Id::Str("split".into())], "a ping written in four pieces", fix).await?;
        r.first().map_or(Ok(()), |r| expect_result(r, "tether/ping").map(|_| ()))
    })
}

async fn framing_resync(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = ping_body("after-garbage");
        let mut wire = b"this is not a frame\r\nContent-Length: oops\r\n\r\n".to_vec();
        wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        wire.extend_from_slice(body.as_bytes());
        s.send_wire(&wire).await?;
        let fix = "report bytes that are not a frame and resynchronise on the next Content-Length (§2.6.1)";
        let r = answers(
            &ctx,
            &mut s,
            &[Id::Str("after-garbage".into())],
            "a ping after bytes that are not a frame",
            fix,
        )
        .await?;
        r.first().map_or(Ok(()), |r| expect_result(r, "tether/ping").map(|_| ()))?;
        ping(&ctx, &mut s, "bytes that are not a frame").await
    })
}

async fn framing_oversized(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let max = tether_spec::MIN_MAX_FRAME_SIZE;
        let mut params = init_params(&ctx.offer(), LogLevel::Info);
        params.max_frame_size = max as u64;
        let resp = s.initialize(&params, ctx.t()).await?;
        expect_result(&resp, "tether/initialize")?;
        let pad = "x".repeat(max + 1000);
        let body = format!(r#"{{"jsonrpc":"2.0","id":"too-big","method":"tether/ping","params":{{"pad":"{pad}"}}}}"#);
        s.send_raw(body.as_bytes()).await?;
        let fix = "skip a frame above maxFrameSize without keeping it, and answer -32004 for the id its prefix shows (§2.6.2)";
        let resp = answers(&ctx, &mut s, &[Id::Str("too-big".into())], "a request above maxFrameSize", fix).await?;
        let resp = resp.into_iter().next().ok_or_else(|| Failure::new("no answer"))?;
        let e = expect_error(&resp, codes::FRAME_TOO_LARGE, "a request above maxFrameSize", fix)?;
        let data = e.data.unwrap_or(Value::Null);
        let size_ok = data.get("size").and_then(Value::as_u64) == Some(body.len() as u64);
        let max_ok = data.get("max").and_then(Value::as_u64) == Some(max as u64);
        if !(size_ok && max_ok) {
            return Err(Failure::new("the -32004 error's data is not {size, max}")
                .expected(format!("data {{\"size\": {}, \"max\": {max}}}", body.len()))
                .got(data.to_string())
                .fix("put the declared length and the maximum in data (Appendix A)"));
        }
        ping(&ctx, &mut s, "an oversized frame").await
    }
    .await;
    ctx.close(s, r).await
}

async fn framing_bad_utf8(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"tether/ping\"}",
            "a body that is not UTF-8",
        )
        .await?;
        single_error(&seen, codes::PARSE_ERROR, None, "a body that is not UTF-8", "a body that is not UTF-8 is a parse error: answer -32700 with id null and continue (§2.4, §3.4.1)")
    })
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC profile

async fn rpc_ping(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        let v = expect_result(&resp, "tether/ping")?;
        expect_eq(v, json!({}), "tether/ping result", "answer tether/ping with {} (§4.5)")
    })
}

async fn params_absent(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let id = Id::Str("no-params".into());
        s.send_raw(br#"{"jsonrpc":"2.0","id":"no-params","method":"tether/ping"}"#).await?;
        let resp = s
            .response(&id, ctx.t())
            .await
            .map_err(|e| recv_failure(&s, "a tether/ping without params", e))?;
        expect_result(&resp, "tether/ping without params")
            .map_err(|f| f.fix("treat an absent params member as {} (§3.1)"))?;
        Ok(())
    })
}

async fn unknown_method(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        for method in ["nosuch.method", "tether/nosuch"] {
            let resp = s.call(method, json!({}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::METHOD_NOT_FOUND,
                method,
                "answer unknown methods with -32601 (§3.6, §5.1)",
            )?;
        }
        ping(&ctx, &mut s, "unknown methods").await
    })
}

async fn invalid_params(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let method = if ctx.has("kv") { "kv.get" } else { "counter.get" };
        let resp = s.call(method, json!({"key": 42}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_PARAMS,
            &format!("{method} with key 42"),
            "check params against the method's schema and answer -32602 (§5.2)",
        )?;
        let resp = s.call(method, json!({}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_PARAMS,
            &format!("{method} without key"),
            "check params against the method's schema and answer -32602 (§5.2)",
        )?;
        ping(&ctx, &mut s, "invalid params").await
    })
}

/// Sends a raw body, then a ping; returns every message before the ping's answer.
async fn raw_then_ping(ctx: &Ctx, s: &mut Session, body: &[u8], what: &str) -> Result<Vec<Message>, Failure> {
    s.send_raw(body).await?;
    let ping_id = s.request("tether/ping", json!({})).await?;
    let mut seen = Vec::new();
    loop {
        match s.recv(ctx.t()).await {
            Ok(Message::Response(r)) if r.id.as_ref() == Some(&ping_id) => {
                expect_result(&r, "tether/ping")?;
                return Ok(seen);
            }
            Ok(m) => seen.push(m),
            Err(e) => {
                return Err(Failure::new(format!(
                    "after {what}, a ping was not answered: {}",
                    s.explain("the ping", e)
                ))
                .expected(format!("the error answer to {what}, then the ping's answer"))
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix("answer the error and keep reading frames: the session continues"))
            }
        }
    }
}

fn single_error(seen: &[Message], code: i64, id: Option<Id>, what: &str, fix: &str) -> Result<(), Failure> {
    let shown = || seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | ");
    let want = format!("one error {code} with id {}", id.as_ref().map_or("null".to_owned(), Id::to_string));
    match seen {
        [Message::Response(Response { id: got_id, outcome: Outcome::Error(e), .. })]
            if e.code == code && *got_id == id =>
        {
            Ok(())
        }
        [] => Err(Failure::new(format!("{what}: no answer"))
            .expected(want)
            .got("nothing before the next ping's answer")
            .fix(fix)),
        _ => {
            Err(Failure::new(format!("{what}: not the expected answer")).expected(want).got(shown()).fix(fix))
        }
    }
}

async fn parse_error(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":",
            "a body that is not JSON",
        )
        .await?;
        single_error(
            &seen,
            codes::PARSE_ERROR,
            None,
            "invalid JSON",
            "answer -32700 with \"id\": null and continue the session (§3.4.1)",
        )
    })
}

async fn batch(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"[{"jsonrpc":"2.0","id":"in-batch","method":"tether/ping","params":{}},{"jsonrpc":"2.0","id":"in-batch-2","method":"tether/ping","params":{}}]"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a batch").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            None,
            "a batch",
            "answer a JSON array with one -32600 with id null and do not process its elements (§3.3)",
        )
    })
}

async fn invalid_request(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"{"jsonrpc":"1.0","id":"old-version","method":"tether/ping","params":{}}"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a message with jsonrpc 1.0").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            Some(Id::Str("old-version".into())),
            "jsonrpc \"1.0\"",
            "answer an invalid message with -32600 and its id (§3.4.2)",
        )
    })
}

async fn null_id(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"{"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a request with id null").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            None,
            "id null",
            "answer a request with \"id\": null with -32600 and id null (§3.2)",
        )
    })
}

async fn notifications_unanswered(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        s.notify("nosuch.notification", json!({"x": 1})).await?;
        s.notify("$/nosuchNotification", json!({})).await?;
        s.notify("tether/ping", json!({})).await?;
        if ctx.has("kv") {
            s.notify("kv.get", json!({"key": "missing"})).await?;
            s.notify("kv.put", json!({"key": "note", "value": "aGk="})).await?;
        }
        if ctx.has("counter") {
            s.notify("counter.get", json!({"key": "missing"})).await?;
        }
        let mut seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"never-sent"}}"#,
            "notifications",
        )
        .await?;
        // A handler that answers late would come after the first ping: ask once more.
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.extend(
            raw_then_ping(
                &ctx,
                &mut s,
                br#"{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":"info"}}"#,
                "notifications",
            )
            .await?,
        );
        if seen.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(format!("{} message(s) came back for notifications", seen.len()))
                .expected("no answer at all to a notification")
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix("never answer a message without an id, not even with an error (§3.5)"))
        }
    })
}

async fn id_types(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        for id in
            [Id::Str("7".into()), Id::Int(9_007_199_254_740_993), Id::Str("ünïcode id".into()), Id::Int(-3)]
        {
            s.request_with_id(id.clone(), "tether/ping", json!({})).await?;
            // Wait for whatever response comes and compare its id exactly.
            let resp = loop {
                match s.recv(ctx.t()).await {
                    Ok(Message::Response(r)) => break r,
                    Ok(_) => continue,
                    Err(e) => return Err(recv_failure(&s, &format!("tether/ping with id {id}"), e)),
                }
            };
            if resp.id.as_ref() != Some(&id) {
                return Err(Failure::new(format!(
                    "request id {id} came back as {}",
                    resp.id.as_ref().map_or("null".into(), Id::to_string)
                ))
                .expected(format!("the id {id} exactly, same JSON type"))
                .got(show_response(&resp))
                .fix("echo the id as sent: keep strings as strings and integers as 64-bit integers (§3.2)"));
            }
        }
        Ok(())
    })
}

async fn concurrent_64(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let mut pending = BTreeSet::new();
        for i in 0..64 {
            let id = match (i % 3, ctx.has("kv"), ctx.has("counter")) {
                (1, true, _) => s.request("kv.get", json!({"key": format!("missing-{i}")})).await?,
                (2, _, true) => s.request("counter.get", json!({"key": format!("c-{i}")})).await?,
                _ => s.request("tether/ping", json!({})).await?,
            };
            pending.insert(id);
        }
        let deadline = tokio::time::Instant::now() + ctx.t() * 2;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match s.recv(left).await {
                Ok(Message::Response(r)) => {
                    if let Some(id) = r.id.as_ref() {
                        pending.remove(id);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure::new(format!(
                        "{} of 64 requests in flight were not answered: {}",
                        pending.len(),
                        s.explain("them", e)
                    ))
                    .expected("every one of 64 requests in flight answered, in any order")
                    .got(format!(
                        "unanswered ids: {}",
                        pending.iter().take(10).map(Id::to_string).collect::<Vec<_>>().join(", ")
                    ))
                    .fix("keep reading while handlers run and allow at least 64 requests in flight (§3.7)"))
                }
            }
        }
        Ok(())
    })
}

async fn unknown_response(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","id":987654321,"result":{}}"#,
            "a response with an unknown id",
        )
        .await?;
        let more = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","id":"never-asked","error":{"code":-32603,"message":"x"}}"#,
            "an error response with an unknown id",
        )
        .await?;
        if seen.is_empty() && more.is_empty() {
            Ok(())
        } else {
            Err(Failure::new("the plugin answered a response")
                .expected("a response with an unknown id ignored")
                .got(
                    seen.iter()
                        .chain(&more)
                        .map(|m| show_bytes(&m.to_body(), 200))
                        .collect::<Vec<_>>()
                        .join(" | "),
                )
                .fix("ignore (and log) responses whose id matches no pending request (§3.4.3)"))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// kv

async fn kv_put_get(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "hello", b"world", ctx.t()).await?;
        let got = kv_get_value(&mut s, "hello", ctx.t()).await?;
        same_bytes(&got, b"world", "kv.get hello")
    })
}

async fn kv_overwrite(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "k", b"first", ctx.t()).await?;
        kv_put(&ctx, &mut s, "k", b"second value", ctx.t()).await?;
        let got = kv_get_value(&mut s, "k", ctx.t()).await?;
        same_bytes(&got, b"second value", "kv.get after an overwrite")
    })
}

async fn kv_missing(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = kv_get(&mut s, "never-put", ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::KEY_NOT_FOUND,
            "kv.get of a missing key",
            "answer error 1001 (key not found) with data {\"key\": <key>} (§9.1)",
        )?;
        let key = e.data.as_ref().and_then(|d| d.get("key")).and_then(Value::as_str);
        expect_eq(
            key,
            Some("never-put"),
            "data.key of error 1001",
            "put the missing key in data: {\"key\": <key>} (§9.1)",
        )
    })
}

async fn kv_empty(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "empty", b"", ctx.t()).await?;
        let got = kv_get_value(&mut s, "empty", ctx.t()).await?;
        same_bytes(&got, b"", "kv.get of an empty value")
    })
}

async fn kv_binary(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        kv_put(&ctx, &mut s, "bytes", &all, ctx.t()).await?;
        let got = kv_get_value(&mut s, "bytes", ctx.t()).await?;
        same_bytes(&got, &all, "kv.get of all byte values")
    })
}

async fn kv_unicode(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let keys = ["ключ", "🔑 emoji key", "鍵", "nul\u{0}inside", "e\u{301}", "\u{e9}", " "];
        for (i, key) in keys.iter().enumerate() {
            kv_put(&ctx, &mut s, key, format!("value {i}").as_bytes(), ctx.t()).await?;
        }
        for (i, key) in keys.iter().enumerate() {
            let got = kv_get_value(&mut s, key, ctx.t()).await?;
            same_bytes(&got, format!("value {i}").as_bytes(), &format!("kv.get {key:?}")).map_err(|f| {
                f.fix("compare keys as exact Unicode strings, without normalisation or truncation")
            })?;
        }
        Ok(())
    })
}

async fn kv_bad_base64(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        for value in ["not base64!", "aGk", "aGk=\n", "a-_b"] {
            let resp = s.call("kv.put", json!({"key": "b", "value": value}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::INVALID_PARAMS,
                &format!("kv.put with value {value:?}"),
                "reject strings that are not padded standard base64 with -32602 (§5.3)",
            )?;
        }
        Ok(())
    })
}

async fn kv_large(ctx: Arc<Ctx>, len: usize) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let t = ctx.t().max(Duration::from_secs(60));
        let value = pattern(len);
        kv_put(&ctx, &mut s, "large", &value, t).await?;
        let got = kv_get_value(&mut s, "large", t).await?;
        same_bytes(&got, &value, &format!("kv.get of a {len}-byte value"))
    })
}

async fn kv_large_1(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_large(ctx, 1 << 20).await
}

async fn kv_large_16(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_large(ctx, 16 << 20).await
}

async fn kv_delete(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "d", b"x", ctx.t()).await?;
        let fix = "answer kv.delete with {\"existed\": <whether the key held a value>} (§9.2)";
        let resp = s.call("kv.delete", json!({"key": "d"}), ctx.t()).await?;
        expect_eq(
            expect_result(&resp, "kv.delete")?,
            json!({"existed": true}),
            "kv.delete of a present key",
            fix,
        )?;
        let resp = kv_get(&mut s, "d", ctx.t()).await?;
        expect_error(
            &resp,
            codes::KEY_NOT_FOUND,
            "kv.get after kv.delete",
            "a deleted key is missing: 1001 (§9.1)",
        )?;
        let resp = s.call("kv.delete", json!({"key": "d"}), ctx.t()).await?;
        expect_eq(
            expect_result(&resp, "kv.delete")?,
            json!({"existed": false}),
            "kv.delete of a missing key",
            fix,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// counter

/// The judge's deliberately odd adder: a plugin that adds by itself gets another number.
fn odd_sum(a: i64, b: i64) -> i64 {
    a + b + 1000
}

/// An invoke of the plugin, read from the stream.
struct Invoke {
    id: Id,
    handle: String,
    method: String,
    a: i64,
    b: i64,
}

/// Waits for the next `tether/invoke` of the plugin; other messages are kept for later.
async fn next_invoke(ctx: &Ctx, s: &mut Session, t: Duration, what: &str) -> Result<Invoke, Failure> {
    let deadline = tokio::time::Instant::now() + t;
    let mut kept = Vec::new();
    let out = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match s.recv(left).await {
            Ok(Message::Request(r)) if r.method == "tether/invoke" => {
                let p: Value = serde_json::from_str(r.params.get()).unwrap_or(Value::Null);
                let inv = Invoke {
                    id: r.id.clone(),
                    handle: p.get("handle").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    method: p.get("method").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    a: p.pointer("/params/a").and_then(Value::as_i64).unwrap_or(i64::MIN),
                    b: p.pointer("/params/b").and_then(Value::as_i64).unwrap_or(i64::MIN),
                };
                if inv.method != "sum" || inv.a == i64::MIN || inv.b == i64::MIN {
                    break Err(Failure::new("a malformed tether/invoke")
                        .expected("tether/invoke {\"handle\": <id>, \"method\": \"sum\", \"params\": {\"a\": <int>, \"b\": <int>}}")
                        .got(show_bytes(r.params.get().as_bytes(), 300))
                        .fix("invoke `sum` on the adder handle as §6.2 and §9.4 show"));
                }
                break Ok(inv);
            }
            Ok(m) => kept.push(m),
            Err(e) => {
                let _ = ctx;
                break Err(Failure::new(format!("no tether/invoke of sum {what}: {}", s.explain("counter.put", e)))
                    .expected(format!("a tether/invoke of `sum` on the adder handle {what}"))
                    .got(kept.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                    .fix("compute the new value by invoking `sum` on the host's adder handle (§9.3), concurrently with other requests (§3.7)"));
            }
        }
    };
    for m in kept {
        s.unread(m);
    }
    out
}

fn check_invoke(inv: &Invoke, handle: &str, a: i64, b: i64) -> Result<(), Failure> {
    if inv.handle == handle && inv.a == a && inv.b == b {
        Ok(())
    } else {
        Err(Failure::new("tether/invoke with the wrong handle or operands")
            .expected(format!("handle {handle:?}, sum {{a: {a}, b: {b}}} (a = the stored value, b = the put's value)"))
            .got(format!("handle {:?}, sum {{a: {}, b: {}}}", inv.handle, inv.a, inv.b))
            .fix("invoke sum on the adder given in this put with a = stored value (0 when never put), b = value (§9.3)"))
    }
}

async fn answer_sum(s: &mut Session, inv: &Invoke) -> Result<i64, Failure> {
    let sum = odd_sum(inv.a, inv.b);
    s.respond_ok(inv.id.clone(), json!({"result": sum})).await?;
    Ok(sum)
}

async fn counter_get(ctx: &Ctx, s: &mut Session, key: &str) -> Result<i64, Failure> {
    let resp = s.call("counter.get", json!({"key": key}), ctx.t()).await?;
    let v = expect_result(&resp, "counter.get")?;
    v.get("value").and_then(Value::as_i64).ok_or_else(|| {
        Failure::new("counter.get result has no integer `value`")
            .expected("{\"value\": <integer>}")
            .got(show_response(&resp))
    })
}

async fn put_response(ctx: &Ctx, s: &mut Session, id: &Id) -> Result<Response, Failure> {
    s.response(id, ctx.t()).await.map_err(|e| recv_failure(s, "counter.put", e))
}

async fn counter_callback(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let mut stored = 0;
        for (i, (value, handle)) in [(5, "adder-1"), (7, "adder-2")].into_iter().enumerate() {
            let put =
                s.request("counter.put", json!({"key": "c", "value": value, "adder": adder(handle)})).await?;
            let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
            check_invoke(&inv, handle, stored, value)?;
            stored = answer_sum(&mut s, &inv).await?;
            let resp = put_response(&ctx, &mut s, &put).await?;
            expect_result(&resp, &format!("counter.put #{}", i + 1))?;
            let got = counter_get(&ctx, &mut s, "c").await?;
            expect_eq(
                got,
                stored,
                "counter.get after the put (the host's adder answers a+b+1000)",
                "store the `result` the host's adder answered, whatever it is; do not add by yourself (§9.3)",
            )?;
        }
        Ok(())
    })
}

async fn counter_concurrent(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put1 = s.request("counter.put", json!({"key": "k1", "value": 1, "adder": adder("h1")})).await?;
        let inv1 = next_invoke(&ctx, &mut s, ctx.t(), "for the first put").await?;
        let put2 = s.request("counter.put", json!({"key": "k2", "value": 2, "adder": adder("h2")})).await?;
        // The first sum is held back: a plugin that handles one request at a time stalls here.
        let inv2 = next_invoke(&ctx, &mut s, ctx.t(), "for a second put while the first put's sum is pending")
            .await
            .map_err(|f| f.fix("handle requests concurrently: a put waiting for its sum must not block the next request (§9.3, §3.7)"))?;
        check_invoke(&inv1, "h1", 0, 1)?;
        check_invoke(&inv2, "h2", 0, 2)?;
        let sum2 = answer_sum(&mut s, &inv2).await?;
        let sum1 = answer_sum(&mut s, &inv1).await?;
        expect_result(&put_response(&ctx, &mut s, &put2).await?, "the second counter.put")?;
        expect_result(&put_response(&ctx, &mut s, &put1).await?, "the first counter.put")?;
        let fix = "store the result of each put's own sum";
        expect_eq(counter_get(&ctx, &mut s, "k1").await?, sum1, "counter.get k1", fix)?;
        expect_eq(counter_get(&ctx, &mut s, "k2").await?, sum2, "counter.get k2", fix)
    })
}

async fn counter_reentrant(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "r", "value": 3, "adder": adder("h1")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        let get = s.request("counter.get", json!({"key": "r"})).await?;
        let resp = s.response(&get, ctx.t()).await.map_err(|e| {
            recv_failure(&s, "counter.get while a sum is pending", e)
                .expected("counter.get answered while the put's sum is pending")
                .fix("keep reading and serving requests while a handler waits for the host (§3.7, §6.4)")
        })?;
        let v = expect_result(&resp, "counter.get while a sum is pending")?;
        expect_eq(
            v,
            json!({"value": 0}),
            "counter.get before the put completed",
            "answer the stored value (0 for a key never put)",
        )?;
        let sum = answer_sum(&mut s, &inv).await?;
        expect_result(&put_response(&ctx, &mut s, &put).await?, "counter.put")?;
        expect_eq(
            counter_get(&ctx, &mut s, "r").await?,
            sum,
            "counter.get after the put",
            "store the host's sum",
        )
    })
}

async fn counter_cancel(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "x", "value": 4, "adder": adder("h1")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.cancel(&put).await?;
        let mut cancelled_invoke = false;
        let mut put_answer = None;
        let deadline = tokio::time::Instant::now() + ctx.t();
        while !(cancelled_invoke && put_answer.is_some()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match s.recv(left).await {
                Ok(Message::Notification(n)) if n.method == "$/cancelRequest" => {
                    let p: Value = serde_json::from_str(n.params.get()).unwrap_or(Value::Null);
                    if p.get("id").and_then(|v| serde_json::from_value::<Id>(v.clone()).ok()).as_ref()
                        == Some(&inv.id)
                    {
                        cancelled_invoke = true;
                    }
                }
                Ok(Message::Response(r)) if r.id.as_ref() == Some(&put) => put_answer = Some(r),
                Ok(_) => {}
                Err(e) => {
                    let missing = match (cancelled_invoke, put_answer.is_some()) {
                        (false, false) => "neither a $/cancelRequest for the pending invoke nor an answer to the cancelled put",
                        (false, true) => "no $/cancelRequest for the pending tether/invoke",
                        _ => "no answer to the cancelled counter.put",
                    };
                    return Err(Failure::new(format!("{missing} ({})", s.explain("the cancel", e)))
                        .expected(format!("$/cancelRequest {{\"id\": {}}} and an answer to the put (-32800 or a result), without the judge answering sum", inv.id))
                        .fix("on $/cancelRequest for a put, cancel its pending invoke with $/cancelRequest and answer the put without waiting (§7.1, §7.2)"));
                }
            }
        }
        if let Some(r) = &put_answer {
            if let Outcome::Error(e) = &r.outcome {
                if e.code != codes::REQUEST_CANCELLED {
                    return Err(Failure::new(format!(
                        "the cancelled put was answered with error {}",
                        e.code
                    ))
                    .expected("error -32800 (request cancelled) or a result")
                    .got(show_response(r))
                    .fix("answer a cancelled request with -32800 (§7.1)"));
                }
            }
        }
        // A late answer to the cancelled invoke is a response for an unknown id (§7.3).
        let _ = answer_sum(&mut s, &inv).await;
        ping(&ctx, &mut s, "a late answer to a cancelled invoke").await
    })
}

async fn counter_unknown_handle(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put =
            s.request("counter.put", json!({"key": "u", "value": 1, "adder": adder("expired-7")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.respond_err(Some(inv.id.clone()), ErrorObject::unknown_handle(&inv.handle)).await?;
        let resp = s.response(&put, ctx.t()).await.map_err(|e| {
            recv_failure(&s, "counter.put whose sum failed with -32003", e)
                .expected("the put answered (an error) and the plugin still running")
                .fix("turn an error answer to an invoke into an error answer of the put; do not crash")
        })?;
        let _ = resp;
        ping(&ctx, &mut s, "an invoke answered with -32003").await?;
        counter_get(&ctx, &mut s, "u").await.map(|_| ())
    })
}

// ---------------------------------------------------------------------------------------------
// Logs

fn debug_logs_for(obs: &Observations, key: &str) -> usize {
    obs.logs
        .iter()
        .filter(|l| l.level == LogLevel::Debug)
        .filter(|l| l.fields.as_ref().and_then(|f| f.get("key")).and_then(Value::as_str) == Some(key))
        .count()
}

async fn log_debug_on_put(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Debug, |s| {
        kv_put(&ctx, &mut s, "logged-key", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        if debug_logs_for(&s.obs, "logged-key") >= 1 {
            Ok(())
        } else {
            Err(Failure::new("no debug $/log with fields.key for kv.put")
                .expected("one $/log {\"level\": \"debug\", \"fields\": {\"key\": \"logged-key\", ...}} per kv.put at logLevel debug")
                .got(format!("{} $/log: {:?}", s.obs.logs.len(), s.obs.logs.iter().map(|l| format!("{} {}", l.level, l.message)).collect::<Vec<_>>()))
                .fix("on each kv.put, send a debug $/log whose fields include the key (§9.1)"))
        }
    })
}

async fn log_set_level(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "quiet-1", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        s.notify("$/setLogLevel", json!({"level": "debug"})).await?;
        s.set_level(LogLevel::Debug);
        kv_put(&ctx, &mut s, "loud", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        s.notify("$/setLogLevel", json!({"level": "warn"})).await?;
        ping(&ctx, &mut s, "$/setLogLevel").await?;
        s.set_level(LogLevel::Warn);
        kv_put(&ctx, &mut s, "quiet-2", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        let (q1, loud, q2) = (
            debug_logs_for(&s.obs, "quiet-1"),
            debug_logs_for(&s.obs, "loud"),
            debug_logs_for(&s.obs, "quiet-2"),
        );
        if q1 == 0 && loud >= 1 && q2 == 0 {
            Ok(())
        } else {
            Err(Failure::new(format!("debug $/log per put: {q1} at info, {loud} after $/setLogLevel debug, {q2} after $/setLogLevel warn"))
                .expected("0 at info, at least 1 at debug, 0 at warn")
                .fix("apply $/setLogLevel to every later $/log (§8.2)"))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Stop

async fn expect_exit_0(ctx: &Ctx, s: &mut Session, what: &str) -> Result<(), Failure> {
    let grace = ctx.opts.grace;
    match s.wait_exit(grace).await {
        Some(status) if status.code() == Some(0) => Ok(()),
        Some(status) => Err(Failure::new(format!("exit status {status} {what}"))
            .expected("exit status 0")
            .got(status.to_string())
            .fix("exit 0 when stdin reaches end of file (§1.5, §1.6)")),
        None => Err(Failure::new(format!("still running {} ms {what}", grace.as_millis()))
            .expected(format!("exit 0 within the grace period ({} ms)", grace.as_millis()))
            .got("the process kept running")
            .fix("exit when stdin reaches end of file, cancelling in-flight work (§1.6)")),
    }
}

async fn stop_shutdown(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        let v = expect_result(&resp, "tether/shutdown")?;
        expect_eq(v, json!({}), "tether/shutdown result", "answer tether/shutdown with {} (§4.6)")?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after shutdown and the end of stdin").await
    })
}

impl Ctx {
    fn grace_or_timeout(&self) -> Duration {
        self.opts.grace.max(self.opts.timeout)
    }
}

async fn stop_after_shutdown(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        expect_result(&resp, "tether/shutdown")?;
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::SHUTTING_DOWN,
            "tether/ping after shutdown",
            "answer every request after tether/shutdown with -32005 (§4.6)",
        )?;
        Ok(())
    })
}

async fn stop_eof(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        ping(&ctx, &mut s, "initialize").await?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after stdin closed without shutdown").await
    })
}

async fn stop_eof_uninit(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    s.close_stdin();
    let r = expect_exit_0(&ctx, &mut s, "after stdin closed before initialize").await;
    ctx.close(s, r).await
}

async fn stop_eof_pending(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let _put = s.request("counter.put", json!({"key": "p", "value": 1, "adder": adder("h1")})).await?;
        let _inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after stdin closed while a sum was pending").await
    })
}

async fn stop_no_leftovers(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        if ctx.has("kv") {
            kv_put(&ctx, &mut s, "k", b"v", ctx.t()).await?;
        }
        ping(&ctx, &mut s, "initialize").await?;
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        expect_result(&resp, "tether/shutdown")?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after shutdown and the end of stdin").await?;
        let Some(pgid) = s.pgid() else { return Ok(()) };
        let left = procs::wait_group_empty(pgid, ctx.opts.grace).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(format!(
                "{} process(es) of the plugin's group still running after it exited",
                left.len()
            ))
            .expected("no live process in the plugin's process group after its exit")
            .got(left.iter().map(|m| format!("pid {} ({})", m.pid, m.comm)).collect::<Vec<_>>().join(", "))
            .fix("stop (or wait for) every child process before exiting (§1.6, §11.4)"))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Aggregates

fn aggregate(
    all: &[Observations],
    pick: fn(&Observations) -> &Vec<String>,
    summary: &str,
    expected: &str,
    fix: &str,
) -> Verdict {
    let bad: Vec<&String> = all.iter().flat_map(pick).collect();
    if bad.is_empty() {
        return Verdict::Pass;
    }
    Verdict::Fail(Box::new(
        Failure::new(format!("{} ({} in all): {}", summary, bad.len(), bad[0]))
            .expected(expected)
            .got(bad.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("\n"))
            .fix(fix),
    ))
}

fn agg_stdout(all: &[Observations]) -> Verdict {
    aggregate(
        all,
        |o| &o.stdout_violations,
        "bytes on stdout that are not a frame in the writer form",
        "only `Content-Length: N\\r\\n\\r\\n<body>` frames on stdout",
        "never print to stdout: send logs to stderr or $/log, move fd 1 to stderr at start (§8.4)",
    )
}

fn agg_messages(all: &[Observations]) -> Verdict {
    aggregate(
        all,
        |o| &o.bad_messages,
        "bodies that are not valid JSON-RPC messages",
        "every body one JSON-RPC 2.0 object, with object params and results",
        "write {\"jsonrpc\":\"2.0\", ...} objects as §3.1 describes",
    )
}

fn agg_logs(all: &[Observations]) -> Verdict {
    aggregate(
        all,
        |o| &o.bad_logs,
        "malformed $/log",
        "$/log params {level: trace|debug|info|warn|error, message: string, target?: string, fields?: object}",
        "send $/log params as §8.1 describes",
    )
}

fn agg_level(all: &[Observations]) -> Verdict {
    aggregate(
        all,
        |o| &o.logs_below_level,
        "$/log below the session's level",
        "no $/log less severe than the logLevel of initialize (default info) or of $/setLogLevel",
        "filter $/log by the session's level (§8.1)",
    )
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

    #[test]
    fn odd_sum_is_not_a_sum() {
        assert_ne!(odd_sum(1, 2), 3);
    }
}
