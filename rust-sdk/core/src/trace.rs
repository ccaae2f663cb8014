//! Trace context across the pipe (SPEC.md §15), without a tracing backend: W3C ids generated
//! here, carried in `_meta.traceparent`, and a task-local "current span" that calls pick up.
//!
//! Plain `tracing` spans have no trace ids, so a [`SpanContext`] is the W3C identity of the
//! span a caller is in: a trace id shared by every span of one trace, and this span's own id.
//! What "child" means here, precisely: when a call is made inside [`in_span`]`(ctx, ..)` (or
//! with [`crate::Call::trace`]), its request carries `traceparent` = `ctx`'s trace id and
//! `ctx`'s span id (the parent id); the receiving side handles the request in a new
//! [`SpanContext`] with the **same trace id**, a **new span id**, and `parent_span_id` = the
//! caller's span id ([`crate::RequestContext::span`]), and calls the handler makes inside it
//! carry the handler's span id on. The plugin SDK records these three ids as fields of its
//! handler's `tracing` span, so that a log collector can join host and plugin into one trace.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tether_spec::TraceParent;

/// The W3C identity of one span: the trace it belongs to, its own id, and its parent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace id (16 bytes, never all zero) and this span's id, with the trace flags: the
    /// `traceparent` that calls made in this span send.
    pub traceparent: TraceParent,
    /// The span id of the caller's span when this span continues a remote one.
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
}

impl SpanContext {
    /// A new trace: a random trace id and span id, sampled.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_nonzero().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_nonzero().to_be_bytes());
        SpanContext {
            traceparent: TraceParent { trace_id, span_id: random_nonzero().to_be_bytes(), flags: 1 },
            parent_span_id: None,
            tracestate: None,
        }
    }

    /// A child of a remote span (what a caller sent): the same trace, a new span id.
    pub fn child_of(parent: &TraceParent, tracestate: Option<String>) -> Self {
        SpanContext {
            traceparent: TraceParent { span_id: random_nonzero().to_be_bytes(), ..*parent },
            parent_span_id: Some(parent.span_id),
            tracestate,
        }
    }

    /// A child of this span, in the same process.
    pub fn child(&self) -> Self {
        SpanContext::child_of(&self.traceparent, self.tracestate.clone())
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.traceparent.trace_id_hex()
    }

    /// This span's id as 16 hex digits.
    pub fn span_id(&self) -> String {
        self.traceparent.span_id_hex()
    }

    /// The parent span's id as 16 hex digits, when there is one.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_span_id.map(|id| TraceParent { span_id: id, ..self.traceparent }.span_id_hex())
    }
}

tokio::task_local! {
    static CURRENT: SpanContext;
}

/// Runs `future` in span `ctx`: calls it makes carry `ctx` as their parent (when the peer
/// announced `traceContext`).
pub async fn in_span<F: std::future::IntoFuture>(ctx: SpanContext, future: F) -> F::Output {
    CURRENT.scope(ctx, future.into_future()).await
}

/// Runs `f` in span `ctx` (the synchronous form of [`in_span`]).
pub fn in_span_sync<R>(ctx: SpanContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

/// `future` polled in span `ctx`.
pub(crate) fn scoped<F: std::future::Future>(
    ctx: SpanContext,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<SpanContext, F> {
    CURRENT.scope(ctx, future)
}

/// The span the current task runs in, set by [`in_span`] (or by the session for a handler
/// whose request carried a `traceparent`).
pub fn current() -> Option<SpanContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A random non-zero 64-bit number. Ids need to be unique, not secret: the standard library's
/// randomly keyed hasher over a process-wide counter gives that without a new dependency.
fn random_nonzero() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! { static KEYS: RandomState = RandomState::new(); }
    loop {
        let mut h = KEYS.with(|k| k.build_hasher());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let n = h.finish();
        if n != 0 {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_trace_and_names_its_parent() {
        let root = SpanContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_eq!(child.parent_span_id(), Some(root.span_id()));
        assert_eq!(root.parent_span_id(), None);
        assert_ne!(SpanContext::new_root().trace_id(), root.trace_id());
    }

    #[tokio::test]
    async fn the_current_span_is_scoped_to_its_future() {
        assert!(current().is_none());
        let ctx = SpanContext::new_root();
        let seen = in_span(ctx.clone(), async { current() }).await;
        assert_eq!(seen, Some(ctx));
        assert!(current().is_none());
    }
}
