//! Routing what the reader decoded: answers to the pending map, `$/cancelRequest` to the
//! request it names, the broker (`tether/invoke`, `tether/retain`, `$/release`, SPEC.md §6) to
//! the handle table, everything else to the [`Service`]. Handlers run here first (polled once
//! on the reader) and in their own task only when they wait.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt as _;
use serde_json::value::RawValue;
use tether_spec::{
    format::show_bytes, parse_message, AttributedKind, Attribution, CancelParams, CancelRequest, ErrorObject,
    Frame, HandleParams, Id, InvokeParams, Message, NotificationMethod, Outcome, Release, Request,
    RequestMethod, Response, Retain, TraceParent, SHOWN_BYTES,
};

use std::sync::Mutex;

use super::error::CallError;
use super::options::Event;
use super::peer::Peer;
use super::pending::Answer;
use super::progress::read_meta;
use super::scope::{self, ReplySlot};
use super::service::{Handled, Reply, ReplyFuture, Reported, RequestContext};
use super::shared::{lock, Shared};
use crate::trace::{self, SpanContext};

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON, so the default (`null`) is never used.
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

impl Shared {
    pub(super) fn on_frame(self: &Arc<Self>, frame: Frame) {
        match frame {
            Frame::Message(body) => self.on_body(&body, Vec::new()),
            Frame::Attached(frame) => self.on_body(&frame.body, frame.attachments),
            Frame::BadAttachments { reason, .. } => {
                // Like a body that is not JSON (SPEC.md §2.8.5).
                let error = ErrorObject::new(
                    tether_spec::codes::PARSE_ERROR,
                    format!("a frame with a malformed Tether-Attachments header: {reason}"),
                );
                let _ = self.send(Message::Response(Response::error(None, error)).to_body());
            }
            Frame::Garbage { bytes, reason } => {
                self.event(Event::Garbage { shown: show_bytes(&bytes, SHOWN_BYTES), reason });
            }
            Frame::Oversized(oversized) => {
                let attribution = oversized.attribution();
                match &attribution {
                    Some(Attribution { id, kind: AttributedKind::Request }) => {
                        let error = ErrorObject::frame_too_large(oversized.declared, oversized.max as u64);
                        self.respond(id.clone(), Err(error));
                    }
                    Some(Attribution {
                        id: Id::Int(n),
                        kind: AttributedKind::Response | AttributedKind::Unknown,
                    }) => {
                        let pending = lock(&self.pending).complete(*n);
                        if let Some(pending) = pending {
                            self.end_scopes(&pending.handles);
                            let _ = pending.answer(
                                Err(CallError::ResponseTooLarge {
                                    size: oversized.declared,
                                    max: oversized.max,
                                }),
                                &self.pending,
                            );
                        }
                    }
                    _ => {}
                }
                self.event(Event::Oversized {
                    declared: oversized.declared,
                    max: oversized.max,
                    attribution,
                });
            }
            Frame::Truncated(bytes) => {
                self.event(Event::Truncated { shown: show_bytes(&bytes, SHOWN_BYTES) });
            }
        }
    }

    pub(super) fn on_body(self: &Arc<Self>, body: &[u8], attachments: Vec<bytes::Bytes>) {
        match parse_message(body) {
            Ok(Message::Request(request)) => self.on_request(request, attachments),
            Ok(Message::Notification(n)) => self.on_notification(&n.method, n.params, &attachments),
            Ok(Message::Response(response)) => self.on_response(response, attachments),
            Err(error) => {
                if let Some(reply) = error.reply() {
                    let _ = self.send(Message::Response(reply).to_body());
                }
                self.event(Event::Invalid(error));
            }
        }
    }

