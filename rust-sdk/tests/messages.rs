//! The connection's message-level transport (`Session::start_messages`), two sessions linked in
//! memory with no codec and no tasks between them: a handler that does not wait is answered on
//! the caller's thread within the first poll of the call; one that waits answers later from its
//! task; callbacks nest; cancellation, panics, oversized messages and the end of input behave as
//! on a pipe.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use common::MemKv;
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use tether::interfaces::{
    Adder, AdderClient, AdderServer, Counter, CounterClient, CounterServer, KvClient, KvServer,
};
use tether::spec::interfaces::{counter, kv};
use tether::spec::{Empty, RequestMethod};
use tether::{
    CallError, CloseKind, Error, MessageInput, MessageSink, Options, Peer, RequestContext, Router, Session,
};
use tokio::sync::{mpsc, Notify};

/// Hands each message to the other session's input, on the sending thread; counts them.
struct Link {
    to: Arc<OnceLock<MessageInput>>,
    sent: Arc<Mutex<Vec<String>>>,
}

impl MessageSink for Link {
    fn send(&self, body: &[u8], attachments: &[bytes::Bytes]) -> bool {
        self.sent.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
        match self.to.get() {
            Some(input) => {
                input.deliver(body, attachments.to_vec());
                true
            }
            None => false,
        }
    }

    fn end(&self) {
        if let Some(input) = self.to.get() {
            input.end();
        }
    }
}

