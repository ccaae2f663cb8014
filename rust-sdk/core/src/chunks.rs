//! [`ChunkReader`]: an `AsyncRead` over chunks of bytes sent through a channel, the reading half
//! of an in-memory byte-stream transport (fed, for example, by a C callback that may run on any
//! thread and must not wait). In-process plugins use the message-level transport instead
//! (`Session::start_messages`).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Reads the chunks sent to its channel, in order; end of file once every sender is dropped.
///
/// The channel is unbounded so that a sender (a C callback on a foreign thread) never waits;
/// the session's own limits (the frame size, the plugin's write backlog) bound what is queued.
#[derive(Debug)]
pub struct ChunkReader {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl ChunkReader {
    /// A reader and the sender that feeds it.
    pub fn channel() -> (mpsc::UnboundedSender<Vec<u8>>, ChunkReader) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ChunkReader { rx, current: Vec::new(), offset: 0 })
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.offset == this.current.len() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    this.current = chunk;
                    this.offset = 0;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(this.current.len() - this.offset);
        buf.put_slice(&this.current[this.offset..this.offset + n]);
        this.offset += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn chunks_are_read_in_order_then_end_of_file() {
        let (tx, mut reader) = ChunkReader::channel();
        for chunk in [&b"Content-"[..], b"", b"Length: 2\r\n\r\n{}"] {
            assert!(tx.send(chunk.to_vec()).is_ok());
        }
        drop(tx);
        let mut all = Vec::new();
        assert!(reader.read_to_end(&mut all).await.is_ok());
        assert_eq!(all, b"Content-Length: 2\r\n\r\n{}");
    }
}
