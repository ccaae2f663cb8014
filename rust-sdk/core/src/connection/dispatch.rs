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
    RequestMethod, Response, Retain, SHOWN_BYTES,
};

use super::error::CallError;
use super::options::Event;
use super::peer::Peer;
use super::service::{Handled, RequestContext};
use super::shared::{lock, Shared};

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON, so the default (`null`) is never used.
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

impl Shared {
    pub(super) fn on_frame(self: &Arc<Self>, frame: Frame) {
        match frame {
            Frame::Message(body) => match parse_message(&body) {
                Ok(Message::Request(request)) => self.on_request(request),
                Ok(Message::Notification(n)) => self.on_notification(&n.method, n.params),
                Ok(Message::Response(response)) => self.on_response(response),
                Err(error) => {
                    if let Some(reply) = error.reply() {
                        let _ = self.send(Message::Response(reply).to_body());
                    }
                    self.event(Event::Invalid(error));
                }
            },
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
                            pending.answer(Err(CallError::ResponseTooLarge {
                                size: oversized.declared,
                                max: oversized.max,
                            }));
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
            // This connection never negotiates attachments, and the codec yields these only once
            // told they are (FrameCodec::set_attachments).
            Frame::Attached(_) | Frame::BadAttachments { .. } => {}
        }
    }

    fn on_response(&self, response: Response) {
        let pending = match &response.id {
            Some(Id::Int(n)) => lock(&self.pending).complete(*n),
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
        pending.answer(match response.outcome {
            Outcome::Result(result) => Ok(result),
            Outcome::Error(error) => Err(CallError::Remote(error)),
        });
    }

    fn on_notification(self: &Arc<Self>, method: &str, params: Box<RawValue>) {
        match method {
            CancelRequest::METHOD => {
                if let Ok(p) = serde_json::from_str::<CancelParams>(params.get()) {
                    if let Some(token) = lock(&self.incoming).get(&p.id) {
                        token.cancel();
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
                    service.notification(method, params, &peer)
                }));
            }
        }
    }

    fn on_request(self: &Arc<Self>, request: Request) {
        let Request { id, method, params, .. } = request;
        if !self.accepting.load(Ordering::Relaxed) {
            return self.respond(id, Err(ErrorObject::shutting_down()));
        }
        if let Some(error) = self.service.gate(&method) {
            return self.respond(id, Err(error));
        }
        let token = self.token.child_token();
        let cx = RequestContext { id: id.clone(), peer: Peer::new(self.clone(), Some(token.clone())) };
        let handled = match method.as_str() {
            tether_spec::Invoke::METHOD => self.on_invoke(&params, cx),
            Retain::METHOD => match serde_json::from_str::<HandleParams>(params.get()) {
                Err(e) => Handled::err(ErrorObject::invalid_params(e)),
                Ok(p) => match lock(&self.handles).retain(&p.handle) {
                    true => Handled::Now(Ok(empty_object())),
                    false => Handled::err(ErrorObject::unknown_handle(&p.handle)),
                },
            },
            _ => {
                let service = &self.service;
                std::panic::catch_unwind(AssertUnwindSafe(|| service.request(&method, params, cx)))
                    .unwrap_or_else(|panic| Handled::err(ErrorObject::internal(panic_message(&panic))))
            }
        };
        match handled {
            Handled::Now(reply) => self.respond(id, reply),
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
                let first = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut poll_cx)));
                let ready = match first {
                    Ok(std::task::Poll::Ready(reply)) => Some(reply),
                    Ok(std::task::Poll::Pending) => None,
                    Err(panic) => Some(Err(ErrorObject::internal(panic_message(&panic)))),
                };
                if let Some(reply) = ready {
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    token.cancel();
                    self.respond(id, reply);
                    self.polling.fetch_sub(1, Ordering::SeqCst);
                    self.idle.notify_waiters();
                    return;
                }
                lock(&self.incoming).insert(id.clone(), token.clone());
                self.polling.fetch_sub(1, Ordering::SeqCst);
                let shared = self.clone();
                tokio::spawn(async move {
                    let reply = tokio::select! {
                        biased;
                        reply = AssertUnwindSafe(future).catch_unwind() => {
                            reply.unwrap_or_else(|panic| Err(ErrorObject::internal(panic_message(&panic))))
                        }
                        () = token.cancelled() => Err(ErrorObject::cancelled()),
                    };
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    token.cancel();
                    shared.respond(id.clone(), reply);
                    lock(&shared.incoming).remove(&id);
                    shared.idle.notify_waiters();
                });
            }
        }
    }

    fn on_invoke(&self, params: &RawValue, cx: RequestContext) -> Handled {
        let invoke = match serde_json::from_str::<InvokeParams>(params.get()) {
            Ok(invoke) => invoke,
            Err(e) => return Handled::err(ErrorObject::invalid_params(e)),
        };
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

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("the handler panicked: {text}")
}
