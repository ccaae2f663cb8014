//! What answers the other side: the [`Service`] trait, the [`Handled`] form of an answer, and
//! the [`RequestContext`] a handler gets.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{ErrorObject, HandleRef, Id, ProgressParams};
use tokio_util::sync::CancellationToken;

use super::peer::Peer;
use crate::trace::SpanContext;

/// What a request handler answers: the result object, already encoded, or an error.
pub type Reply = Result<Box<RawValue>, ErrorObject>;

/// A boxed, `Send` future of a [`Reply`].
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// How a [`Service`] handles a request: at once (no task is spawned), or later in its own task.
pub enum Handled {
    /// The answer is known now (lifecycle requests, errors, synchronous handlers).
    Now(Reply),
    /// The answer comes from a future, run in its own task, cancelled by `$/cancelRequest`.
    Later(ReplyFuture),
}

impl Handled {
    /// An immediate result, serialized.
    pub fn ok<T: Serialize>(result: &T) -> Self {
        Handled::Now(super::scope::encode_result(result).map_err(ErrorObject::internal))
    }

    /// An immediate error.
    pub fn err(error: ErrorObject) -> Self {
        Handled::Now(Err(error))
    }

    /// A handler future.
    pub fn later(future: impl Future<Output = Reply> + Send + 'static) -> Self {
        Handled::Later(Box::pin(future))
    }
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handled::Now(reply) => f.debug_tuple("Now").field(reply).finish(),
            Handled::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// What serves the requests and notifications that reach one side of a connection.
///
/// The connection itself handles `$/cancelRequest` and the broker (`tether/invoke`,
/// `tether/retain`, `$/release`, SPEC.md §6); everything else comes here. [`crate::Router`] is a
/// ready-made implementation; the plugin SDK's `tether::Plugin` is another.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. Called on the reader task: it must not block, and should return
    /// [`Handled::Later`] for anything that waits.
    fn request(&self, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled;

    /// Handles one notification other than `$/cancelRequest` and `$/release` (for example
    /// `$/log` on a host). Called on the reader task: it must not block. Ignored by default.
    fn notification(&self, method: &str, params: Box<RawValue>, peer: &Peer) {
        let _ = (method, params, peer);
    }

    /// Called for every request before anything else (built-in broker requests included): an
    /// error stops the request there (for example -32002 before `tether/initialize`).
    fn gate(&self, method: &str) -> Option<ErrorObject> {
        let _ = method;
        None
    }
}

/// What a handler knows about the request it serves.
#[derive(Clone)]
pub struct RequestContext {
    pub(super) id: Id,
    pub(super) peer: Peer,
    /// The attachments of the request's frame (SPEC.md §2.8); `None` for a frame without any,
    /// so that a plain request allocates nothing for them.
    pub(super) attachments: Option<std::sync::Arc<[bytes::Bytes]>>,
    /// The caller's progress token and what was reported so far (SPEC.md §14); `None` when the
    /// caller asked for no progress.
    pub(super) progress: Option<Arc<Reported>>,
    /// The span this request is handled in, a child of the caller's (SPEC.md §15).
    pub(super) span: Option<Arc<SpanContext>>,
}

/// The progress a handler reported so far, so that `done` never goes back (SPEC.md §14.2.2).
#[derive(Debug)]
pub(super) struct Reported {
    pub(super) token: Id,
    /// The last `done` and `total` sent.
    pub(super) last: Mutex<(u64, Option<u64>)>,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RequestContext {
    /// The request's id.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// Decodes the request's raw params (for a raw handler that decodes them later, on another
    /// task): `{"$bytes": i}` resolve to the frame's attachments and stream fields to their
    /// ends, as they do for typed handlers, which decode while the request is read.
    pub fn decode<T: serde::de::DeserializeOwned>(&self, params: &RawValue) -> Result<T, ErrorObject> {
        super::scope::decode(&self.peer.shared, params.get(), self.attachments.as_deref().unwrap_or_default())
            .map_err(ErrorObject::invalid_params)
    }

    /// Whether the caller asked for progress (SPEC.md §14): [`RequestContext::progress`] sends
    /// nothing otherwise, so a handler may skip the work of measuring it.
    pub fn wants_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// Reports how far the request has come: `done` units of `total` (when known), with an
    /// optional human `message`, as `$/progress` to the caller (SPEC.md §14.2). Does nothing
    /// when the caller gave no progress token or once the request was answered or cancelled.
    /// `done` never goes back and never passes `total`: a smaller `done` is sent as the last
    /// one, a larger one as `total`; the first `total` given is kept. Returns whether a
    /// notification was queued.
    pub fn progress(&self, done: u64, total: Option<u64>, message: Option<&str>) -> bool {
        let Some(reported) = &self.progress else { return false };
        if self.is_cancelled() {
            return false;
        }
        let params = {
            let mut last = reported.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let total = last.1.or(total);
            let done = done.max(last.0).min(total.unwrap_or(u64::MAX));
            *last = (done, total);
            ProgressParams {
                token: reported.token.clone(),
                message: message.map(str::to_owned),
                done: Some(done),
                total,
            }
        };
        self.peer.notify::<tether_spec::Progress>(&params).is_ok()
    }

    /// The span this request is handled in (SPEC.md §15): a child of the caller's span (the
    /// same trace id, a new span id, the caller's span id as parent) when the request carried
    /// a valid `traceparent`; `None` otherwise. Calls the handler makes run in it.
    pub fn span(&self) -> Option<&SpanContext> {
        self.span.as_deref()
    }

    /// The session, tied to this request: calls made through it are cancelled with it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The request's cancellation token: fired by `$/cancelRequest`, or when the session ends.
    pub fn token(&self) -> &CancellationToken {
        // A context's peer always has a parent token; the fallback is the session's.
        self.peer.request_token()
    }

    /// Whether the request was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token().is_cancelled()
    }

    /// A typed client for a handle the other side passed in this request's params:
    /// `cx.client::<AdderClient>(params.adder).sum(&p).await`.
    pub fn client<C: crate::Client>(&self, handle: HandleRef) -> C {
        C::from_remote(crate::Remote::handle(self.peer.clone(), handle))
    }
}
