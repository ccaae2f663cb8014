//! The last bytes the plugin wrote on stdout before its handshake completed, so that a start
//! error can show what the plugin sent instead of an answer (a frame header far above the limit
//! is consumed by the decoder and would otherwise be lost).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// How many of the last bytes are kept.
pub(crate) const KEPT_BYTES: usize = 256;

/// The kept bytes, shared between the reader and the start.
#[derive(Clone, Default)]
pub(crate) struct StdoutTail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    /// Cleared once the handshake is done: then the reader only pays an atomic load per read.
    done: Arc<AtomicBool>,
}

impl StdoutTail {
    /// Stops recording (the handshake completed) and forgets what was kept.
    pub(crate) fn stop(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The kept bytes, escaped (`\r\n`, `\xff`), or `None` when there are none.
    pub(crate) fn shown(&self) -> Option<String> {
        let bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.is_empty() {
            return None;
        }
        let (a, b) = bytes.as_slices();
        let all = [a, b].concat();
        Some(tether_spec::format::show_bytes(&all, KEPT_BYTES))
    }

    fn record(&self, read: &[u8]) {
        let read = &read[read.len().saturating_sub(KEPT_BYTES)..];
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let overflow = (bytes.len() + read.len()).saturating_sub(KEPT_BYTES);
        let drop_front = overflow.min(bytes.len());
        bytes.drain(..drop_front);
        bytes.extend(read);
    }
}

/// The plugin's stdout, recording what it reads into a [`StdoutTail`] until the handshake.
pub(crate) struct Recording<R> {
    inner: R,
    tail: StdoutTail,
}

impl<R> Recording<R> {
    pub(crate) fn new(inner: R, tail: StdoutTail) -> Self {
        Recording { inner, tail }
    }

    /// The stream, without the recording (for a hand-over).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Recording<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.tail.done.load(Ordering::Relaxed) {
            if let Poll::Ready(Ok(())) = polled {
                self.tail.record(&buf.filled()[before..]);
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_escaped() {
        let tail = StdoutTail::default();
        assert_eq!(tail.shown(), None);
        tail.record(b"Content-Length: 99999999999\r\n\r\n");
        assert_eq!(tail.shown().as_deref(), Some(r#""Content-Length: 99999999999\r\n\r\n""#));
        tail.record(&[b'x'; 300]);
        tail.record(b"end");
        let shown = tail.shown().unwrap_or_default();
        assert!(shown.ends_with("xend\""), "{shown}");
        assert!(!shown.contains("Content"), "{shown}");
        tail.stop();
        assert_eq!(tail.shown(), None);
    }
}
