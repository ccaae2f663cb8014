//! [`Call`]: an outgoing call, built by a [`Peer`] and sent when awaited; and the guard that
//! sends `$/cancelRequest` when the caller stops waiting (SPEC.md §7.1).

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{CancelParams, CancelRequest, HandleRef, Id, NotificationMethod, ProgressParams};
use tokio::sync::oneshot;

use super::error::{CallError, CloseKind, CloseReason};
use super::peer::Peer;
use super::pending::Answer;
use super::progress::ProgressHook;
use super::scope::{self, Encoded};
use super::shared::{lock, Shared};
use crate::trace::SpanContext;

pub(super) fn encode_params<P: Serialize + ?Sized>(params: &P) -> Result<Box<RawValue>, CallError> {
    tether_spec::to_raw_value(params).map_err(|e| CallError::Serialize(e.to_string()))
}

/// Encodes params for a request of `shared`'s session: `Bytes` as attachments once negotiated,
/// stream fields bound to the session.
pub(super) fn encode_for<P: Serialize + ?Sized>(
    shared: &Arc<Shared>,
    params: &P,
) -> Result<Encoded, CallError> {
    scope::encode(shared, params).map_err(|e| CallError::Serialize(e.to_string()))
}

/// An outgoing call, not sent until awaited. Set a time-out or the handles it carries first.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<R> {
    peer: Peer,
    method: Cow<'static, str>,
    params: Result<Encoded, CallError>,
    timeout: Option<Duration>,
    handles: Vec<String>,
    extras: CallExtras,
    result: PhantomData<fn() -> R>,
}

/// What a call asks for besides its params: progress, an overall cap, trace context.
#[derive(Default)]
pub(super) struct CallExtras {
    /// Ask for `$/progress` and give each to this hook (SPEC.md §14).
    pub(super) progress: Option<ProgressHook>,
    /// Whether progress restarts the time-out (the default, SPEC.md §14.3).
    pub(super) keep_timeout: bool,
    /// A time-out that progress does not restart.
    pub(super) overall: Option<Duration>,
    /// The span the call is made in; the current task's ([`crate::trace::current`]) if unset.
    pub(super) span: Option<SpanContext>,
}

impl<R> fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("progress", &self.extras.progress.is_some())
            .field("overall_timeout", &self.extras.overall)
            .finish()
    }
}

impl<R> Call<R> {
    pub(super) fn new(peer: Peer, method: Cow<'static, str>, params: Result<Encoded, CallError>) -> Self {
        let timeout = peer.shared.options.default_timeout;
        Call {
            peer,
            method,
            params,
            timeout,
            handles: Vec::new(),
            extras: CallExtras::default(),
            result: PhantomData,
        }
    }

    /// Fails the call with [`CallError::Timeout`] (and sends `$/cancelRequest`) when no answer
    /// comes within `timeout`. For a call that asked for progress ([`Call::on_progress`]), the
    /// time-out measures silence: each `$/progress` restarts it (SPEC.md §14.3); see
    /// [`Call::overall_timeout`] for a bound on the whole call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Asks the other side for progress (SPEC.md §14) and calls `hook` with each `$/progress`
    /// it sends for this call, until the answer. The hook runs on the session's reader task:
    /// it must not block (send to a channel, update a progress bar). Without effect when the
    /// peer did not announce the `progress` capability. Several hooks may be given (and
    /// [`Call::watch_progress`] adds one): each is called.
    pub fn on_progress(mut self, hook: impl Fn(&ProgressParams) + Send + Sync + 'static) -> Self {
        self.extras.progress = Some(match self.extras.progress.take() {
            None => Arc::new(hook),
            // Hooks add up: each one given is called, in order.
            Some(before) => Arc::new(move |p: &ProgressParams| {
                before(p);
                hook(p);
            }),
        });
        self
    }