    fn on_response(self: &Arc<Self>, response: Response, attachments: Vec<bytes::Bytes>) {
        let pending = match &response.id {
            Some(Id::Int(n)) => {
                self.negotiate_on_answer(*n, &response.outcome);
                lock(&self.pending).complete(*n)
            }
            _ => None,
        };
        let Some(pending) = pending else {
            if let Some(id) = response.id {
                self.event(Event::UnknownResponse(id));
            }
            return;
        };
        if !pending.handles.is_empty() {
            self.end_scopes(&pending.handles);
        }
        let outcome = match response.outcome {
            Outcome::Result(result) => match self.register_streams(&result) {
                Ok(streams) => Ok(Answer { result, attachments, streams }),
                Err(e) => Err(CallError::Deserialize(e)),
            },
            Outcome::Error(error) => Err(CallError::Remote(error)),
        };
        let undelivered = pending.answer(outcome, &self.pending);
        if let Some(Ok(answer)) = undelivered {
            // A late answer nobody waits for: its streams are aborted at once (SPEC.md §12.4.4).
            self.abort_unclaimed(&answer.streams, "the call that received the stream was abandoned");
        }
    }

    /// A host reads the answer to its `tether/initialize`: what both announced is negotiated
    /// from the next frame on (SPEC.md §2.8.3).
    fn negotiate_on_answer(&self, id: i64, outcome: &Outcome) {
        let mut initialize = lock(&self.initialize);
        let Some((init_id, own)) = initialize.as_ref() else { return };
        if *init_id != id {
            return;
        }
        if let Outcome::Result(result) = outcome {
            if let Ok(caps) = serde_json::from_str::<CapsOnly>(result.get()) {
                self.negotiated.set(own, &caps.capabilities);
            }
        }
        *initialize = None;
    }

