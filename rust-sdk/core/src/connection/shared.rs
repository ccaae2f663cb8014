//! The state both tasks and every [`Peer`] share: the outgoing queue, the pending map, the
//! requests being served, the handle table, the write backlog and the end of the session; and
//! the two ways out, [`Shared::start_request`] (a call) and [`Shared::respond`] (an answer).

use std::any::Any;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use tether_spec::{ErrorObject, Id, Message, RequestMethod as _, Response};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::call::{CallExtras, CancelGuard, Started, Waiting};
use super::envelope::{
    int_len, plain_json_str, write_id, write_int, write_json_str, Outgoing, REQUEST_HEAD, REQUEST_METHOD,
    REQUEST_PARAMS, RESULT_HEAD, RESULT_MID,
};
use super::error::{CallError, CloseKind, CloseReason};
use super::handles::{handles_in, HandleTable};
use super::negotiated::Negotiated;
use super::options::{Event, Options};
use super::peer::Peer;
use super::pending::{Answer, PendingCalls, Sent};
use super::progress::{with_meta, ProgressSink};
use super::scope::Opened;
use super::service::{Reply, Service};
use super::streams::{Outbound, StreamTable};
use super::through::Gate;

/// What the reader gives back when it stops for a hand-over: its stream and the bytes read and
/// not decoded.
pub(super) type ReaderBack = (Box<dyn Any + Send>, Vec<u8>);

/// The maps keyed by request ids use the Fx hash: SipHash cost several hundred instructions per
/// call on them. The ids of `pending` are minted by this side; those of `incoming` come from the
/// peer, which could at worst slow down its own requests by choosing colliding ids.
pub(crate) struct Shared {
    pub(super) queue: mpsc::UnboundedSender<Outgoing>,
    pub(super) next_id: AtomicI64,
    pub(super) pending: Mutex<PendingCalls>,
    pub(super) incoming: Mutex<FxHashMap<Id, CancellationToken>>,
    /// Handlers being polled for the first time on the reader, not in `incoming` (yet): they
    /// count as running for [`Peer::in_flight`], as a spawned handler does.
    pub(super) polling: AtomicUsize,
    pub(super) idle: Notify,
    /// How many wait on `idle` ([`Shared::watch_idle`]): a finished handler wakes them only
    /// when there are some, sparing the notifier's lock on every answer.
    pub(super) idle_watchers: AtomicUsize,
    pub(super) handles: Mutex<HandleTable>,
    pub(super) max_frame: AtomicUsize,
    /// How many handles this side serves: when none, params are not searched for handles.
    pub(super) live_handles: AtomicUsize,
    pub(super) accepting: AtomicBool,
    pub(super) token: CancellationToken,
    pub(super) reason: OnceLock<CloseReason>,
    pub(super) options: Options,
    pub(super) service: Arc<dyn Service>,
    /// Bytes queued for the writer and not written yet (counted with `max_write_backlog` only).
    pub(super) backlog: AtomicUsize,
    /// Signalled by the writer when the backlog falls to the limit.
    pub(super) drained: Notify,
    /// The unfinished streams (SPEC.md §12).
    pub(crate) streams: Mutex<StreamTable>,
    /// What `tether/initialize` negotiated (attachments, streams).
    pub(crate) negotiated: Negotiated,
    /// The id of the `tether/initialize` call this side made (a host) and the capabilities it
    /// announced, until its answer is read.
    pub(super) initialize: Mutex<Option<(i64, tether_spec::Capabilities)>>,
    /// Set when the session is being handed over ([`Peer::detach`]): new calls fail.
    pub(super) detaching: AtomicBool,
    /// Asks the reader to stop at a frame boundary and give back its stream and unread bytes.
    pub(super) reader_detach: CancellationToken,
    pub(super) reader_back: Mutex<Option<oneshot::Sender<ReaderBack>>>,
    /// Asks the writer to write what is queued and give back its stream.
    pub(super) writer_detach: CancellationToken,
    pub(super) writer_back: Mutex<Option<oneshot::Sender<Box<dyn Any + Send>>>>,
    /// Where messages go on the message-level transport (`messages`): at once, on the sending
    /// thread, instead of through `queue` and the writer task.
    pub(super) sink: Option<Arc<dyn super::messages::MessageSink>>,
    /// The writer's stream while the writer task is idle, for writing through (`through`).
    pub(super) gate: Mutex<Gate>,
}

