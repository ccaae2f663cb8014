//! Progress and trace context in memory (SPEC.md §14, §15): a host session joined to a plugin
//! whose handlers report progress and return the span they ran in; exact wire strings where the
//! wire is the point.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Wire;
use serde::{Deserialize, Serialize};
use tether::spec::{Capabilities, Empty, Initialize, InitializeParams, PeerInfo, ProgressParams};
use tether::trace::{in_span, SpanContext};
use tether::{CallError, Error, Options, Peer, RequestContext, Router, Session};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
struct RunParams {
    /// How many steps, each reported as progress.
    steps: u64,
    /// The time each step takes.
    step_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct RunResult {
    /// Whether the caller asked for progress.
    wanted: bool,
}

/// What a handler saw of trace context.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Seen {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
}

#[tether::interface(name = "work", versions = [1])]
trait Work {
    async fn run(&self, params: RunParams, cx: RequestContext) -> Result<RunResult, Error>;
    async fn seen(&self, params: Empty, cx: RequestContext) -> Result<Seen, Error>;
    /// `seen`, with a `tracing` event from a call site no other test reaches.
    async fn logged(&self, params: Empty, cx: RequestContext) -> Result<Seen, Error>;
}

struct Worker;

impl Work for Worker {
    async fn run(&self, p: RunParams, cx: RequestContext) -> Result<RunResult, Error> {
        for step in 1..=p.steps {
            tokio::time::sleep(Duration::from_millis(p.step_ms)).await;
            cx.progress(step, Some(p.steps), Some(&format!("step {step}")));
        }
        Ok(RunResult { wanted: cx.wants_progress() })
    }

    async fn seen(&self, _: Empty, cx: RequestContext) -> Result<Seen, Error> {
        let span = cx.span();
        Ok(Seen {
            trace_id: span.map(|s| s.trace_id()),
            span_id: span.map(|s| s.span_id()),
            parent_span_id: span.and_then(|s| s.parent_span_id()),
        })
    }

    async fn logged(&self, params: Empty, cx: RequestContext) -> Result<Seen, Error> {
        // Only `a_handlers_logs_name_its_trace_and_span` calls this. A call site's interest is
        // global: registered by another test's thread (which has no subscriber) at the moment
        // that test installs its own, it could be cached as "never" and the event lost.
        tracing::info!("seen");
        self.seen(params, cx).await
    }
}

const LONG: Duration = Duration::from_secs(20);

/// A host session joined to the plugin, initialized with `caps`.
async fn host(caps: Capabilities) -> WorkClient {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let _plugin = tether::Plugin::new("work", "0").interface(WorkServer::new(Worker)).start(yr, yw);
    let host: Peer = Session::start(xr, xw, Options::new(), Router::new()).into_peer();
    let params = InitializeParams {
        protocol_versions: vec![1],
        interfaces: [("work".to_owned(), vec![1])].into(),
        host: PeerInfo::new("test-host", "0"),
        capabilities: caps,
        max_frame_size: 32 << 20,
        log_level: None,
    };
    host.call::<Initialize>(&params).timeout(LONG).await.unwrap();
    WorkClient::new(host)
}

/// The progress a call received, in order.
fn recorder() -> (Arc<Mutex<Vec<ProgressParams>>>, impl Fn(&ProgressParams) + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |p: &ProgressParams| sink.lock().unwrap().push(p.clone()))
}

#[tokio::test]
async fn progress_restarts_the_timeout() {
    let work = host(Capabilities::all()).await;
    // 12 steps of 100 ms: 1.2 s in all, four times the time-out, with progress after each step.
    let (seen, hook) = recorder();
    let run = RunParams { steps: 12, step_ms: 100 };
    let done = work.run(&run).timeout(Duration::from_millis(300)).on_progress(hook).await.unwrap();
    assert!(done.wanted);
    let seen = seen.lock().unwrap();
    let dones: Vec<u64> = seen.iter().filter_map(|p| p.done).collect();
    assert_eq!(dones, (1..=12).collect::<Vec<_>>());
    assert!(seen.iter().all(|p| p.total == Some(12)));
    assert_eq!(seen[0].message.as_deref(), Some("step 1"));
}

#[tokio::test]
async fn without_progress_the_same_call_times_out() {
    let work = host(Capabilities::all()).await;
    let run = RunParams { steps: 12, step_ms: 100 };
    let err = work.run(&run).timeout(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(t) if t == Duration::from_millis(300)), "{err:?}");
}

#[tokio::test]
async fn progress_does_not_restart_a_timeout_told_not_to() {
    let work = host(Capabilities::all()).await;
    let (seen, hook) = recorder();
    let run = RunParams { steps: 12, step_ms: 100 };
    let err = work
        .run(&run)
        .timeout(Duration::from_millis(300))
        .on_progress(hook)
        .timeout_restarts_on_progress(false)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    assert!(seen.lock().unwrap().len() < 12);
}

