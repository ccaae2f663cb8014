//! The message-level transport: a session whose outgoing messages go, whole and at once, to a
//! [`MessageSink`] on the thread that sends them, and whose incoming messages are dispatched by
//! [`MessageInput::deliver`] on the thread that hands them over. No frames, no codec, no reader
//! or writer task: what an in-process plugin uses (`rust-host/IN_PROCESS.md`).
//!
//! With both sides of a link on this transport, a call whose handler completes on its first
//! poll is answered before the caller's `send` returns: the request is handed to the other
//! side's input on the caller's thread, its handler is polled there (the connection polls
//! every handler once inline), its answer is handed back through the other side's sink to this
//! side's input, still on that thread, and completes the pending call. The caller's future then
//! finds its answer ready on the same poll: no task is woken and no thread is involved. A
//! handler that waits (for a callback to the host, a timer) goes on in a task of its side's
//! runtime, and its answer comes back from that task's thread: the usual path.
//!
//! Both hooks may run on any thread, and re-entrantly (a handler that calls back across the link
//! is dispatched inside the `send` of the call that reached it): neither holds a lock of the
//! connection while it calls the sink.

use std::sync::Arc;
use std::time::Duration;

use tether_spec::{Frame, Oversized, OVERSIZED_PREFIX};

use super::envelope::Outgoing;
use super::error::{CloseKind, CloseReason};
use super::options::{Event, Options};
use super::service::Service;
use super::shared::Shared;
use super::{Peer, Session};

/// Where a message-level session's outgoing messages go (see [`Session::start_messages`]).
///
/// Called on whatever thread sends (a caller, a handler, a task of the runtime), possibly
/// re-entrantly from inside a [`MessageInput::deliver`] of the same session: an implementation
/// must not block, and must not hold a lock while it hands the message on.
pub trait MessageSink: Send + Sync + 'static {
    /// One whole JSON-RPC message: its body (`{"jsonrpc":"2.0",...}`) and the attachments its
    /// `{"$bytes": i}` stand for (SPEC.md §2.8), valid only during the call. Returns false when
    /// the other side no longer takes messages: the session then ends.
    fn send(&self, body: &[u8], attachments: &[bytes::Bytes]) -> bool;

    /// The end of this side's messages (a pipe's writer closing), once the session has ended
    /// and its last answers were sent. Called once.
    fn end(&self);
}

/// How long answers of handlers still running when the session ends are waited for before the
/// sink is ended (as the pipe writer does after the end).
const END_GRACE: Duration = Duration::from_millis(250);

/// The input of a message-level session: give it each whole message the other side sends.
/// Cheap to clone; it keeps the session's state alive, not the session.
#[derive(Clone)]
pub struct MessageInput {
    pub(super) shared: Arc<Shared>,
    /// The runtime the session was started on: handlers that wait are spawned on it, whichever
    /// thread delivers.
    pub(super) runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for MessageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageInput").finish_non_exhaustive()
    }
}

impl MessageInput {
    /// Dispatches one message on this thread: an answer completes its pending call, a request
    /// runs its handler up to its first wait (answering at once if it does not wait), a
    /// notification is handled. `body` is one JSON-RPC message, as the sink of the other side
    /// was given it; bad input is answered and reported as it is on a pipe. Messages delivered
    /// once the session has ended are dropped, as a reader stops reading.
    pub fn deliver(&self, body: &[u8], attachments: Vec<bytes::Bytes>) {
        if self.shared.token.is_cancelled() {
            return;
        }
        let _runtime = self.runtime.enter();
        let len = body.len() as u64 + attachments.iter().map(|a| a.len() as u64).sum::<u64>();
        let max = self.shared.max_frame.load(std::sync::atomic::Ordering::Relaxed);
        if len > max as u64 {
            // The same limit and the same answer as for a frame that declares too many bytes.
            let prefix = bytes::Bytes::copy_from_slice(&body[..body.len().min(OVERSIZED_PREFIX)]);
            self.shared.on_frame(Frame::Oversized(Oversized { declared: len, max, prefix }));
            return;
        }
        self.shared.on_body(body, attachments);
    }

