//! The blocking frame transport (`Session::start_blocking`, what a plugin process serves on):
//! a session over blocking Unix sockets, against an async peer and against the raw wire.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::IntoFuture as _;
use std::io::{Read as _, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::MemKv;
use tether::interfaces::{KvClient, KvServer};
use tether::spec::interfaces::kv;
use tether::{CloseKind, Options, Router, Session};

fn kv_router() -> Router {
    Router::new().interface(KvServer::new(MemKv::default()))
}

/// A writer that counts the `write` calls that reach its stream.
struct Counted {
    stream: UnixStream,
    writes: Arc<AtomicUsize>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// A session served over blocking streams, and the other end as a blocking socket.
fn blocking_kv() -> (Session, tether::InputEnd, UnixStream, Arc<AtomicUsize>) {
    let (served, other) = UnixStream::pair().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = Counted { stream: served.try_clone().unwrap(), writes: writes.clone() };
    let (session, input, end) = Session::start_blocking(served, writer, Options::new(), kv_router());
    input.spawn().unwrap();
    (session, end, other, writes)
}

#[tokio::test]
async fn calls_are_answered_over_blocking_streams() {
    let (_session, _input, other, _) = blocking_kv();
    other.set_nonblocking(true).unwrap();
    let (r, w) = tokio::net::UnixStream::from_std(other).unwrap().into_split();
    let client = KvClient::new(Session::start(r, w, Options::new(), Router::new()).into_peer());
    client.put(&kv::PutParams { key: "a".into(), value: b"1".to_vec().into() }).await.unwrap();
    let calls = (0..64).map(|_| client.get(&kv::KeyParams { key: "a".into() }).into_future());
    let got = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(calls)).await.unwrap();
    assert!(got.iter().all(|g| g.as_ref().is_ok_and(|g| &g.value[..] == b"1")), "{got:?}");
}

#[tokio::test]
async fn the_answers_to_one_read_are_written_together() {
    let (_session, _input, mut other, writes) = blocking_kv();
    let requests: String = (1..=3)
        .map(|id| {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"kv.delete","params":{{"key":"k"}}}}"#);
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        })
        .collect();
    let answers = tokio::task::spawn_blocking(move || {
        other.write_all(requests.as_bytes()).unwrap();
        let answer = |id: u32| {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"existed":false}}}}"#);
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        };
        let expected: String = (1..=3).map(answer).collect();
        let mut got = vec![0u8; expected.len()];
        other.read_exact(&mut got).unwrap();
        (String::from_utf8(got).unwrap(), expected)
    });
    let (got, expected) = tokio::time::timeout(Duration::from_secs(10), answers).await.unwrap().unwrap();
    assert_eq!(got, expected);
    // One read of the three requests (a socket pair delivers them whole): one write.
    assert_eq!(writes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_end_of_the_input_closes_the_session_and_is_told() {
    let (session, input, other, _) = blocking_kv();
    drop(other);
    let reason = tokio::time::timeout(Duration::from_secs(10), session.closed()).await.unwrap();
    assert_eq!(reason.kind, CloseKind::EndOfInput);
    assert!(input.reached_end_within(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_failed_write_closes_the_session_and_the_reader_reads_on_to_the_end() {
    let (requests, mut to_session) = std::io::pipe().unwrap();
    let (from_session, answers) = std::io::pipe().unwrap();
    let (session, reader, input) = Session::start_blocking(requests, answers, Options::new(), kv_router());
    reader.spawn().unwrap();
    // The other side stops reading, then sends a request: its answer cannot be written.
    drop(from_session);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"kv.delete","params":{"key":"k"}}"#;
    to_session.write_all(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), session.closed()).await.unwrap();
    assert_eq!(reason.kind, CloseKind::WriteFailed, "{reason}");
    // Input sent after the session closed is read and discarded, up to the end of the input.
    to_session.write_all(b"Content-Length: 2\r\n\r\n{}").unwrap();
    drop(to_session);
    assert!(input.reached_end_within(Duration::from_secs(10)).await);
}
