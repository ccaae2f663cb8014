//! [`Peer`]: one side's handle on a session, to make calls, send notifications, serve handles
//! and close.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{HandleParams, HandleRef, NotificationMethod, Release, RequestMethod, Retain};
use tokio_util::sync::CancellationToken;

use super::call::{encode_for, encode_params, Call};
use super::envelope::write_json_str;
use super::error::{CallError, CloseKind, CloseReason};
use super::scope::{Encoded, ReplySlot};
use super::shared::{lock, Shared};
use crate::server::InterfaceServer;

#[allow(unused_imports)] // named by the docs
use super::service::RequestContext;

/// One side's handle on a session: make calls, send notifications, serve handles, close.
///
/// Cheap to clone. A `Peer` taken from a [`RequestContext`] is tied to that request: when the
/// request is cancelled, the calls made through it are cancelled too (SPEC.md §7.2).
#[derive(Clone)]
pub struct Peer {
    pub(super) shared: Arc<Shared>,
    /// The request this peer was given to a handler for: its token ends the handler's calls.
    parent: Option<Arc<ReplySlot>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("closed", &self.shared.token.is_cancelled()).finish_non_exhaustive()
    }
}

impl Peer {
    pub(super) fn new(shared: Arc<Shared>, parent: Option<Arc<ReplySlot>>) -> Self {
        Peer { shared, parent }
    }

    /// The token of the request this peer belongs to, else the session's.
    pub(super) fn request_token(&self) -> &CancellationToken {
        self.parent.as_ref().map_or(&self.shared.token, |slot| slot.token())
    }

    /// Calls a typed method: `peer.call::<kv::Get>(&params).await`, or with a time-out,
    /// `peer.call::<kv::Get>(&params).timeout(d).await`.
    pub fn call<M: RequestMethod>(&self, params: &M::Params) -> Call<M::Result> {
        Call::new(self.clone(), Cow::Borrowed(M::METHOD), encode_for(&self.shared, params))
    }

    /// Calls a method by name with params already encoded; the result stays encoded.
    pub fn call_raw(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: Box<RawValue>,
    ) -> Call<Box<RawValue>> {
        Call::new(
            self.clone(),
            method.into(),
            Ok(Encoded { json: params, attachments: Vec::new(), opened: Default::default() }),
        )
    }