    /// Whether the session has ended (messages delivered now are dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// The other side's messages have ended (a pipe's end of file): the session closes, or
    /// reports [`Event::EndOfInput`] when [`Options::close_on_eof`] is off.
    pub fn end(&self) {
        if self.shared.token.is_cancelled() {
            return;
        }
        let _runtime = self.runtime.enter();
        if self.shared.options.close_on_eof {
            self.shared.close(CloseReason::new(CloseKind::EndOfInput, "the input reached end of file"));
        } else {
            self.shared.event(Event::EndOfInput);
        }
    }
}

impl Session {
    /// Starts a session on the message-level transport: what it sends goes to `sink`, what it
    /// receives is given to the returned [`MessageInput`]. Must be called within a tokio
    /// runtime, which runs the handlers that wait; [`Session::join`] waits for the end of the
    /// session and for the answers of the handlers still running then (briefly), and ends the
    /// sink.
    ///
    /// Hand-over ([`Peer::detach`]) does not apply to this transport.
    pub fn start_messages(
        sink: impl MessageSink,
        options: Options,
        service: impl Service,
    ) -> (Session, MessageInput) {
        let sink: Arc<dyn MessageSink> = Arc::new(sink);
        // The queue is unused: `Shared::enqueue` hands every message to the sink.
        let (queue, _unused) = tokio::sync::mpsc::unbounded_channel();
        let shared = super::new_shared(queue, options, Arc::new(service), Some(sink.clone()));
        let runtime = tokio::runtime::Handle::current();
        let writer = tokio::spawn(end_after_close(shared.clone(), sink));
        let input = MessageInput { shared: shared.clone(), runtime };
        (Session { peer: Peer::new(shared, None), writer }, input)
    }
}

thread_local! {
    /// The buffer each thread assembles enveloped bodies in, so that a message costs no
    /// allocation. Taken out while in use: a send nested in the sink's call (a callback answered
    /// inline) finds it empty and uses a fresh one, never the outer message's.
    static BODY: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Buffers larger than this are not kept for the next message: a thread that once sent a large
/// value does not hold that much memory for good.
const KEPT_BODY: usize = 64 * 1024;

impl Shared {
    /// Hands `out` to the sink as one whole message; false when the sink refused it (the
    /// session is then closed, as after a failed write).
    pub(super) fn send_to_sink(&self, sink: &dyn MessageSink, out: Outgoing) -> bool {
        let sent = match out.complete_body() {
            Some(body) => sink.send(body, out.attachments()),
            None => {
                // `try_with`: a thread being torn down (its locals gone) still sends.
                let mut body = BODY.try_with(std::cell::Cell::take).unwrap_or_default();
                body.clear();
                out.write_enveloped(&mut body);
                let sent = sink.send(&body, out.attachments());
                if body.capacity() <= KEPT_BODY {
                    let _ = BODY.try_with(|b| b.set(body));
                }
                sent
            }
        };
        if !sent && !self.token.is_cancelled() {
            self.close(CloseReason::new(CloseKind::WriteFailed, "the other side no longer takes messages"));
        }
        sent
    }
}

/// The message-level counterpart of the writer task: once the session has ended, waits (at
/// most [`END_GRACE`]) for the answers of handlers still running, then ends the sink.
async fn end_after_close(shared: Arc<Shared>, sink: Arc<dyn MessageSink>) -> CloseReason {
    shared.token.cancelled().await;
    let deadline = tokio::time::Instant::now() + END_GRACE;
    let _watch = shared.watch_idle();
    loop {
        let idle = shared.idle.notified();
        if shared.in_flight() == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            break;
        }
    }
    sink.end();
    shared.close_reason()
}