    /// Asks for progress as [`Call::on_progress`] does, and gives the latest `$/progress` in a
    /// `watch` channel (`None` until the first): what a progress bar polls. Memory stays bounded
    /// however fast the other side reports, since only the latest is kept.
    pub fn watch_progress(self) -> (Self, tokio::sync::watch::Receiver<Option<ProgressParams>>) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let call = self.on_progress(move |p| {
            let _ = tx.send(Some(p.clone()));
        });
        (call, rx)
    }

    /// Whether progress restarts the time-out set with [`Call::timeout`] (true by default).
    pub fn timeout_restarts_on_progress(mut self, restarts: bool) -> Self {
        self.extras.keep_timeout = !restarts;
        self
    }

    /// Fails the call with [`CallError::Timeout`] when it has not been answered within `cap`
    /// of being sent, progress or not.
    pub fn overall_timeout(mut self, cap: Duration) -> Self {
        self.extras.overall = Some(cap);
        self
    }

    /// Makes the call in span `span` (SPEC.md §15): its request carries `span`'s trace id and
    /// span id as `traceparent`. Without it, the call uses the current task's span
    /// ([`crate::trace::in_span`]), if any.
    pub fn trace(mut self, span: SpanContext) -> Self {
        self.extras.span = Some(span);
        self
    }

    /// Scopes a handle served with [`Peer::serve_handle`] to this call: it expires when the
    /// answer arrives, unless the holder retained it (SPEC.md §6.3). Handles written in the
    /// params are found and scoped without it; this is for a handle the params do not show.
    pub fn handle(mut self, handle: &HandleRef) -> Self {
        self.handles.push(handle.handle.clone());
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for Call<R> {
    type Output = Result<R, CallError>;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> Self::IntoFuture {
        CallFuture { state: CallState::Unsent(self) }
    }
}

/// An awaited [`Call`]. Its first poll sends the request on the caller's thread; a call
/// answered during that send (an in-process plugin whose handler did not wait) completes in
/// the same poll, with nothing allocated for the wait. Dropping it before the answer cancels
/// the call (`$/cancelRequest`, SPEC.md §7.1).
#[must_use = "a call does nothing until it is awaited"]
pub struct CallFuture<R> {
    state: CallState<R>,
}

enum CallState<R> {
    Unsent(Call<R>),
    Waiting { shared: Arc<Shared>, streams: Vec<u64>, wait: Waiting },
    Done,
}

/// How [`Shared::start_request`] left a call.
pub(super) enum Started {
    /// Answered (or failed) before any wait.
    Answered(Result<Answer, CallError>),
    Waiting(Waiting),
}

/// The wait for a sent call's answer.
pub(super) enum Waiting {
    /// Nothing but the answer ends it.
    Answer { rx: oneshot::Receiver<Result<Answer, CallError>>, guard: CancelGuard },
    /// A time-out, an overall cap or the parent request's cancellation may end it first.
    Bounded(Pin<Box<dyn Future<Output = Result<Answer, CallError>> + Send>>),
}

impl Waiting {
    fn poll(&mut self, cx: &mut Context<'_>, shared: &Shared) -> Poll<Result<Answer, CallError>> {
        match self {
            Waiting::Answer { rx, guard } => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(answer) => {
                    guard.disarm();
                    Poll::Ready(answer.unwrap_or_else(|_| Err(CallError::Closed(shared.close_reason()))))
                }
            },
            Waiting::Bounded(wait) => wait.as_mut().poll(cx),
        }
    }
}

impl<R> fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            CallState::Unsent(_) => "unsent",
            CallState::Waiting { .. } => "waiting",
            CallState::Done => "done",
        };
        f.debug_struct("CallFuture").field("state", &state).finish()
    }
}

