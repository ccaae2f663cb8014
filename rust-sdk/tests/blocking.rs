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

/// A reader over a socket that another thread can interrupt: what `run_handlers_here` needs
/// (the plugin SDK's stdin reader does the same with an eventfd).
struct Interruptible {
    stream: UnixStream,
    wakes: Option<UnixStream>,
}

impl std::io::Read for Interruptible {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::event::{poll, PollFd, PollFlags};
        if let Some(wakes) = &mut self.wakes {
            let mut fds = [PollFd::new(&self.stream, PollFlags::IN), PollFd::new(&*wakes, PollFlags::IN)];
            poll(&mut fds, None)?;
            if !fds[1].revents().is_empty() {
                let _ = wakes.read(&mut [0u8; 64]);
                return Err(std::io::ErrorKind::Interrupted.into());
            }
        }
        self.stream.read(buf)
    }
}

/// Where each handler of the test router ran, and the senders of the handlers that wait for
/// the test to let them finish.
#[derive(Default)]
struct Seen {
    threads: std::sync::Mutex<Vec<Option<String>>>,
    waiting: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    released: AtomicUsize,
}

/// Dropped with the handler's future, counted in `released`.
struct Guard(Arc<Seen>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.released.fetch_add(1, Ordering::SeqCst);
    }
}

/// `t.callback` calls `echo` on the caller and answers with its result; `t.wait` waits until the
/// test sends on the sender it hands over. Both record the thread they finished on.
fn waiting_router(seen: Arc<Seen>) -> Router {
    let on_callback = seen.clone();
    Router::new()
        .route_raw("t.callback", move |params, cx| {
            let seen = on_callback.clone();
            tether::Handled::later(async move {
                let echoed =
                    cx.peer().call_raw("echo", params).await.map_err(tether::spec::ErrorObject::internal)?;
                seen.threads.lock().unwrap().push(std::thread::current().name().map(str::to_owned));
                Ok(echoed)
            })
        })
        .route_raw("t.wait", move |params, _cx| {
            let seen = seen.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            seen.waiting.lock().unwrap().push(tx);
            tether::Handled::later(async move {
                let guard = Guard(seen.clone());
                let _ = rx.await;
                seen.threads.lock().unwrap().push(std::thread::current().name().map(str::to_owned));
                drop(guard);
                Ok(params)
            })
        })
}

/// A session over blocking streams whose reader runs the handlers that wait (when `here`),
/// and an async client of it that serves `echo`.
fn waiting_session(here: bool) -> (Session, Session, tether::InputEnd, Arc<Seen>) {
    let (served, other) = UnixStream::pair().unwrap();
    let (wakes, wake_writer) = UnixStream::pair().unwrap();
    wake_writer.set_nonblocking(true).unwrap();
    let seen = Arc::new(Seen::default());
    let reader = Interruptible { stream: served.try_clone().unwrap(), wakes: here.then_some(wakes) };
    let (session, input, end) =
        Session::start_blocking(reader, served, Options::new(), waiting_router(seen.clone()));
    let input = if here { input.run_handlers_here(move || drop((&wake_writer).write(&[1]))) } else { input };
    input.spawn().unwrap();
    other.set_nonblocking(true).unwrap();
    let (r, w) = tokio::net::UnixStream::from_std(other).unwrap().into_split();
    let echo = Router::new().route_raw("echo", |params, _| tether::Handled::Now(Ok(params)));
    let client = Session::start(r, w, Options::new(), echo);
    (session, client, end, seen)
}

fn raw(json: &str) -> Box<tether::RawValue> {
    tether::RawValue::from_string(json.to_owned()).unwrap()
}

#[tokio::test]
async fn a_handler_resumed_by_its_callbacks_answer_goes_on_on_the_reading_thread() {
    for here in [false, true] {
        let (_session, client, _end, seen) = waiting_session(here);
        let answer = client.peer().call_raw("t.callback", raw(r#"{"n":1}"#));
        let answer =
            tokio::time::timeout(Duration::from_secs(10), answer.into_future()).await.unwrap().unwrap();
        assert_eq!(answer.get(), r#"{"n":1}"#);
        let threads = seen.threads.lock().unwrap().clone();
        // Without it, the handler goes on as a task of the runtime (this test's thread).
        let reader = Some("tether-reader".to_owned());
        assert_eq!(threads[0] == reader, here, "run_handlers_here: {here}, resumed on {threads:?}");
    }
}

#[tokio::test]
async fn a_handler_woken_by_another_thread_interrupts_the_reading_thread() {
    let (_session, client, _end, seen) = waiting_session(true);
    let answer = tokio::spawn(client.peer().call_raw("t.wait", raw(r#"{"w":2}"#)).into_future());
    // Released once it waits, from a thread of its own: only the reader's wake-up can run it,
    // since no more input comes.
    let sender = loop {
        if let Some(tx) = seen.waiting.lock().unwrap().pop() {
            break tx;
        }
        tokio::task::yield_now().await;
    };
    std::thread::spawn(move || sender.send(())).join().unwrap().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.get(), r#"{"w":2}"#);
    assert_eq!(seen.threads.lock().unwrap().clone(), vec![Some("tether-reader".to_owned())]);
}

#[tokio::test]
async fn handlers_still_waiting_when_the_input_ends_move_to_the_runtime() {
    let (served, mut other) = UnixStream::pair().unwrap();
    let (wakes, wake_writer) = UnixStream::pair().unwrap();
    let seen = Arc::new(Seen::default());
    let reader = Interruptible { stream: served.try_clone().unwrap(), wakes: Some(wakes) };
    let (session, input, end) =
        Session::start_blocking(reader, served, Options::new(), waiting_router(seen.clone()));
    input.run_handlers_here(move || drop((&wake_writer).write(&[1]))).spawn().unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"t.wait","params":{}}"#;
    other.write_all(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).unwrap();
    while seen.waiting.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    // The input ends: the session closes, and the runtime cancels and drops the waiting
    // handler. Left with the stopped reader, it would never be dropped.
    other.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(end.reached_end_within(Duration::from_secs(10)).await);
    tokio::time::timeout(Duration::from_secs(10), session.closed()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen.released.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the waiting handler was dropped");
    assert!(seen.threads.lock().unwrap().is_empty(), "the handler was cancelled, not resumed");
}
