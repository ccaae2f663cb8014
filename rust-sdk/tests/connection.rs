//! The connection in memory: calls both ways, concurrency, nesting, cancellation, handles, bad
//! input, with exact wire strings where they matter.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pair, pair_with, Events, MemKv, Wire};
use serde::{Deserialize, Serialize};
use tether::interfaces::{
    Adder, AdderClient, AdderServer, Counter, CounterClient, CounterServer, KvClient, KvServer,
};
use tether::spec::interfaces::{counter, kv};
use tether::spec::{Empty, RequestMethod};
use tether::{CallError, CloseKind, Error, Handled, Options, RequestContext, Router};
use tokio::sync::{mpsc, Barrier};

fn kv_router() -> Router {
    Router::new().interface(KvServer::new(MemKv::default()))
}

macro_rules! method {
    ($ty:ident, $name:literal, $params:ty, $result:ty) => {
        enum $ty {}
        impl RequestMethod for $ty {
            const METHOD: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
struct N {
    n: i64,
}

method!(Wait, "t.wait", Empty, Empty);
method!(Depth, "t.depth", N, N);
method!(Slow, "t.slow", Empty, Empty);
method!(Hang, "t.hang", Empty, Empty);
method!(Boom, "t.boom", Empty, Empty);
method!(Huge, "t.huge", Size, Text);
method!(Leave, "t.leave", Empty, Empty);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
struct Size {
    size: usize,
    fail: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Text {
    text: String,
}

/// Sends on a channel when dropped: shows that a handler future was cancelled.
struct Dropped(mpsc::UnboundedSender<&'static str>, &'static str);
impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

#[tokio::test]
async fn calls_both_ways() {
    let (a, b) = pair(kv_router(), kv_router());
    let put = kv::PutParams { key: "x".into(), value: b"1".to_vec().into() };
    KvClient::new(a.clone()).put(&put).await.unwrap();
    let got = KvClient::new(a.clone()).get(&kv::KeyParams { key: "x".into() }).await.unwrap();
    assert_eq!(&got.value[..], b"1");
    // b's own store does not have it: the error comes back with its code and data.
    let err = KvClient::new(b.clone()).get(&kv::KeyParams { key: "x".into() }).await.unwrap_err();
    let remote = err.remote().unwrap();
    assert_eq!((remote.code, remote.data.clone()), (1001, Some(serde_json::json!({"key": "x"}))));
    let existed = KvClient::new(b).delete(&kv::KeyParams { key: "x".into() }).await.unwrap();
    assert!(!existed.existed);
}

fn barrier_router(n: usize) -> Router {
    let barrier = Arc::new(Barrier::new(n));
    Router::new().route::<Wait, _, _>(move |_, _| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            Ok(Empty {})
        }
    })
}

async fn sixty_four_in_flight_both_ways() {
    // Each side's handlers finish only once 64 of them run at the same time.
    let (a, b) = pair(barrier_router(64), barrier_router(64));
    let mut calls = Vec::new();
    for i in 0..128 {
        let peer = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move { peer.call::<Wait>(&Empty {}).await }));
    }
    for call in calls {
        tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn sixty_four_in_flight_both_ways_current_thread() {
    sixty_four_in_flight_both_ways().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_in_flight_both_ways_multi_thread() {
    sixty_four_in_flight_both_ways().await;
}

fn depth_router() -> Router {
    Router::new().route::<Depth, _, _>(|p: N, cx: RequestContext| async move {
        if p.n == 0 {
            return Ok(N { n: 0 });
        }
        let inner = cx.peer().call::<Depth>(&N { n: p.n - 1 }).await?;
        Ok(N { n: inner.n + 1 })
    })
}

#[tokio::test]
async fn calls_nest_host_plugin_host_plugin() {
    let (host, _plugin) = pair(depth_router(), depth_router());
    // host -> plugin -> host -> plugin -> host -> plugin.
    let got = tokio::time::timeout(Duration::from_secs(5), host.call::<Depth>(&N { n: 5 })).await.unwrap();
    assert_eq!(got.unwrap().n, 5);
}

#[tokio::test]
async fn cancellation_reaches_nested_calls() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx_hang = tx.clone();
    let host_router = Router::new().route::<Hang, _, _>(move |_, _| {
        let guard = Dropped(tx_hang.clone(), "hang");
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(Empty {})
        }
    });
    let plugin_router = Router::new().route::<Slow, _, _>(move |_, cx: RequestContext| {
        let guard = Dropped(tx.clone(), "slow");
        async move {
            let _guard = guard;
            cx.peer().call::<Hang>(&Empty {}).await?;
            Ok(Empty {})
        }
    });
    let events = Events::default();
    let (host, _plugin) = pair_with(events.options(), host_router, Options::new(), plugin_router);
    let err = host.call::<Slow>(&Empty {}).timeout(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err}");
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, ["hang", "slow"]);
    // The plugin still answered the cancelled call (-32800); the late answer was quietly consumed.
    host.call::<tether::spec::Ping>(&Empty {}).await.unwrap();
    assert!(events.all().is_empty(), "{:?}", events.all());
}