impl<R: DeserializeOwned + Send + 'static> Future for CallFuture<R> {
    type Output = Result<R, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, CallState::Done) {
                CallState::Unsent(call) => {
                    let Call { peer, method, params, timeout, handles, extras, .. } = call;
                    let Encoded { json, attachments, opened } = match params {
                        Ok(params) => params,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let streams = opened.ids();
                    let shared = &peer.shared;
                    let started = shared.start_request(
                        method,
                        json,
                        attachments,
                        &opened.produced,
                        &streams,
                        handles,
                        &peer,
                        timeout,
                        extras,
                    );
                    match started {
                        Started::Answered(answer) => return Poll::Ready(finish(shared, &streams, answer)),
                        // Polled at once, below: the answer may already be there.
                        Started::Waiting(wait) => {
                            this.state = CallState::Waiting { shared: shared.clone(), streams, wait };
                        }
                    }
                }
                CallState::Waiting { shared, streams, mut wait } => {
                    return match wait.poll(cx, &shared) {
                        Poll::Ready(answer) => Poll::Ready(finish(&shared, &streams, answer)),
                        Poll::Pending => {
                            this.state = CallState::Waiting { shared, streams, wait };
                            Poll::Pending
                        }
                    };
                }
                // A future is not polled after it completed; should one be, it fails rather than
                // panics.
                CallState::Done => {
                    return Poll::Ready(Err(CallError::Closed(CloseReason::new(
                        CloseKind::Closed,
                        "this call already completed",
                    ))))
                }
            }
        }
    }
}

/// Decodes a call's answer into `R`; a failed call's streams end at both ends (SPEC.md
/// §12.4.3), and streams of the answer that `R` did not take are aborted (§12.4.4).
fn finish<R: DeserializeOwned + 'static>(
    shared: &Arc<Shared>,
    streams: &[u64],
    answer: Result<Answer, CallError>,
) -> Result<R, CallError> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            match &e {
                CallError::Remote(error) => shared.fail_streams(streams, error),
                _ => shared.fail_streams(streams, &tether_spec::ErrorObject::cancelled()),
            }
            return Err(e);
        }
    };
    let untyped = std::any::TypeId::of::<R>() == std::any::TypeId::of::<serde_json::Value>()
        || std::any::TypeId::of::<R>() == std::any::TypeId::of::<Box<RawValue>>();
    let decoded = if untyped && !answer.attachments.is_empty() {
        // A caller of untyped JSON (`call_raw`) cannot see the frame's attachments: it gets
        // them as base64, the form that is valid without them.
        scope::attachments_as_base64(answer.result.get(), &answer.attachments)
            .and_then(|json| serde_json::from_str(json.get()))
    } else {
        scope::decode_owned(shared, answer.result.get(), answer.attachments)
    }
    .map_err(|e| CallError::Deserialize(e.to_string()));
    shared.abort_unclaimed(&answer.streams, "the caller did not take the stream");
    decoded
}

/// Sends `$/cancelRequest` when a call stops waiting before its answer came.
pub(super) struct CancelGuard {
    shared: Arc<Shared>,
    id: i64,
    armed: bool,
    /// The streams the call's params opened: a cancelled call ends them (SPEC.md §12.4.3).
    streams: Vec<u64>,
}

impl CancelGuard {
    /// Armed: dropping it before [`CancelGuard::disarm`] cancels call `id`.
    pub(super) fn new(shared: Arc<Shared>, id: i64, streams: Vec<u64>) -> Self {
        CancelGuard { shared, id, armed: true, streams }
    }

    /// The answer came (or the request was never sent): nothing to cancel.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.fail_streams(&self.streams, &tether_spec::ErrorObject::cancelled());
        let waiting = lock(&self.shared.pending).abandon(self.id);
        if waiting && !self.shared.token.is_cancelled() {
            let params = CancelParams { id: Id::Int(self.id) };
            if let Ok(params) = tether_spec::to_raw_value(&params) {
                let _ = Peer::new(self.shared.clone(), None).notify_raw(CancelRequest::METHOD, &params);
            }
        }
    }
}
