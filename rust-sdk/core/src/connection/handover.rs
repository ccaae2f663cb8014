//! Hand-over: [`Peer::detach`] ends a session in this process without the other side noticing
//! (quiesced, the reader stopped at a frame boundary, the writer flushed), and gives back its
//! streams and what a successor needs to go on ([`Detached`]); [`crate::Session::resume`] goes
//! on from there, in another process if the streams' file descriptors are passed on.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tether_spec::Capabilities;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::{CloseKind, CloseReason};
use super::peer::Peer;
use super::shared::lock;

/// The message of the close reason of a session that was handed over: calls made after the
/// hand-over began, and calls still unanswered at its deadline, fail with it.
pub const HANDED_OVER: &str = "the session was handed over to another process";

/// How often [`Peer::detach`] looks whether its calls were answered (an answer removes its
/// call without a signal; the wait is bounded by the hand-over time-out).
const POLL: Duration = Duration::from_millis(2);

pub(super) fn handed_over_reason() -> CloseReason {
    CloseReason::new(CloseKind::Closed, HANDED_OVER)
}

/// Why a session cannot be handed over; the session is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetachError {
    /// This side serves handles to the other side: they are objects in this process, which
    /// cannot move.
    #[error("this side serves {0} handle(s), which cannot move to another process")]
    LiveHandles(usize),
    /// Streams are open: their state (credit, buffered chunks) lives in this process.
    #[error("{0} stream(s) are open")]
    OpenStreams(usize),
    /// The session exchanges whole messages ([`crate::Session::start_messages`], an in-process
    /// plugin): it has no streams to give back, and its other side lives in this process.
    #[error("a session of whole messages (an in-process plugin) has no streams to hand over")]
    NoStreams,
    /// The session has ended.
    #[error("the session has ended: {0}")]
    Closed(String),
}

/// A session stopped for a hand-over: its two streams, given back open, and what a successor
/// needs to resume it ([`Resume`]).
pub struct Detached {
    /// The reader given to [`crate::Session::start`]; downcast it to its type.
    pub reader: Box<dyn Any + Send>,
    /// The writer given to [`crate::Session::start`], everything queued written and flushed.
    pub writer: Box<dyn Any + Send>,
    /// The bytes read from the reader and not decoded yet: the start of the next frame.
    pub unread: Vec<u8>,
    /// The next request id this side would have used.
    pub next_id: i64,
    /// The calls that were still unanswered at the deadline: they failed here with
    /// [`HANDED_OVER`]; their answers, if they come, reach the successor, which has no such
    /// call (an unknown id, reported as an event and dropped).
    pub abandoned_calls: usize,
    /// The requests of the other side whose handlers were still running at the deadline:
    /// cancelled, unanswered.
    pub abandoned_requests: usize,
}

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detached")
            .field("unread", &self.unread.len())
            .field("next_id", &self.next_id)
            .field("abandoned_calls", &self.abandoned_calls)
            .field("abandoned_requests", &self.abandoned_requests)
            .finish_non_exhaustive()
    }
}

/// What [`crate::Session::resume`] needs to go on with a session handed over by another
/// process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// The next request id ([`Detached::next_id`]).
    pub next_id: i64,
    /// The bytes already read and not decoded ([`Detached::unread`]).
    pub unread: Vec<u8>,
    /// The capabilities this side announced in `tether/initialize`.
    pub own_capabilities: Capabilities,
    /// The capabilities the other side announced.
    pub peer_capabilities: Capabilities,
    /// Whether this side is the host (it sent `tether/initialize`): stream ids are then odd.
    pub host: bool,
}

impl Peer {
    /// Stops this session so that another process can go on with it over the same streams,
    /// without the other side noticing (`tether-host`'s hand-over is built on it).
    ///
    /// Refused, with the session untouched, while this side serves handles or streams are open,
    /// and for a session of whole messages (it has no streams).
    /// Otherwise: new calls fail at once with [`HANDED_OVER`]; the calls in flight have until
    /// `timeout` to be answered; the reader then stops at a frame boundary (the bytes of a
    /// frame read in part are in [`Detached::unread`]), the handlers of the other side's
    /// requests have what is left of `timeout` to finish, the writer writes what is queued, and
    /// the session ends here with [`HANDED_OVER`] (calls still unanswered fail with it).
    pub async fn detach(&self, timeout: Duration) -> Result<Detached, DetachError> {
        let shared = &self.shared;
        if let Some(reason) = shared.reason.get() {
            return Err(DetachError::Closed(reason.message.to_string()));
        }
        if shared.sink.is_some() {
            // No reader or writer task would ever give a stream back: refuse rather than wait.
            return Err(DetachError::NoStreams);
        }
        let handles = shared.live_handles.load(Ordering::Relaxed);
        if handles > 0 {
            return Err(DetachError::LiveHandles(handles));
        }
        let streams = lock(&shared.streams).len();
        if streams > 0 {
            return Err(DetachError::OpenStreams(streams));
        }
        let deadline = Instant::now() + timeout;
        shared.detaching.store(true, Ordering::SeqCst);

        // 1. The calls in flight are answered (or the deadline passes), the reader running.
        while lock(&shared.pending).len() > 0 && Instant::now() < deadline && !shared.token.is_cancelled() {
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        // 2. The reader stops between two frames and gives its stream back.
        let (tx, rx) = oneshot::channel();
        *lock(&shared.reader_back) = Some(tx);
        shared.reader_detach.cancel();
        let (reader, unread) = tokio::select! {
            back = rx => back.map_err(|_| DetachError::Closed("the reader has stopped".into()))?,
            () = shared.token.cancelled() => return Err(DetachError::Closed(shared.close_reason().message.to_string())),
        };
        // 3. The handlers of the other side's requests finish; their answers are queued.
        let _ = tokio::time::timeout_at(deadline, self.wait_in_flight(0)).await;
        let abandoned_requests = shared.in_flight();
        // 4. The writer writes what is queued and gives its stream back.
        let (tx, rx) = oneshot::channel();
        *lock(&shared.writer_back) = Some(tx);
        shared.writer_detach.cancel();
        let writer = rx.await.map_err(|_| DetachError::Closed(shared.close_reason().message.to_string()))?;
        // 5. The session ends here: unanswered calls fail, running handlers are cancelled.
        let abandoned_calls = lock(&shared.pending).len();
        shared.close(handed_over_reason());
        Ok(Detached {
            reader,
            writer,
            unread,
            next_id: shared.next_id.load(Ordering::SeqCst),
            abandoned_calls,
            abandoned_requests,
        })
    }
}