/// A handler that answers at once and leaves a task behind with its context: the request's
/// token, made only when first asked for, is cancelled all the same, and a call made for the
/// answered request fails as cancelled.
#[tokio::test]
async fn a_request_token_taken_after_the_answer_is_cancelled_and_so_are_its_calls() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let left = Mutex::new(Some((go_rx, seen_tx)));
    let plugin_router = Router::new().route::<Leave, _, _>(move |_, cx: RequestContext| {
        if let Some((go, seen)) = left.lock().unwrap().take() {
            tokio::spawn(async move {
                let _ = go.await;
                let parent = cx.peer().parent_token().map(|t| t.is_cancelled());
                let call = cx.peer().call::<tether::spec::Ping>(&Empty {}).await;
                let _ = seen.send((cx.is_cancelled(), parent, call));
            });
        }
        async { Ok(Empty {}) }
    });
    let (host, _plugin) = pair(kv_router(), plugin_router);
    host.call::<Leave>(&Empty {}).await.unwrap();
    go_tx.send(()).unwrap();
    let (cancelled, parent, call) =
        tokio::time::timeout(Duration::from_secs(5), seen_rx).await.unwrap().unwrap();
    assert!(cancelled);
    assert_eq!(parent, Some(true));
    assert!(matches!(call, Err(CallError::Cancelled)), "{call:?}");
}

/// `CallFuture` is a named future: polled again after it completed, it fails rather than
/// panics.
#[tokio::test]
async fn a_call_future_polled_after_it_completed_fails_without_panicking() {
    let (host, _plugin) = pair(kv_router(), kv_router());
    let mut call: tether::CallFuture<Empty> = host.call::<tether::spec::Ping>(&Empty {}).into_future();
    (&mut call).await.unwrap();
    let again = (&mut call).await;
    match again {
        Err(CallError::Closed(reason)) => assert_eq!(&*reason.message, "this call already completed"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_a_call_sends_cancel_request() {
    let (peer, mut wire) = Wire::connect(Options::new(), Router::new());
    let call = peer.call::<kv::Get>(&kv::KeyParams { key: "a".into() });
    let _ = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":1,"method":"kv.get","params":{"key":"a"}}"#);
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#);
}

#[tokio::test]
async fn incoming_cancel_is_answered_with_32800() {
    let router = Router::new().route::<Slow, _, _>(|_, _| async {
        std::future::pending::<()>().await;
        Ok(Empty {})
    });
    let (_peer, mut wire) = Wire::connect(Options::new(), router);
    wire.send(r#"{"jsonrpc":"2.0","id":5,"method":"t.slow","params":{}}"#).await;
    assert!(wire.silent_for(50).await);
    wire.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32800,"message":"request cancelled"}}"#
    );
    // A cancel for an unknown id is ignored.
    wire.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":99}}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","id":6,"method":"tether/ping"}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":6,"result":{}}"#);
}

