//! Hand-over in the connection (`tether-core`): a session detached from one `Session` and
//! resumed by another over the same streams, as a host hands a plugin to its successor. The
//! other side is a raw wire, so that the exact bytes and ids are seen.

// Test code: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Wire;
use serde_json::value::RawValue;
use tether::spec::Empty;
use tether::{Handled, Options, Peer, RequestContext, Service, Session};
use tether_core::{CallError, Resume, HANDED_OVER};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

/// Answers every request with `{}`.
struct Answers;

impl Service for Answers {
    fn request(&self, _method: &str, _params: Box<RawValue>, _cx: RequestContext) -> Handled {
        Handled::ok(&Empty {})
    }
}

/// A host-side session (`a`) and the wire that plays the plugin.
fn connect() -> (Peer, Wire) {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    (Session::start(xr, xw, Options::new(), Answers).into_peer(), Wire::new(yr, yw))
}

fn call(peer: &Peer, method: &'static str) -> tokio::task::JoinHandle<Result<serde_json::Value, CallError>> {
    let call = peer.call_as::<_, serde_json::Value>(method, &Empty {});
    tokio::spawn(async move { call.await })
}

#[tokio::test]
async fn a_resumed_session_reads_the_half_frame_the_old_one_had_read_and_goes_on_with_its_ids() {
    let (a, mut wire) = connect();
    let first = call(&a, "x.first");
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":1,"method":"x.first","params":{}}"#);
    wire.send(r#"{"jsonrpc":"2.0","id":1,"result":{"n":1}}"#).await;
    assert_eq!(first.await.unwrap().unwrap(), serde_json::json!({"n": 1}));

    // One write: a whole request, then the first half of the next one. The answer to the whole
    // one shows that the old reader has read the write, half frame included.
    let next = br#"{"jsonrpc":"2.0","id":7,"method":"tether/ping"}"#;
    let mut frame = bytes::BytesMut::new();
    tether::spec::encode_frame(br#"{"jsonrpc":"2.0","id":6,"method":"tether/ping"}"#, &mut frame);
    let whole = frame.len();
    tether::spec::encode_frame(next, &mut frame);
    let (head, rest) = frame.split_at(whole + 30);
    wire.send_bytes(head).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":6,"result":{}}"#);

    let detached = a.detach(Duration::from_secs(5)).await.expect("detach");
    assert_eq!(detached.unread, &head[whole..]);
    assert_eq!((detached.next_id, detached.abandoned_calls, detached.abandoned_requests), (2, 0, 0));
    assert!(a.is_closed());
    let after = a.call_as::<_, serde_json::Value>("x.late", &Empty {}).await.expect_err("handed over");
    assert!(after.to_string().contains(HANDED_OVER), "{after}");

    let reader = *detached.reader.downcast::<ReadHalf<DuplexStream>>().expect("reader type");
    let writer = *detached.writer.downcast::<WriteHalf<DuplexStream>>().expect("writer type");
    let state =
        Resume { next_id: detached.next_id, unread: detached.unread, host: true, ..Resume::default() };
    let b = Session::resume(reader, writer, Options::new(), Answers, state).into_peer();
    wire.send_bytes(rest).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
    let second = call(&b, "x.second");
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"method":"x.second","params":{}}"#);
    wire.send(r#"{"jsonrpc":"2.0","id":2,"result":{"n":2}}"#).await;
    assert_eq!(second.await.unwrap().unwrap(), serde_json::json!({"n": 2}));
}

#[tokio::test]
async fn calls_answered_before_the_deadline_complete_and_the_others_fail_as_handed_over() {
    let (a, mut wire) = connect();
    let answered = call(&a, "x.answered");
    let unanswered = call(&a, "x.unanswered");
    let mut ids = vec![wire.recv().await, wire.recv().await];
    ids.sort();
    assert!(ids[0].contains(r#""id":1,"#) && ids[1].contains(r#""id":2,"#), "{ids:?}");
    let detaching = {
        let a = a.clone();
        tokio::spawn(async move { a.detach(Duration::from_millis(500)).await })
    };
    // The answer to one call comes while the hand-over waits for it.
    let answered_id = if ids[0].contains("x.answered") { 1 } else { 2 };
    wire.send(&format!(r#"{{"jsonrpc":"2.0","id":{answered_id},"result":{{}}}}"#)).await;
    assert_eq!(answered.await.unwrap().unwrap(), serde_json::json!({}));
    let detached = detaching.await.unwrap().expect("detach");
    assert_eq!(detached.abandoned_calls, 1);
    let failed = unanswered.await.unwrap().expect_err("abandoned");
    match &failed {
        CallError::Closed(reason) => assert_eq!(&*reason.message, HANDED_OVER),
        other => panic!("{other:?}"),
    }
    assert!(wire.silent_for(50).await, "nothing else was written");
}