/// Locks a mutex, going on with the data when a panicking thread poisoned it (the maps stay
/// consistent: every critical section is a single insert or remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(super) fn send(&self, body: Vec<u8>) -> Result<(), CallError> {
        let max = self.max_frame.load(Ordering::Relaxed);
        if body.len() > max {
            return Err(CallError::RequestTooLarge { len: body.len(), max });
        }
        self.enqueue(Outgoing::Body(body)).map_err(|()| CallError::Closed(self.close_reason()))
    }

    /// Queues a message for the writer, counting it in the backlog when that is bounded.
    pub(super) fn enqueue(&self, out: Outgoing) -> Result<(), ()> {
        self.enqueue_through(out, || false)
    }

    /// Sends a message: written through at once when the writer task is idle and `alone` says
    /// nothing else is in flight (or collected while the reader is corked), otherwise queued
    /// for the writer (`through`). Every message goes through the gate's lock, which keeps
    /// the frames in the order they were sent.
    pub(super) fn enqueue_through(&self, out: Outgoing, alone: impl FnOnce() -> bool) -> Result<(), ()> {
        if let Some(sink) = &self.sink {
            return self.send_to_sink(sink.as_ref(), out).then_some(()).ok_or(());
        }
        let mut gate = lock(&self.gate);
        let out = match gate.offer(out, alone) {
            Ok(()) => return Ok(()),
            Err(out) => out,
        };
        if let Some(collected) = gate.hand_over() {
            self.queue_for_writer(collected)?;
        }
        self.queue_for_writer(out)
    }

    /// The reader starts decoding the frames of one read: answers given meanwhile are collected.
    pub(super) fn cork(&self) {
        if self.sink.is_none() {
            lock(&self.gate).cork();
        }
    }

    /// The reader has decoded the frames of one read: what was collected is written.
    pub(super) fn uncork(&self) {
        if self.sink.is_some() {
            return;
        }
        let mut gate = lock(&self.gate);
        if let Some(rest) = gate.uncork() {
            let _ = self.queue_for_writer(rest);
        }
    }

    /// Puts a message in the writer task's queue, counting it in the backlog when that is
    /// bounded.
    fn queue_for_writer(&self, out: Outgoing) -> Result<(), ()> {
        if self.options.max_write_backlog.is_none() {
            // Unbounded (a host): no counting on the hot path.
            return self.queue.send(out).map_err(|_| ());
        }
        let weight = out.weight();
        self.backlog.fetch_add(weight, Ordering::Relaxed);
        self.queue.send(out).map_err(|_| {
            self.backlog.fetch_sub(weight, Ordering::Relaxed);
        })
    }

    /// The writer wrote messages of `weight` bytes in all.
    pub(super) fn written(&self, weight: usize) {
        if let Some(limit) = self.options.max_write_backlog {
            let before = self.backlog.fetch_sub(weight, Ordering::Relaxed);
            if before > limit && before - weight <= limit {
                self.drained.notify_waiters();
            }
        }
    }

    /// Waits while the backlog is above its bound; false when the session closed meanwhile.
    pub(super) async fn backlog_below_limit(&self) -> bool {
        let Some(limit) = self.options.max_write_backlog else { return true };
        if self.backlog.load(Ordering::Relaxed) <= limit {
            return true;
        }
        loop {
            let drained = self.drained.notified();
            if self.backlog.load(Ordering::Relaxed) <= limit {
                return true;
            }
            tokio::select! {
                () = drained => {}
                () = self.token.cancelled() => return false,
            }
        }
    }

    /// A handler finished: wakes whoever waits for fewer requests in flight. The count is read
    /// after the handler left the counts of `in_flight` (both sequentially consistent), and a
    /// watcher counts itself before it reads them: either it sees the handler gone, or this
    /// sees it and wakes it.
    pub(super) fn wake_idle_watchers(&self) {
        if self.idle_watchers.load(Ordering::SeqCst) > 0 {
            self.idle.notify_waiters();
        }
    }

    /// Counts the caller among the watchers of `idle` while the guard lives.
    pub(super) fn watch_idle(&self) -> IdleWatch<'_> {
        self.idle_watchers.fetch_add(1, Ordering::SeqCst);
        IdleWatch(&self.idle_watchers)
    }

    pub(super) fn in_flight(&self) -> usize {
        // Read `incoming` first: a handler moves from `polling` into `incoming` before it
        // leaves `polling`, so it is never missed.
        let spawned = lock(&self.incoming).len();
        spawned + self.polling.load(Ordering::SeqCst)
    }

    pub(super) fn close_reason(&self) -> CloseReason {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| CloseReason::new(CloseKind::Closed, "the connection is closed"))
    }

    pub(super) fn event(&self, event: Event) {
        if let Some(hook) = &self.options.on_event {
            hook(&event);
        }
    }

    pub(super) fn end_scopes(&self, ids: &[String]) {
        let mut table = lock(&self.handles);
        table.end_scopes(ids);
        self.live_handles.store(table.len(), Ordering::Relaxed);
    }

    pub(super) fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
        let reason = self.close_reason();
        let drained = lock(&self.pending).drain();
        for pending in drained {
            let _ = pending.answer(Err(CallError::Closed(reason.clone())), &self.pending);
        }
        lock(&self.handles).clear();
        self.live_handles.store(0, Ordering::Relaxed);
        self.fail_all_streams();
        self.idle.notify_waiters();
    }

    /// Sends a call: everything up to the wait for its answer, on the caller's thread. A peer
    /// that answered while the request was handed over (the message-level transport, with a
    /// handler that did not wait) has its answer returned at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_request(
        self: &Arc<Self>,
        method: Cow<'static, str>,
        params: Box<RawValue>,
        attachments: Vec<bytes::Bytes>,
        opened: &[Arc<Outbound>],
        streams: &[u64],
        mut handles: Vec<String>,
        peer: &Peer,
        timeout: Option<Duration>,
        mut extras: CallExtras,
    ) -> Started {
        if self.detaching.load(Ordering::SeqCst) {
            return Started::Answered(Err(CallError::Closed(super::handover::handed_over_reason())));
        }
        let is_initialize = method == tether_spec::Initialize::METHOD;
        if self.live_handles.load(Ordering::Relaxed) > 0 {
            handles_in(&params, &mut handles);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // `_meta` (SPEC.md §14, §15) goes only into application calls, and only what the peer
        // announced it reads. The progress token is the request's id: unique among this
        // side's pending calls, as the token must be.
        let application = !method.starts_with("tether/") && !method.starts_with("$/");
        let mut meta = tether_spec::Meta::default();
        let sink = match extras.progress.take() {
            Some(hook) if application && self.negotiated.progress() => {
                meta.progress_token = Some(Id::Int(id));
                Some(ProgressSink { hook: Some(hook), pulse: Arc::new(Notify::new()) })
            }
            _ => None,
        };
        if application && self.negotiated.trace_context() {
            if let Some(span) = extras.span.take().or_else(crate::trace::current) {
                meta.traceparent = Some(span.traceparent.to_string());
                meta.tracestate = span.tracestate;
            }
        }
        let params = if meta.is_empty() { params } else { with_meta(params, &meta) };
        let pulse = sink.as_ref().filter(|_| !extras.keep_timeout).map(|s| s.pulse.clone());
        let (out, len) = if plain_json_str(&method) {
            // The writer puts the envelope around the params as it frames them: the params are
            // copied once (into the write buffer), not into a body first.
            let len = REQUEST_HEAD.len()
                + int_len(id)
                + REQUEST_METHOD.len()
                + method.len()
                + REQUEST_PARAMS.len()
                + params.get().len()
                + 1;
            (Outgoing::Request { id, method, params, attachments }, len)
        } else {
            let mut body = Vec::with_capacity(48 + method.len() + params.get().len());
            body.extend_from_slice(REQUEST_HEAD);
            write_int(&mut body, id);
            body.extend_from_slice(br#","method":"#);
            write_json_str(&mut body, &method);
            body.extend_from_slice(br#","params":"#);
            body.extend_from_slice(params.get().as_bytes());
            body.push(b'}');
            let len = body.len();
            (Outgoing::Attached { body, attachments }, len)
        };
        let len = tether_spec::frame_len(len, out.attachments());
        let max = self.max_frame.load(Ordering::Relaxed);
        if len > max as u64 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            return Started::Answered(Err(CallError::RequestTooLarge { len, max }));
        }
        if is_initialize {
            // The answer to this call decides what is negotiated, as soon as it is read.
            #[derive(serde::Deserialize)]
            struct Caps {
                #[serde(default)]
                capabilities: tether_spec::Capabilities,
            }
            if let Ok(caps) = serde_json::from_str::<Caps>(out_params(&out)) {
                lock(&self.streams).set_opener(tether_spec::Opener::Host);
                *lock(&self.initialize) = Some((id, caps.capabilities));
            }
        }
        if let Some(parent) = peer.parent_token() {
            if parent.is_cancelled() {
                return Started::Answered(Err(CallError::Cancelled));
            }
        }
        let alone = {
            let mut pending = lock(&self.pending);
            if self.token.is_cancelled() {
                return Started::Answered(Err(CallError::Closed(self.close_reason())));
            }
            if !handles.is_empty() {
                lock(&self.handles).open_scopes(&handles);
            }
            match sink {
                Some(sink) => pending.insert_with_progress(id, handles, sink),
                None => pending.insert(id, handles),
            }
            // The only call in flight: written through, as no other would batch with it.
            pending.len() == 1
        };
        if self.enqueue_through(out, || alone).is_err() {
            lock(&self.pending).forget(id);
            return Started::Answered(Err(CallError::Closed(self.close_reason())));
        }
        // The request is queued: the data of its streams may follow it (SPEC.md §12.2).
        self.activate(opened);
        // On the message-level transport, a peer whose handler did not wait has answered inside
        // `enqueue`: taken here, without a channel or the wait below.
        let rx = match lock(&self.pending).wait_for(id) {
            Sent::Answered(answer) => return Started::Answered(answer),
            Sent::Waiting(rx) => rx,
        };
        let guard = CancelGuard::new(self.clone(), id, streams.to_vec());
        if timeout.is_none() && extras.overall.is_none() && peer.parent_token().is_none() {
            // Nothing but the answer can end the wait (the common case of a host's call).
            return Started::Waiting(Waiting::Answer { rx, guard });
        }
        // Boxed: the timers and the select are the largest part of a call's wait, which a call
        // without time-out or parent does not carry (nor allocate).
        let wait = Self::wait_bounded(self.clone(), rx, guard, peer.clone(), timeout, pulse, extras.overall);
        Started::Waiting(Waiting::Bounded(Box::pin(wait)))
    }

    /// Waits for the answer of a call that a time-out, an overall cap or the cancellation of
    /// the request it is made for (`peer`'s parent) may end first.
    async fn wait_bounded(
        self: Arc<Self>,
        rx: oneshot::Receiver<Result<Answer, CallError>>,
        mut guard: CancelGuard,
        peer: Peer,
        timeout: Option<Duration>,
        pulse: Option<Arc<Notify>>,
        overall: Option<Duration>,
    ) -> Result<Answer, CallError> {
        let parent_cancelled = async {
            match peer.parent_token() {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        // The time-out measures silence when progress restarts it (SPEC.md §14.3): each
        // `$/progress` of this call wakes `pulse` and the wait starts over.
        let timed_out = async {
            let Some(t) = timeout else { return std::future::pending().await };
            loop {
                let Some(pulse) = &pulse else { return tokio::time::sleep(t).await };
                tokio::select! {
                    () = tokio::time::sleep(t) => return,
                    () = pulse.notified() => {}
                }
            }
        };
        let capped = async {
            match overall {
                Some(cap) => tokio::time::sleep(cap).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            answer = rx => {
                guard.disarm();
                answer.unwrap_or_else(|_| Err(CallError::Closed(self.close_reason())))
            }
            () = parent_cancelled => Err(CallError::Cancelled),
            () = timed_out => Err(CallError::Timeout(timeout.unwrap_or_default())),
            () = capped => Err(CallError::Timeout(overall.unwrap_or_default())),
        }
    }

    pub(super) fn respond(&self, id: Id, reply: Reply) {
        self.respond_with(id, reply, Vec::new(), Opened::default());
    }

    /// Answers with a result whose `{"$bytes": i}` stand for `attachments` and which opened the
    /// streams `opened` (activated once the answer is queued).
    pub(super) fn respond_with(&self, id: Id, reply: Reply, attachments: Vec<bytes::Bytes>, opened: Opened) {
        if let Err(error) = &reply {
            opened.fail(self, error);
        }
        let body = match (&id, reply) {
            (&Id::Int(n), Ok(result)) => {
                // The writer puts the envelope around the result as it frames it: no body is
                // built here, so the result is copied once (into the write buffer), not twice.
                let len = RESULT_HEAD.len() + int_len(n) + RESULT_MID.len() + result.get().len() + 1;
                let len = tether_spec::frame_len(len, &attachments);
                let max = self.max_frame.load(Ordering::Relaxed);
                if len <= max as u64 {
                    // Written through when this is the only request being served.
                    let _ = self.enqueue_through(Outgoing::Result { id: n, result, attachments }, || {
                        self.in_flight() <= 1
                    });
                    self.activate(&opened.produced);
                    return;
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                opened.fail(self, &ErrorObject::frame_too_large(len as u64, max as u64));
                self.answer_too_large(id, len, max);
                return;
            }
            (_, Ok(result)) => {
                let mut body = Vec::with_capacity(40 + result.get().len());
                body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
                write_id(&mut body, &id);
                body.extend_from_slice(br#","result":"#);
                body.extend_from_slice(result.get().as_bytes());
                body.push(b'}');
                if !attachments.is_empty() || !opened.produced.is_empty() {
                    let len = tether_spec::frame_len(body.len(), &attachments);
                    let max = self.max_frame.load(Ordering::Relaxed);
                    if len > max as u64 {
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        opened.fail(self, &ErrorObject::frame_too_large(len as u64, max as u64));
                        self.answer_too_large(id, len, max);
                        return;
                    }
                    let _ = self.enqueue(Outgoing::Attached { body, attachments });
                    self.activate(&opened.produced);
                    return;
                }
                body
            }
            (_, Err(error)) => Message::Response(Response::error(Some(id.clone()), error)).to_body(),
        };
        if let Err(CallError::RequestTooLarge { len, max }) = self.send(body) {
            self.answer_too_large(id, len, max);
        }
    }

    /// Answers `id` with -32004 (frame too large) and `data` `{"size", "max"}` in place of an
    /// answer of `len` bytes that the maximum frame size `max` forbids (SPEC.md §2.2), and
    /// reports it to the owner: the peer only learns the sizes, not which handler overflowed.
    fn answer_too_large(&self, id: Id, len: usize, max: usize) {
        self.event(Event::AnswerTooLarge { id: id.clone(), size: len, max });
        let error = ErrorObject::frame_too_large(len as u64, max as u64);
        let _ = self.send(Message::Response(Response::error(Some(id), error)).to_body());
    }
}

/// The params of a queued request, as text.
fn out_params(out: &Outgoing) -> &str {
    match out {
        Outgoing::Request { params, .. } => params.get(),
        // The body form is only used for methods that need escaping, never `tether/initialize`.
        _ => "{}",
    }
}

/// A watcher of [`Shared::idle`], counted while it lives.
pub(super) struct IdleWatch<'a>(&'a AtomicUsize);

impl Drop for IdleWatch<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