#[tokio::test]
async fn outgoing_calls_are_written_exactly_and_answered() {
    let (peer, mut wire) = Wire::connect(Options::new(), Router::new());
    let call = tokio::spawn(peer.call::<kv::Get>(&kv::KeyParams { key: "a".into() }).into_future());
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":1,"method":"kv.get","params":{"key":"a"}}"#);
    wire.send(r#"{"jsonrpc":"2.0","id":1,"result":{"value":"aGk="}}"#).await;
    assert_eq!(&call.await.unwrap().unwrap().value[..], b"hi");
    peer.notify::<tether::spec::SetLogLevel>(&tether::spec::SetLogLevelParams {
        level: tether::spec::LogLevel::Debug,
    })
    .unwrap();
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":"debug"}}"#);
}

#[tokio::test]
async fn json_rpc_profile_errors() {
    let router = kv_router()
        .route::<Boom, _, _>(|_, _| async { panic!("boom") })
        .route_raw("t.syncboom", |_, _| panic!("sync boom"));
    let (_peer, mut wire) = Wire::connect(Options::new(), router);
    wire.send(r#"{"jsonrpc":"2.0","id":1,"method":"nope.x","params":{}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found: nope.x (this side does not serve it)","data":{"method":"nope.x","reason":"this side does not serve it"}}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"kv.get","params":{"key":5}}"#).await;
    let reply = wire.recv().await;
    assert!(reply.starts_with(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"invalid params: invalid type: integer `5`"#), "{reply}");
    wire.send("{nope").await;
    assert!(wire
        .recv()
        .await
        .starts_with(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"#));
    wire.send(r#"[{"jsonrpc":"2.0","id":3,"method":"tether/ping"}]"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"batches are not supported by Tether"}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":null,"method":"tether/ping"}"#).await;
    assert!(wire.recv().await.starts_with(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600"#));
    // Notifications are never answered, not even unknown or malformed ones.
    wire.send(r#"{"jsonrpc":"2.0","method":"x.y","params":{}}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","method":7}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","id":"s","method":"tether/ping"}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":"s","result":{}}"#);
    // Panicking handlers answer -32603 and serving goes on.
    wire.send(r#"{"jsonrpc":"2.0","id":4,"method":"t.boom","params":{}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"internal error: the handler panicked: boom"}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":5,"method":"t.syncboom","params":{}}"#).await;
    assert!(wire.recv().await.contains(r#""code":-32603"#));
    wire.send(r#"{"jsonrpc":"2.0","id":6,"method":"kv.get","params":{"key":"missing"}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":6,"error":{"code":1001,"message":"key not found: missing","data":{"key":"missing"}}}"#
    );
}

#[tokio::test]
async fn bad_input_is_reported_and_the_session_goes_on() {
    let events = Events::default();
    let (peer, mut wire) = Wire::connect(events.options().max_frame_size(200), Router::new());
    wire.send_bytes(b"hello\n").await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"kv.put","params":{{"key":"k","value":"{}"}}}}"#,
        "A".repeat(200)
    );
    wire.send(&big).await;
    assert_eq!(
        wire.recv().await,
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"error":{{"code":-32004,"message":"frame of {0} bytes exceeds the maximum of 200","data":{{"size":{0},"max":200}}}}}}"#,
            big.len()
        )
    );
    wire.send(r#"{"jsonrpc":"2.0","id":77,"result":{}}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","id":1,"method":"tether/ping"}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    wire.send_bytes(b"Content-Length: 10\r\n\r\n{\"a\"").await;
    wire.close().await;
    let reason = tokio::time::timeout(Duration::from_secs(2), peer.closed()).await.unwrap();
    assert_eq!(reason.kind, CloseKind::Truncated);
    let all = events.all();
    assert_eq!(all[0], r#"skipped bytes that are not a frame header: "hello\n""#);
    assert!(all[1].starts_with("skipped a frame of ") && all[1].ends_with("with id 9"), "{all:?}");
    assert_eq!(all[2], "ignored a response for unknown request id 77");
    assert_eq!(all[3], r#"the input ended in the middle of a frame: "Content-Length: 10\r\n\r\n{\"a\"""#);
}

#[tokio::test]
async fn frame_limits_apply_to_calls() {
    let (peer, mut wire) = Wire::connect(Options::new().max_frame_size(100), Router::new());
    // The encoder refuses: nothing is written.
    let put = kv::PutParams { key: "k".into(), value: vec![0u8; 200].into() };
    let err = KvClient::new(peer.clone()).put(&put).await.unwrap_err();
    assert!(matches!(err, CallError::RequestTooLarge { max: 100, .. }), "{err}");
    // An oversized answer fails the call it answers.
    let call = tokio::spawn(peer.call::<kv::Get>(&kv::KeyParams { key: "a".into() }).into_future());
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"method":"kv.get","params":{"key":"a"}}"#);
    wire.send(&format!(r#"{{"jsonrpc":"2.0","id":2,"result":{{"value":"{}"}}}}"#, "A".repeat(200))).await;
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::ResponseTooLarge { max: 100, .. }), "{err}");
    // The limit can change mid-session.
    peer.set_max_frame_size(1 << 20);
    let call = tokio::spawn(KvClient::new(peer.clone()).put(&put).into_future());
    assert!(wire.recv().await.starts_with(r#"{"jsonrpc":"2.0","id":3,"method":"kv.put""#));
    wire.send(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).await;
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn answers_above_the_maximum_become_frame_too_large() {
    let events = Events::default();
    let router = Router::new().route::<Huge, _, _>(|p, _| async move {
        let text = "x".repeat(p.size);
        if p.fail {
            return Err(Error::new(4243, "too much").with_data(serde_json::json!({ "blob": text })));
        }
        Ok(Text { text })
    });
    let (_peer, mut wire) = Wire::connect(events.options().max_frame_size(300), router);
    let call = |id: &str, size: usize, fail: bool| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.huge","params":{{"size":{size},"fail":{fail}}}}}"#)
    };
    // Under the limit: written as they are.
    wire.send(&call("1", 10, false)).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":1,"result":{"text":"xxxxxxxxxx"}}"#);
    wire.send(&call("2", 1, true)).await;
    assert!(wire.recv().await.contains(r#""code":4243"#));
    // A result (integer id: the envelope the writer builds) and a result to a string id (a
    // body built here), each one byte over, and an error whose data is too long.
    let over = |id: &str, size: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32004,"message":"frame of {size} bytes exceeds the maximum of 300","data":{{"size":{size},"max":300}}}}}}"#
        )
    };
    let envelope = r#"{"jsonrpc":"2.0","id":3,"result":{"text":""}}"#.len();
    wire.send(&call("3", 301 - envelope, false)).await;
    assert_eq!(wire.recv().await, over("3", 301));
    let envelope = r#"{"jsonrpc":"2.0","id":"s","result":{"text":""}}"#.len();
    wire.send(&call(r#""s""#, 301 - envelope, false)).await;
    assert_eq!(wire.recv().await, over(r#""s""#, 301));
    let envelope =
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":4243,"message":"too much","data":{"blob":""}}}"#.len();
    wire.send(&call("4", 400, true)).await;
    assert_eq!(wire.recv().await, over("4", envelope + 400));
    // The session goes on, and the owner was told which request it was.
    wire.send(r#"{"jsonrpc":"2.0","id":5,"method":"tether/ping"}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":5,"result":{}}"#);
    let all = events.all();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all[0],
        "answered request 3 with -32004 (frame too large): its answer of 301 bytes is above the maximum frame size of 300"
    );
}

#[tokio::test]
async fn close_fails_pending_calls_with_the_owners_reason() {
    let events = Events::default();
    let (peer, mut wire) = Wire::connect(events.options().close_on_eof(false), Router::new());
    let call = tokio::spawn(peer.call::<kv::Get>(&kv::KeyParams { key: "a".into() }).into_future());
    wire.recv().await;
    wire.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(events.all(), ["end of input"]);
    assert!(!call.is_finished());
    peer.close("plugin kv exited with status 3; last stderr lines: oops");
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the connection is closed: plugin kv exited with status 3; last stderr lines: oops"
    );
    let err = peer.call::<kv::Get>(&kv::KeyParams { key: "a".into() }).await.unwrap_err();
    assert!(matches!(err, CallError::Closed(_)));
}

#[tokio::test]
async fn shutdown_gate_answers_32005() {
    let (peer, mut wire) = Wire::connect(Options::new(), Router::new());
    peer.stop_accepting();
    wire.send(r#"{"jsonrpc":"2.0","id":1,"method":"tether/ping"}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"shutting down: no new requests are accepted"}}"#
    );
}

// Handles (SPEC.md §6).

struct TestAdder;
impl Adder for TestAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, Error> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[derive(Default)]
struct TestCounter {
    values: Mutex<HashMap<String, i64>>,
    kept: Mutex<Option<AdderClient>>,
}

impl Counter for TestCounter {
    async fn put(&self, p: counter::PutParams, cx: RequestContext) -> Result<Empty, Error> {
        let a = self.values.lock().unwrap().get(&p.key).copied().unwrap_or(0);
        let adder = cx.client::<AdderClient>(p.adder);
        let sum = adder.sum(&counter::SumParams { a, b: p.value }).await?;
        if p.key == "retain" {
            tether::Client::remote(&adder).retain().await?;
            *self.kept.lock().unwrap() = Some(AdderClient::from_handle(
                cx.peer().detached(),
                tether::Client::remote(&adder).handle_ref().unwrap().clone(),
            ));
        }
        self.values.lock().unwrap().insert(p.key, sum.result);
        Ok(Empty {})
    }
    async fn get(&self, p: counter::GetParams) -> Result<counter::GetResult, Error> {
        Ok(counter::GetResult { value: self.values.lock().unwrap().get(&p.key).copied().unwrap_or(0) })
    }
}

#[tokio::test]
async fn handles_are_scoped_to_their_call() {
    let state = Arc::new(TestCounter::default());
    let (host, plugin) = pair(Router::new(), Router::new().interface(CounterServer::from_arc(state.clone())));
    let counter = CounterClient::new(host.clone());
    let adder = host.serve_handle(AdderServer::new(TestAdder));
    assert_eq!(adder, tether::spec::HandleRef::new("h1", "adder"));
    let params = counter::PutParams { key: "k".into(), value: 5, adder: adder.clone() };
    // The handle is found in the params and scoped to the call (no `.handle(&adder)` needed).
    counter.put(&params).await.unwrap();
    // Its call was answered: the handle expired.
    assert!(!host.serves_handle(&adder));
    assert_eq!(counter.get(&counter::GetParams { key: "k".into() }).await.unwrap().value, 5);
    let err = plugin
        .invoke::<_, counter::SumResult>(&adder, "sum", &counter::SumParams { a: 1, b: 2 })
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::to_string(err.remote().unwrap()).unwrap(),
        r#"{"code":-32003,"message":"unknown or expired handle \"h1\"","data":{"handle":"h1"}}"#
    );
    // The session goes on.
    plugin.call::<tether::spec::Ping>(&Empty {}).await.unwrap();
}

#[tokio::test]
async fn scoped_handle_lives_while_its_call_runs() {
    let state = Arc::new(TestCounter::default());
    let (host, _plugin) =
        pair(Router::new(), Router::new().interface(CounterServer::from_arc(state.clone())));
    let counter = CounterClient::new(host.clone());
    let adder = host.serve_handle(AdderServer::new(TestAdder));
    let params = counter::PutParams { key: "k".into(), value: 5, adder: adder.clone() };
    counter.put(&params).handle(&adder).await.unwrap();
    let adder = host.serve_handle(AdderServer::new(TestAdder));
    let params = counter::PutParams { key: "k".into(), value: 7, adder: adder.clone() };
    counter.put(&params).handle(&adder).await.unwrap();
    assert_eq!(counter.get(&counter::GetParams { key: "k".into() }).await.unwrap().value, 12);
}

#[tokio::test]
async fn retained_handles_live_until_released() {
    let state = Arc::new(TestCounter::default());
    let (host, _plugin) =
        pair(Router::new(), Router::new().interface(CounterServer::from_arc(state.clone())));
    let adder = host.serve_handle(AdderServer::new(TestAdder));
    let params = counter::PutParams { key: "retain".into(), value: 1, adder: adder.clone() };
    CounterClient::new(host.clone()).put(&params).handle(&adder).await.unwrap();
    assert!(host.serves_handle(&adder));
    let kept = state.kept.lock().unwrap().take().unwrap();
    assert_eq!(kept.sum(&counter::SumParams { a: 2, b: 3 }).await.unwrap().result, 5);
    tether::Client::remote(&kept).release().unwrap();
    for _ in 0..100 {
        if !host.serves_handle(&adder) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!host.serves_handle(&adder));
    let err = kept.sum(&counter::SumParams { a: 2, b: 3 }).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32003);
    let err = tether::Client::remote(&kept).retain().await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32003);
}

#[tokio::test]
async fn handle_methods_are_checked() {
    let (host, plugin) = pair(Router::new(), Router::new());
    let adder = host.serve_handle(AdderServer::new(TestAdder));
    let err = plugin.invoke::<_, Empty>(&adder, "product", &Empty {}).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32601);
    let err = plugin.invoke::<_, Empty>(&adder, "sum", &Empty {}).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32602);
    let _ = Handled::err(tether::spec::ErrorObject::cancelled());
}

#[tokio::test]
async fn large_values_in_memory() {
    let (a, _b) = pair(Router::new(), kv_router());
    let kv = KvClient::new(a);
    let value: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let put = kv::PutParams { key: "big".into(), value: value.clone().into() };
    tokio::time::timeout(Duration::from_secs(20), kv.put(&put)).await.unwrap().unwrap();
    let got =
        tokio::time::timeout(Duration::from_secs(20), kv.get(&kv::KeyParams { key: "big".into() })).await;
    assert!(got.unwrap().unwrap().value[..] == value[..]);
}

/// An interface declared outside the `tether` crate, with a method added in version 3.
#[allow(unreachable_pub)]
mod greeter {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct Name {
        pub name: String,
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct Greeting {
        pub text: String,
    }

    /// Says hello.
    #[tether::interface(name = "greeter", versions = [1, 3])]
    pub trait Greeter {
        /// Greets.
        async fn hello(&self, params: Name) -> Result<Greeting, tether::Error>;
        /// Greets loudly, and tells the request id.
        #[since(3)]
        async fn shout(&self, params: Name, cx: tether::RequestContext) -> Result<Greeting, tether::Error>;
    }
}

struct English;

impl greeter::Greeter for English {
    async fn hello(&self, p: greeter::Name) -> Result<greeter::Greeting, Error> {
        Ok(greeter::Greeting { text: format!("hello {}", p.name) })
    }
    async fn shout(&self, p: greeter::Name, cx: RequestContext) -> Result<greeter::Greeting, Error> {
        Ok(greeter::Greeting { text: format!("HELLO {} ({})", p.name.to_uppercase(), cx.id()) })
    }
}

#[tokio::test]
async fn interfaces_declared_anywhere() {
    use tether::InterfaceServer as _;
    let server = greeter::GreeterServer::new(English);
    assert_eq!((server.name(), server.versions()), ("greeter", &[1, 3][..]));
    assert_eq!(server.methods(1).keys().collect::<Vec<_>>(), ["hello"]);
    assert_eq!(server.methods(3).keys().collect::<Vec<_>>(), ["hello", "shout"]);
    assert_eq!(server.methods(3)["shout"].result["properties"]["text"]["type"], "string");
    let (host, _plugin) = pair(Router::new(), Router::new().interface(server));
    let client = greeter::GreeterClient::new(host);
    let name = greeter::Name { name: "ann".into() };
    assert_eq!(client.hello(&name).await.unwrap().text, "hello ann");
    assert_eq!(client.shout(&name).await.unwrap().text, "HELLO ANN (2)");
}

method!(Relay, "t.relay", Empty, Empty);

#[tokio::test]
async fn a_failed_callback_is_not_mistaken_for_the_callers_own_error() {
    // The plugin's handler calls back into the host; the host knows neither method.
    let relay = |method: &'static str| {
        Router::new().route::<Relay, _, _>(move |_: Empty, cx: RequestContext| async move {
            cx.peer().call_raw(method, serde_json::value::to_raw_value(&Empty {})?).await?;
            Ok(Empty {})
        })
    };
    let (host, _plugin) = pair(Router::new(), relay("t.unknown"));
    let err = host.call::<Relay>(&Empty {}).await.unwrap_err();
    let remote = err.remote().unwrap();
    // A protocol error of the callback (-32601) becomes -32603 with the cause in data (SPEC.md
    // §9.3): the caller must not read it as "t.relay does not exist".
    assert_eq!(remote.code, tether::spec::codes::INTERNAL_ERROR);
    assert_eq!(remote.data.as_ref().unwrap()["cause"]["code"], -32601);

    // An application error of the other side passes through unchanged.
    let (host, _plugin) = pair(
        kv_router(),
        Router::new().route::<Relay, _, _>(|_: Empty, cx: RequestContext| async move {
            KvClient::new(cx.peer().clone()).get(&kv::KeyParams { key: "nope".into() }).await?;
            Ok(Empty {})
        }),
    );
    let err = host.call::<Relay>(&Empty {}).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, 1001);
}

method!(Big, "test.big", Empty, BigAnswer);

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct BigAnswer {
    text: String,
}

// With the clock paused, a sleep ends only once every task is idle (tokio advances a paused
// clock only then): the sleep below is a barrier that waits until the connection has read and
// handled all it will, however slow the machine, not a guess at how long that takes.
#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_our_answers_stops_us_reading_its_requests() {
    const ANSWER: usize = 256 * 1024;
    const LIMIT: usize = 1 << 20;
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let router = Router::new().route::<Big, _, _>({
        let handled = handled.clone();
        move |_, _| {
            handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(BigAnswer { text: "x".repeat(ANSWER) }) }
        }
    });
    let (_peer, mut wire) = Wire::connect(Options::new().max_write_backlog(LIMIT), router);
    // 200 requests of ~50 bytes fit in the pipe's 64 KiB whether or not they are read; their
    // answers (50 MiB) are never read until all were sent.
    for id in 0..200 {
        wire.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"test.big"}}"#)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Everything is idle now. The pipe holds 64 KiB of answers and the backlog at most LIMIT
    // plus one answer: the connection stopped reading after a handful of requests. Without the
    // bound it would have read and handled all 200 before going idle.
    let stopped_at = handled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(stopped_at <= (LIMIT + (64 << 10)) / ANSWER + 2, "{stopped_at} requests were read");
    // Reading the answers lets it read the rest: every request is answered.
    let mut answered = 0;
    while answered < 200 {
        let body = wire.recv().await;
        assert!(body.contains(r#""result":{"text":"xxxx"#), "{}", &body[..body.len().min(200)]);
        answered += 1;
    }
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 200);
}