#[tokio::test]
async fn the_overall_cap_ends_a_call_despite_progress() {
    let work = host(Capabilities::all()).await;
    let (seen, hook) = recorder();
    let run = RunParams { steps: 30, step_ms: 100 };
    let err = work
        .run(&run)
        .timeout(Duration::from_secs(5))
        .overall_timeout(Duration::from_millis(700))
        .on_progress(hook)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(t) if t == Duration::from_millis(700)), "{err:?}");
    // Progress came, and was not enough to keep the call alive.
    assert!(!seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_plugin_without_the_capability_gets_no_token() {
    // The host does not announce `progress`, so the plugin does not either, and the call carries
    // no `_meta`: the handler sees no token and sends nothing.
    let work = host(Capabilities { progress: None, ..Capabilities::all() }).await;
    let (seen, hook) = recorder();
    let done = work.run(&RunParams { steps: 3, step_ms: 1 }).on_progress(hook).timeout(LONG).await.unwrap();
    assert!(!done.wanted);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_handler_runs_in_a_child_of_the_callers_span() {
    let work = host(Capabilities::all()).await;
    let root = SpanContext::new_root();
    let seen = in_span(root.clone(), work.seen(&Empty {}).timeout(LONG)).await.unwrap();
    assert_eq!(seen.trace_id, Some(root.trace_id()), "the same trace");
    assert_eq!(seen.parent_span_id, Some(root.span_id()), "the host's span is the parent");
    assert!(seen.span_id.is_some_and(|id| id != root.span_id()), "a span of its own");
    // An explicit span wins; without any, nothing is sent.
    let other = SpanContext::new_root();
    let seen = work.seen(&Empty {}).trace(other.clone()).timeout(LONG).await.unwrap();
    assert_eq!(seen.trace_id, Some(other.trace_id()));
    let seen = work.seen(&Empty {}).timeout(LONG).await.unwrap();
    assert!(seen.trace_id.is_none() && seen.parent_span_id.is_none());
}

#[tokio::test]
async fn without_trace_context_announced_no_traceparent_is_sent() {
    let work = host(Capabilities { trace_context: None, ..Capabilities::all() }).await;
    let seen = in_span(SpanContext::new_root(), work.seen(&Empty {}).timeout(LONG)).await.unwrap();
    assert!(seen.trace_id.is_none());
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"interfaces":{"work":[1]},"host":{"name":"h","version":"0"},"capabilities":{"progress":{},"traceContext":{}},"maxFrameSize":33554432}}"#;

async fn plugin_wire() -> Wire {
    let service = tether::Plugin::new("work", "0").interface(WorkServer::new(Worker)).into_service();
    let (_peer, mut wire) = Wire::connect(Options::new(), service);
    wire.send(INIT).await;
    let answer = wire.recv().await;
    assert!(answer.contains(r#""capabilities":{"progress":{},"traceContext":{}}"#), "{answer}");
    wire
}

#[tokio::test]
async fn progress_on_the_wire_carries_the_callers_token_before_the_answer() {
    let mut wire = plugin_wire().await;
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"work.run","params":{"steps":2,"step_ms":1,"_meta":{"progressToken":"tok-1"}}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"token":"tok-1","message":"step 1","done":1,"total":2}}"#
    );
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"token":"tok-1","message":"step 2","done":2,"total":2}}"#
    );
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{"wanted":true}}"#);
    // Without a token: the answer, and nothing before it.
    wire.send(r#"{"jsonrpc":"2.0","id":3,"method":"work.run","params":{"steps":2,"step_ms":1}}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":3,"result":{"wanted":false}}"#);
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored() {
    let mut wire = plugin_wire().await;
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"work.seen","params":{"_meta":{"traceparent":"00-zz-00f067aa0ba902b7-01"}}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":2,"result":{"trace_id":null,"span_id":null,"parent_span_id":null}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":3,"method":"work.seen","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}"#).await;
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(answer["result"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(answer["result"]["parent_span_id"], "00f067aa0ba902b7");
}

#[tokio::test]
async fn a_handlers_logs_name_its_trace_and_span() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let plugin = tether::Plugin::new("work", "0").interface(WorkServer::new(Worker));
    let layer = plugin.log_layer();
    let _session = plugin.start(xr, xw);
    // A current-thread runtime: the handler runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut wire = Wire::new(yr, yw);
    wire.send(INIT).await;
    wire.recv().await;
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"work.logged","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}"#).await;
    let log: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(log["method"], "$/log");
    assert_eq!(log["params"]["fields"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(log["params"]["fields"]["span_id"], answer["result"]["span_id"]);
}

#[tokio::test]
async fn a_handles_method_takes_progress_from_its_own_params() {
    // SPEC.md §14.2.4: for `tether/invoke`, `_meta` is in the inner params.
    let service = tether::Plugin::new("work", "0").interface(WorkServer::new(Worker)).into_service();
    let (peer, mut wire) = Wire::connect(Options::new(), service);
    wire.send(INIT).await;
    wire.recv().await;
    let handle = peer.serve_handle(WorkServer::new(Worker));
    let invoke = serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tether/invoke","params":{
        "handle": handle.handle, "method": "run",
        "params": {"steps": 1, "step_ms": 1, "_meta": {"progressToken": "inv"}}}});
    wire.send(&invoke.to_string()).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"token":"inv","message":"step 1","done":1,"total":1}}"#
    );
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{"wanted":true}}"#);
}
