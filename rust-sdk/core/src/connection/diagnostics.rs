//! [`Diagnostics`]: how much a session holds (calls waiting, handlers running, handles, streams,
//! bytes queued), for the connection fuzz target (`rust-sdk/fuzz/`) and tests, which check that
//! a session leaves nothing behind. Not an API: it may change without notice.

use std::sync::atomic::Ordering;

use super::shared::{lock, Shared};

/// A snapshot of what a session holds. Hidden from the docs: for fuzzing and tests only.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Diagnostics {
    /// Calls this side made that wait for their answer (the pending map), abandoned ones included.
    pub pending: usize,
    /// Requests of the other side whose handler runs in its own task.
    pub incoming: usize,
    /// Handlers being polled for the first time on the reader.
    pub polling: usize,
    /// Handles this side serves.
    pub handles: usize,
    /// Streams not finished yet.
    pub streams: usize,
    /// Bytes queued for the writer and not written yet (counted only when the write backlog is
    /// bounded, as a plugin's is).
    pub backlog: usize,
    /// The bound of the write backlog, if any.
    pub backlog_limit: Option<usize>,
}

impl Shared {
    pub(super) fn diagnostics(&self) -> Diagnostics {
        Diagnostics {
            pending: lock(&self.pending).len(),
            incoming: lock(&self.incoming).len(),
            polling: self.polling.load(Ordering::SeqCst),
            handles: lock(&self.handles).len(),
            streams: lock(&self.streams).len(),
            backlog: self.backlog.load(Ordering::Relaxed),
            backlog_limit: self.options.max_write_backlog,
        }
    }
}