    /// Calls a method by name with any serializable params and result type.
    pub fn call_as<P: Serialize + ?Sized, R>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: &P,
    ) -> Call<R> {
        Call::new(self.clone(), method.into(), encode_for(&self.shared, params))
    }

    /// Sends a typed notification.
    pub fn notify<N: NotificationMethod>(&self, params: &N::Params) -> Result<(), CallError> {
        let params = encode_params(params)?;
        self.notify_raw(N::METHOD, &params)
    }

    /// Sends a notification with params already encoded.
    pub fn notify_raw(&self, method: &str, params: &RawValue) -> Result<(), CallError> {
        let mut body = Vec::with_capacity(40 + method.len() + params.get().len());
        body.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
        write_json_str(&mut body, method);
        body.extend_from_slice(br#","params":"#);
        body.extend_from_slice(params.get().as_bytes());
        body.push(b'}');
        self.shared.send(body)
    }

    /// Serves `server` as a handle (SPEC.md §6) and returns the reference to put in params.
    ///
    /// Put the reference in the params of a request: the handle is then scoped to that request
    /// (found in its params when it is sent) and expires when the answer arrives, unless the
    /// holder retains it (SPEC.md §6.3). A handle that no request carries lives until
    /// [`Peer::revoke_handle`] or the end of the session.
    pub fn serve_handle(&self, server: impl InterfaceServer) -> HandleRef {
        let interface = server.name().to_owned();
        let mut table = lock(&self.shared.handles);
        let id = table.serve(Arc::new(server));
        self.shared.live_handles.store(table.len(), Ordering::Relaxed);
        HandleRef::new(id, interface)
    }

    /// Stops serving a handle now.
    pub fn revoke_handle(&self, handle: &HandleRef) {
        let mut table = lock(&self.shared.handles);
        table.revoke(&handle.handle);
        self.shared.live_handles.store(table.len(), Ordering::Relaxed);
    }

    /// How much the session holds now: calls waiting, handlers running, handles, streams, bytes
    /// queued. For the connection fuzz target and tests (not an API: it may change).
    #[doc(hidden)]
    pub fn diagnostics(&self) -> super::Diagnostics {
        self.shared.diagnostics()
    }

    /// Whether this side still serves the handle (for tests and diagnostics).
    pub fn serves_handle(&self, handle: &HandleRef) -> bool {
        lock(&self.shared.handles).contains(&handle.handle)
    }

    /// Asks the owner of a handle this side received to keep it alive after the call that
    /// carried it (SPEC.md §6.3); send it before answering that call.
    pub async fn retain(&self, handle: &HandleRef) -> Result<(), CallError> {
        self.call::<Retain>(&HandleParams { handle: handle.handle.clone() }).await.map(|_| ())
    }

    /// Tells the owner this side is done with a retained handle.
    pub fn release(&self, handle: &HandleRef) -> Result<(), CallError> {
        self.notify::<Release>(&HandleParams { handle: handle.handle.clone() })
    }

    /// Calls `method` (a short name such as `sum`) on a handle the other side owns, through
    /// `tether/invoke`.
    pub fn invoke<P: Serialize + ?Sized, R>(&self, handle: &HandleRef, method: &str, params: &P) -> Call<R> {
        // The inner params are encoded in the same scope as the envelope around them, so that
        // their attachments and streams belong to the frame.
        let params = encode_for(&self.shared, &InvokeWith { handle: &handle.handle, method, params });
        Call::new(self.clone(), Cow::Borrowed(tether_spec::Invoke::METHOD), params)
    }

    /// Changes the maximum frame size for both directions (after `tether/initialize`).
    pub fn set_max_frame_size(&self, max: usize) {
        self.shared.max_frame.store(max, Ordering::Relaxed);
    }

    /// The maximum frame size in force.
    pub fn max_frame_size(&self) -> usize {
        self.shared.max_frame.load(Ordering::Relaxed)
    }

    /// Stops accepting requests: every request that arrives from now on is answered with
    /// -32005 (shutting down, SPEC.md §4.6). Requests already running go on.
    pub fn stop_accepting(&self) {
        self.shared.accepting.store(false, Ordering::Relaxed);
    }

    /// The number of incoming requests whose handlers are running.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Waits until at most `keep` incoming requests are running (a shutdown handler waits for
    /// the others with `keep = 1`).
    pub async fn wait_in_flight(&self, keep: usize) {
        let _watch = self.shared.watch_idle();
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() <= keep || self.shared.token.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Ends the session: pending calls fail with [`CallError::Closed`] and `reason`, running
    /// handlers are cancelled, the reader stops and the writer writes what is queued and closes
    /// its stream. The first reason given (or found by the reader) is kept.
    pub fn close(&self, reason: impl Into<Arc<str>>) {
        self.shared.close(CloseReason::new(CloseKind::Closed, reason));
    }

    /// Ends the session with a reason of any kind (see [`Peer::close`]).
    pub fn close_with(&self, reason: CloseReason) {
        self.shared.close(reason);
    }

    /// A [`WeakPeer`]: the same session, without keeping it alive. For whatever the session's
    /// own service holds (a log forwarder, a cache of the peer), where a `Peer` would make a
    /// cycle that keeps the session's memory after it ends.
    pub fn downgrade(&self) -> WeakPeer {
        WeakPeer { shared: Arc::downgrade(&self.shared) }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().cloned()
    }

    /// Waits for the end of the session and says why.
    pub async fn closed(&self) -> CloseReason {
        self.shared.token.cancelled().await;
        self.shared.close_reason()
    }

    /// The cancellation token of the request this peer was taken from, if any.
    pub fn parent_token(&self) -> Option<&CancellationToken> {
        self.parent.as_ref().map(|slot| slot.token())
    }

    /// The same session, not tied to any request.
    pub fn detached(&self) -> Peer {
        Peer { shared: self.shared.clone(), parent: None }
    }
}

/// `tether/invoke` params with typed inner params, written as `InvokeParams` is.
#[derive(Serialize)]
struct InvokeWith<'a, P: ?Sized> {
    handle: &'a str,
    method: &'a str,
    params: &'a P,
}

/// A [`Peer`] that does not keep its session alive ([`Peer::downgrade`]): it upgrades to a
/// `Peer` while something else still holds the session, and to `None` once it has been freed.
#[derive(Clone)]
pub struct WeakPeer {
    shared: Weak<Shared>,
}

impl fmt::Debug for WeakPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPeer").field("alive", &(self.shared.strong_count() > 0)).finish()
    }
}

impl WeakPeer {
    /// The peer, if its session has not been freed yet (it may have ended: see
    /// [`Peer::is_closed`]).
    pub fn upgrade(&self) -> Option<Peer> {
        self.shared.upgrade().map(|shared| Peer::new(shared, None))
    }
}
