//! What the two sides agreed on in `tether/initialize` (SPEC.md §10.2): attachments, streams,
//! progress and trace context,
//! with the credit each side grants. Set once, at the moment SPEC.md §2.8.3 names: a host when it
//! reads the initialize answer, a plugin when it queues its own answer; read on every frame.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tether_spec::Capabilities;

/// The negotiated features of a session; nothing is negotiated at first.
#[derive(Debug, Default)]
pub(crate) struct Negotiated {
    attachments: AtomicBool,
    streams: AtomicBool,
    /// Whether both announced `progress` (SPEC.md §14): calls may carry a progress token.
    progress: AtomicBool,
    /// Whether both announced `traceContext` (SPEC.md §15): calls may carry `traceparent`.
    trace_context: AtomicBool,
    /// The credit this side grants on each stream it consumes (its announced `initialCredit`).
    own_credit: AtomicU64,
    /// The credit the other side grants on each stream this side produces.
    peer_credit: AtomicU64,
}

impl Negotiated {
    /// Records what `own` (this side's announcement) and `peer` (the other side's) agree on.
    pub(crate) fn set(&self, own: &Capabilities, peer: &Capabilities) {
        if let (Some(o), Some(p)) = (&own.streams, &peer.streams) {
            self.own_credit.store(o.initial_credit(), Ordering::Relaxed);
            self.peer_credit.store(p.initial_credit(), Ordering::Relaxed);
            self.streams.store(true, Ordering::Release);
        }
        self.attachments.store(own.attachments_with(peer), Ordering::Release);
        self.progress.store(own.progress_with(peer), Ordering::Release);
        self.trace_context.store(own.trace_context_with(peer), Ordering::Release);
    }

    /// Whether calls may ask for `$/progress`.
    pub(crate) fn progress(&self) -> bool {
        self.progress.load(Ordering::Acquire)
    }

    /// Whether calls may carry trace context.
    pub(crate) fn trace_context(&self) -> bool {
        self.trace_context.load(Ordering::Acquire)
    }

    /// Whether requests may carry a `_meta` this side reads.
    pub(crate) fn meta(&self) -> bool {
        self.progress() || self.trace_context()
    }

    /// Whether frames are read and written with attachments.
    pub(crate) fn attachments_out(&self) -> bool {
        self.attachments.load(Ordering::Acquire)
    }

    /// Whether streams may be used.
    pub(crate) fn streams(&self) -> bool {
        self.streams.load(Ordering::Acquire)
    }

    pub(crate) fn own_credit(&self) -> u64 {
        self.own_credit.load(Ordering::Relaxed)
    }

    pub(crate) fn peer_credit(&self) -> u64 {
        self.peer_credit.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_spec::StreamsCapability;

    #[test]
    fn a_feature_is_used_only_when_both_announced_it() {
        let n = Negotiated::default();
        assert!(!n.attachments_out() && !n.streams());
        let mut host = Capabilities::all();
        host.streams = Some(StreamsCapability { initial_credit: Some(10) });
        let plugin = Capabilities::answer_to(&Capabilities { attachments: None, ..Capabilities::all() }, 99);
        n.set(&host, &plugin);
        assert!(!n.attachments_out());
        assert!(n.streams());
        assert_eq!((n.own_credit(), n.peer_credit()), (10, 99));
    }
}
