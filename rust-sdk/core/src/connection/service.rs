//! What answers the other side: the [`Service`] trait, the [`Handled`] form of an answer, and
//! the [`RequestContext`] a handler gets.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{ErrorObject, HandleRef, Id};
use tokio_util::sync::CancellationToken;

use super::peer::Peer;

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