/// Two sessions linked at message level; the messages `a` sent, as text.
fn linked(oa: Options, a: Router, ob: Options, b: Router) -> (Peer, Peer, Arc<Mutex<Vec<String>>>) {
    let (to_a, to_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let (sa, ia) = Session::start_messages(Link { to: to_b.clone(), sent: sent.clone() }, oa, a);
    let (sb, ib) =
        Session::start_messages(Link { to: to_a.clone(), sent: Arc::new(Mutex::new(Vec::new())) }, ob, b);
    let _ = to_a.set(ia);
    let _ = to_b.set(ib);
    (sa.into_peer(), sb.into_peer(), sent)
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

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Thread {
    id: String,
}

method!(WhereAmI, "t.where", Empty, Thread);
method!(Wait, "t.wait", Empty, Empty);
method!(Boom, "t.boom", Empty, Empty);

/// A router whose `t.wait` handler waits until `release` is notified.
fn waits_for(release: Arc<Notify>) -> Router {
    Router::new().route::<Wait, _, _>(move |_, _| {
        let waiting = release.clone();
        async move {
            waiting.notified().await;
            Ok(Empty {})
        }
    })
}

fn thread_name(id: ThreadId) -> String {
    format!("{id:?}")
}

#[tokio::test]
async fn a_handler_that_does_not_wait_is_answered_on_the_callers_thread_within_the_first_poll() {
    let b = Router::new().interface(KvServer::new(MemKv::default())).route::<WhereAmI, _, _>(|_, _| async {
        Ok(Thread { id: thread_name(std::thread::current().id()) })
    });
    let (a, _b, sent) = linked(Options::new(), Router::new(), Options::new(), b);
    let store = KvClient::new(a.clone());
    let put = store.put(&kv::PutParams { key: "k".into(), value: "v".into() }).into_future().now_or_never();
    assert!(matches!(put, Some(Ok(_))), "{put:?}");
    let got = store.get(&kv::KeyParams { key: "k".into() }).into_future().now_or_never();
    assert_eq!(&got.expect("answered within the first poll").expect("get").value[..], b"v");
    let here = a.call::<WhereAmI>(&Empty {}).into_future().now_or_never();
    assert_eq!(here.expect("answered").expect("where").id, thread_name(std::thread::current().id()));
    // One whole JSON-RPC message per send: no framing.
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent.first().map(String::as_str),
        Some(r#"{"jsonrpc":"2.0","id":1,"method":"kv.put","params":{"key":"k","value":"dg=="}}"#)
    );
    assert!(sent.iter().all(|m| !m.contains("Content-Length")), "{sent:?}");
}

#[tokio::test]
async fn a_handler_that_waits_answers_later_from_its_task() {
    let release = Arc::new(Notify::new());
    let b = waits_for(release.clone());
    let (a, _b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    let mut call = a.call::<Wait>(&Empty {}).into_future();
    assert!((&mut call).now_or_never().is_none(), "the handler waits: no answer within the first poll");
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(30), call).await.expect("in time").expect("answered later");
}

struct HostAdder;

impl Adder for HostAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, Error> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[derive(Default)]
struct Counters(Mutex<i64>);

impl Counter for Counters {
    async fn put(&self, p: counter::PutParams, cx: RequestContext) -> Result<Empty, Error> {
        let a = *self.0.lock().unwrap();
        let sum = cx.client::<AdderClient>(p.adder).sum(&counter::SumParams { a, b: p.value }).await?;
        *self.0.lock().unwrap() = sum.result;
        Ok(Empty {})
    }

    async fn get(&self, _: counter::GetParams) -> Result<counter::GetResult, Error> {
        Ok(counter::GetResult { value: *self.0.lock().unwrap() })
    }
}

#[tokio::test]
async fn a_callback_made_by_a_handler_nests_and_is_answered_inline() {
    let b = Router::new().interface(CounterServer::new(Counters::default()));
    let (a, _b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    let counters = CounterClient::new(a.clone());
    for value in [2, 3] {
        let adder = a.serve_handle(AdderServer::new(HostAdder));
        let put = counter::PutParams { key: "n".into(), value, adder: adder.clone() };
        let done = counters.put(&put).handle(&adder).into_future().now_or_never();
        assert!(matches!(done, Some(Ok(_))), "{done:?}");
    }
    let total = counters.get(&counter::GetParams { key: "n".into() }).into_future().now_or_never();
    assert_eq!(total.expect("answered").expect("get").value, 5);
}

#[tokio::test]
async fn a_caller_that_stops_waiting_cancels_the_handler() {
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let b = Router::new().route::<Wait, _, _>(move |_, cx: RequestContext| {
        let dropped_tx = dropped_tx.clone();
        async move {
            cx.token().cancelled().await;
            let _ = dropped_tx.send("cancelled");
            Ok(Empty {})
        }
    });
    let (a, _b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    let error = a.call::<Wait>(&Empty {}).timeout(Duration::from_millis(50)).await.expect_err("times out");
    assert!(matches!(error, CallError::Timeout(_)), "{error:?}");
    let seen = tokio::time::timeout(Duration::from_secs(30), dropped.recv()).await.expect("in time");
    assert_eq!(seen, Some("cancelled"));
}

#[tokio::test]
async fn a_panicking_handler_is_an_error_answer_on_the_first_poll() {
    let b = Router::new().route::<Boom, _, _>(|_, _| async {
        assert!(std::hint::black_box(false), "boom in a handler");
        Ok(Empty {})
    });
    let (a, _b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    let answer = a.call::<Boom>(&Empty {}).into_future().now_or_never().expect("answered");
    let error = answer.expect_err("a panic");
    let remote = error.remote().expect("an error answer");
    assert_eq!(remote.code, tether::spec::codes::INTERNAL_ERROR);
    assert!(remote.message.contains("boom in a handler"), "{remote:?}");
}

#[tokio::test]
async fn an_oversized_message_is_answered_as_an_oversized_frame() {
    let small = Options::new().max_frame_size(tether::spec::MIN_MAX_FRAME_SIZE);
    let b = Router::new().interface(KvServer::new(MemKv::default()));
    // `a` may send what `b` may not receive.
    let (a, _b, _) = linked(Options::new(), Router::new(), small, b);
    let value = vec![b'x'; 2 * tether::spec::MIN_MAX_FRAME_SIZE];
    let answer = KvClient::new(a).put(&kv::PutParams { key: "k".into(), value: value.into() }).await;
    let error = answer.expect_err("too large");
    assert_eq!(error.remote().map(|e| e.code), Some(tether::spec::codes::FRAME_TOO_LARGE), "{error:?}");
}

#[tokio::test]
async fn the_end_of_input_closes_the_other_session_and_fails_its_calls() {
    let release = Arc::new(Notify::new());
    let b = waits_for(release.clone());
    let (a, b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    let pending = tokio::spawn({
        let a = a.clone();
        async move { a.call::<Wait>(&Empty {}).await }
    });
    // Wait until `b` runs the handler, so that the call is in flight on both sides.
    while b.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // `b` ends: as on a pipe, the handler it cancels answers -32800 (sent before the end), then
    // its sink is ended and `a` sees the end of its input.
    b.close("b is done");
    let reason = tokio::time::timeout(Duration::from_secs(30), a.closed()).await.expect("a closes");
    assert_eq!(reason.kind, CloseKind::EndOfInput, "{reason:?}");
    let error = pending.await.expect("joined").expect_err("cancelled");
    assert_eq!(error.remote().map(|e| e.code), Some(tether::spec::codes::REQUEST_CANCELLED), "{error:?}");
    let after = a.call::<Wait>(&Empty {}).await.expect_err("a is closed");
    assert!(after.close_reason().is_some(), "{after:?}");
}

#[tokio::test]
async fn a_session_of_whole_messages_refuses_a_hand_over_at_once_and_goes_on() {
    let b = Router::new().interface(KvServer::new(MemKv::default()));
    let (a, _b, _) = linked(Options::new(), Router::new(), Options::new(), b);
    // No reader or writer task exists to give a stream back: refused without waiting.
    let refused = a.detach(Duration::from_secs(3600)).now_or_never().expect("refused at once");
    assert_eq!(refused.err(), Some(tether::DetachError::NoStreams));
    let store = KvClient::new(a);
    store.put(&kv::PutParams { key: "k".into(), value: "v".into() }).await.expect("still serving");
}