    fn on_notification(self: &Arc<Self>, method: &str, params: Box<RawValue>, attachments: &[bytes::Bytes]) {
        if method.starts_with("$/stream.") && self.on_stream_notification(method, &params, attachments) {
            return;
        }
        match method {
            CancelRequest::METHOD => {
                if let Ok(p) = serde_json::from_str::<CancelParams>(params.get()) {
                    if let Some(token) = lock(&self.incoming).get(&p.id) {
                        token.cancel();
                    }
                }
            }
            tether_spec::Progress::METHOD => {
                // Progress for a call that waits (SPEC.md §14.2); any other is ignored.
                if let Ok(p) = serde_json::from_str::<tether_spec::ProgressParams>(params.get()) {
                    if let Id::Int(token) = p.token {
                        if let Some(sink) = lock(&self.pending).progress_of(token) {
                            sink.deliver(&p);
                        }
                    }
                }
            }
            Release::METHOD => {
                if let Ok(p) = serde_json::from_str::<HandleParams>(params.get()) {
                    let mut table = lock(&self.handles);
                    table.release(&p.handle);
                    self.live_handles.store(table.len(), Ordering::Relaxed);
                }
            }
            _ => {
                let peer = Peer::new(self.clone(), None);
                let service = self.service.clone();
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    scope::with_decoding(self, attachments, || service.notification(method, params, &peer))
                }));
            }
        }
    }

    fn on_request(self: &Arc<Self>, request: Request, attachments: Vec<bytes::Bytes>) {
        let Request { id, method, params, .. } = request;
        if !self.accepting.load(Ordering::Relaxed) {
            return self.respond(id, Err(ErrorObject::shutting_down()));
        }
        if let Some(error) = self.service.gate(&method) {
            return self.respond(id, Err(error));
        }
        let streams = match self.register_streams(&params) {
            Ok(streams) => streams,
            Err(e) => return self.respond(id, Err(ErrorObject::invalid_params(e))),
        };
        let initialize = (method == tether_spec::Initialize::METHOD).then(|| params.clone());
        // `_meta` (SPEC.md §14, §15), read only once both sides announced a feature that uses it.
        // A handle's method reads the `_meta` of its own params, in `on_invoke`.
        let (progress, span) =
            if method == tether_spec::Invoke::METHOD { (None, None) } else { self.meta_of(&params) };
        let slot = Arc::new(ReplySlot::new(self.clone()));
        let cx = RequestContext {
            id: id.clone(),
            peer: Peer::new(self.clone(), Some(slot.clone())),
            attachments: (!attachments.is_empty()).then(|| attachments.clone().into()),
            progress,
            span: span.clone(),
        };
        let handled = match method.as_str() {
            tether_spec::Invoke::METHOD => scope::with_reply_slot(&slot, || {
                scope::with_decoding(self, &attachments, || self.on_invoke(&params, cx))
            }),
            Retain::METHOD => match serde_json::from_str::<HandleParams>(params.get()) {
                Err(e) => Handled::err(ErrorObject::invalid_params(e)),
                Ok(p) => match lock(&self.handles).retain(&p.handle) {
                    true => Handled::Now(Ok(empty_object())),
                    false => Handled::err(ErrorObject::unknown_handle(&p.handle)),
                },
            },
            _ => {
                let service = &self.service;
                let call = || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        scope::with_reply_slot(&slot, || {
                            scope::with_decoding(self, &attachments, || service.request(&method, params, cx))
                        })
                    }))
                    .unwrap_or_else(|panic| Handled::err(ErrorObject::internal(panic_message(&panic))))
                };
                match &span {
                    // The handler runs in its span, so that the calls it makes carry it on.
                    Some(span) => match trace::in_span_sync((**span).clone(), call) {
                        Handled::Later(future) => {
                            Handled::Later(Box::pin(trace::scoped((**span).clone(), future)))
                        }
                        now => now,
                    },
                    None => call(),
                }
            }
        };
        if let (Some(params), Handled::Now(Ok(result))) = (&initialize, &handled) {
            // A plugin answers `tether/initialize`: what both announced is used from the next
            // frame on (SPEC.md §2.8.3), read and written.
            if let (Ok(host), Ok(own)) = (
                serde_json::from_str::<CapsOnly>(params.get()),
                serde_json::from_str::<CapsOnly>(result.get()),
            ) {
                lock(&self.streams).set_opener(tether_spec::Opener::Plugin);
                self.negotiated.set(&own.capabilities, &host.capabilities);
            }
        }
        match handled {
            Handled::Now(reply) => {
                // Answered: progress the handler may still try to send is dropped (SPEC.md
                // §14.2.1), as for a handler that finished later.
                slot.finish();
                self.finish_request(id, reply, &slot, &streams)
            }
            Handled::Later(mut future) => {
                // Most handlers finish without waiting (an in-memory store, an uncontended
                // lock): poll the future once here and answer at once, which saves the task,
                // its wake-up and the `incoming` entry (about 2k instructions per call). The
                // spawned task below polls it first thing with its own waker, so a future that
                // is not ready loses nothing by this first poll with a no-op waker. The order
                // is the task's (the future before the token, `biased`), and a panic is caught
                // the same way.
                let mut poll_cx = std::task::Context::from_waker(std::task::Waker::noop());
                self.polling.fetch_add(1, Ordering::SeqCst);
                let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    scope::with_reply_slot(&slot, || future.as_mut().poll(&mut poll_cx))
                }));
                let ready = match first {
                    Ok(std::task::Poll::Ready(reply)) => Some(reply),
                    Ok(std::task::Poll::Pending) => None,
                    Err(panic) => Some(Err(ErrorObject::internal(panic_message(&panic)))),
                };
                if let Some(reply) = ready {
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    slot.finish();
                    self.finish_request(id, reply, &slot, &streams);
                    self.polling.fetch_sub(1, Ordering::SeqCst);
                    self.wake_idle_watchers();
                    return;
                }
                let token = slot.token().clone();
                lock(&self.incoming).insert(id.clone(), token.clone());
                self.polling.fetch_sub(1, Ordering::SeqCst);
                let shared = self.clone();
                let future = InReplyScope { future, slot: slot.clone() };
                // On a reading thread that runs its handlers, there; else a tokio task.
                super::local_tasks::spawn(async move {
                    let reply = tokio::select! {
                        biased;
                        reply = AssertUnwindSafe(future).catch_unwind() => {
                            reply.unwrap_or_else(|panic| Err(ErrorObject::internal(panic_message(&panic))))
                        }
                        () = token.cancelled() => Err(ErrorObject::cancelled()),
                    };
                    // A handler that failed once its request was cancelled failed because of
                    // it (its callbacks fail when the session closes): answer -32800, as for a
                    // cancellation seen first (SPEC.md §7, §1.6).
                    let reply = match reply {
                        Err(_) if token.is_cancelled() => Err(ErrorObject::cancelled()),
                        other => other,
                    };
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    slot.finish();
                    shared.finish_request(id.clone(), reply, &slot, &streams);
                    lock(&shared.incoming).remove(&id);
                    shared.wake_idle_watchers();
                });
            }
        }
    }

    /// What a request's `_meta` asks for (SPEC.md §14, §15): a progress token (only once both
    /// sides announced `progress`) and the handler's span (a child of the caller's). Read only
    /// once both sides announced a feature that uses it.
    fn meta_of(&self, params: &RawValue) -> (Option<Arc<Reported>>, Option<Arc<SpanContext>>) {
        let meta = if self.negotiated.meta() { read_meta(params) } else { None };
        let Some(meta) = meta else { return (None, None) };
        let progress = meta
            .progress_token
            .filter(|_| self.negotiated.progress())
            .map(|token| Arc::new(Reported { token, last: Mutex::new((0, None)) }));
        let span = meta
            .traceparent
            .and_then(|t| TraceParent::parse(&t).ok())
            .map(|parent| Arc::new(SpanContext::child_of(&parent, meta.tracestate)));
        (progress, span)
    }

    fn on_invoke(&self, params: &RawValue, mut cx: RequestContext) -> Handled {
        let invoke = match serde_json::from_str::<InvokeParams>(params.get()) {
            Ok(invoke) => invoke,
            Err(e) => return Handled::err(ErrorObject::invalid_params(e)),
        };
        // A handle's method takes `_meta` in its own params (SPEC.md §14.2.4).
        (cx.progress, cx.span) = self.meta_of(&invoke.params);
        let server = lock(&self.handles).server(&invoke.handle);
        let Some(server) = server else {
            return Handled::err(ErrorObject::unknown_handle(&invoke.handle));
        };
        let version = server.versions().iter().copied().max().unwrap_or(1);
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            server.dispatch(version, &invoke.method, invoke.params, cx)
        }))
        .unwrap_or_else(|panic| Handled::err(ErrorObject::internal(panic_message(&panic))))
    }
}

impl Shared {
    /// Answers a request with what its handler's result carries, and ends its params' streams
    /// as SPEC.md §12.4 says: with the error of a failed answer (no notification), and those
    /// nobody took with an abort.
    fn finish_request(&self, id: Id, reply: Reply, slot: &ReplySlot, streams: &[u64]) {
        let (attachments, opened) = lock(&slot.out).take().unwrap_or_default();
        match &reply {
            Err(error) => self.fail_streams(streams, error),
            Ok(_) => self.abort_unclaimed(streams, "the handler did not read the stream"),
        }
        self.respond_with(id, reply, attachments, opened);
    }
}

/// The `capabilities` of initialize params or result.
#[derive(serde::Deserialize)]
struct CapsOnly {
    #[serde(default)]
    capabilities: tether_spec::Capabilities,
}

/// A handler's future polled inside its reply scope, so that the result it encodes carries its
/// attachments and streams to the answer.
struct InReplyScope {
    future: ReplyFuture,
    slot: Arc<ReplySlot>,
}

impl std::future::Future for InReplyScope {
    type Output = Reply;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Reply> {
        let this = &mut *self;
        scope::with_reply_slot(&this.slot, || this.future.as_mut().poll(cx))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("the handler panicked: {text}")
}
