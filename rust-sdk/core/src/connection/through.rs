//! Writing through: while the writer task is idle it leaves its stream here, in the [`Gate`],
//! and a small message sent when the session has nothing else in flight is written to the
//! stream at once by the task that sends it, with a non-blocking write. That saves the hop to
//! the writer task (a wake-up, a task switch and a poll per message), most of the cost of a
//! sequential call after the system calls.
//!
//! Everything sent goes through the gate's lock, so the order of frames is the order of
//! sending: a message is written through only when the stream is parked and nothing is queued
//! for the writer; once something is queued (`handed`), every message after it is queued too
//! until the writer has written the queue and parked the stream again. A write that would
//! block or is partial hands what is left to the writer task, which counts it in the backlog
//! and reports a failing stream as it always does.
//!
//! The reader **corks** the gate while it decodes the frames of one read: the answers of
//! handlers that finish at once are collected, and written in one write when the frames are
//! decoded, as the writer task would have batched them.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf as _, BytesMut};
use tokio::io::AsyncWrite;

use super::envelope::Outgoing;

/// The writer's stream, whatever its type: written through here, given back as itself on a
/// hand-over ([`super::Peer::detach`]).
pub(super) trait Stream: AsyncWrite + Unpin + Send + 'static {
    /// The stream as the type it was started with, for the new owner to downcast.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: AsyncWrite + Unpin + Send + 'static> Stream for T {
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Frames up to this size (payload and attachments) are written through; larger ones go to
/// the writer task, which writes them from where they are. One pipe buffer's worth.
const THROUGH_LIMIT: usize = 64 * 1024;

/// The stream while the writer task is idle, and what was collected for it.
#[derive(Default)]
pub(super) struct Gate {
    /// The writer's stream while the writer task waits for its queue.
    parked: Option<Box<dyn Stream>>,
    /// Something was queued for the writer since it parked: no writing through until it has
    /// written the queue.
    handed: bool,
    /// The reader is decoding a batch of frames: collect, write when it uncorks.
    corked: bool,
    /// Frames encoded and not written yet (only while parked and not handed).
    buf: BytesMut,
    scratch: Vec<u8>,
}

impl Gate {
    /// Offers one message: `Ok` when it was written (or collected while corked), otherwise
    /// what to queue for the writer task. `alone`: nothing else is in flight, so no other
    /// message would be batched with this one by the writer (asked only when it matters).
    pub(super) fn offer(&mut self, out: Outgoing, alone: impl FnOnce() -> bool) -> Result<(), Outgoing> {
        if self.parked.is_none() || self.handed || out.weight() > THROUGH_LIMIT {
            return Err(out);
        }
        if !self.corked && !alone() {
            return Err(out);
        }
        super::writer::encode_small(&out, &mut self.buf, &mut self.scratch);
        if self.corked {
            return Ok(());
        }
        match self.write_now() {
            None => Ok(()),
            Some(rest) => Err(rest),
        }
    }

    /// Marks the queue as used from now on (until the writer parks again) and gives back what
    /// was collected, to be queued before the message that asked.
    pub(super) fn hand_over(&mut self) -> Option<Outgoing> {
        if self.parked.is_none() || self.handed {
            return None;
        }
        self.handed = true;
        (!self.buf.is_empty()).then(|| Outgoing::Framed(self.buf.split().freeze()))
    }

    /// Collects the answers written from now on (the reader starts decoding a batch).
    pub(super) fn cork(&mut self) {
        self.corked = true;
    }

    /// Writes what was collected while corked; what could not be written is given back, to be
    /// queued for the writer task.
    pub(super) fn uncork(&mut self) -> Option<Outgoing> {
        self.corked = false;
        self.write_now()
    }

    /// The writer task leaves its stream here while it waits (nothing is queued).
    pub(super) fn park(&mut self, stream: Box<dyn Stream>) {
        self.parked = Some(stream);
        self.handed = false;
    }

    /// The writer task takes its stream back, with the frames collected and not written yet
    /// (to be written before anything queued).
    pub(super) fn unpark(&mut self) -> (Option<Box<dyn Stream>>, BytesMut) {
        self.handed = false;
        (self.parked.take(), self.buf.split())
    }

    /// Writes `buf` to the parked stream without waiting: `None` when all of it is written
    /// and flushed, otherwise the rest (maybe empty, for a flush still to be done), handed to
    /// the writer task. An error is left for the writer task to meet and report.
    fn write_now(&mut self) -> Option<Outgoing> {
        if self.buf.is_empty() {
            return None;
        }
        let stream = self.parked.as_mut()?;
        let mut cx = Context::from_waker(Waker::noop());
        let mut done = false;
        while !self.buf.is_empty() {
            match Pin::new(&mut **stream).poll_write(&mut cx, &self.buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) | Poll::Pending => break,
                Poll::Ready(Ok(n)) => self.buf.advance(n.min(self.buf.len())),
            }
        }
        if self.buf.is_empty() {
            done = matches!(Pin::new(&mut **stream).poll_flush(&mut cx), Poll::Ready(Ok(())));
        }
        if done {
            self.buf.clear();
            return None;
        }
        self.handed = true;
        Some(Outgoing::Framed(self.buf.split().freeze()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A stream that takes at most `room` bytes in all, then would block, and records each
    /// write it accepted.
    #[derive(Clone, Default)]
    struct Pipe {
        room: usize,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Poll::Pending;
            }
            self.room -= n;
            self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Pipe {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        }
    }

    fn body(text: &str) -> Outgoing {
        Outgoing::Body(text.as_bytes().to_vec())
    }

    fn framed(text: &str) -> Vec<u8> {
        format!("Content-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
    }

    fn parked(room: usize) -> (Gate, Pipe) {
        let pipe = Pipe { room, ..Pipe::default() };
        let mut gate = Gate::default();
        gate.park(Box::new(pipe.clone()));
        (gate, pipe)
    }

    #[test]
    fn a_message_alone_is_written_by_its_sender_while_the_writer_is_idle() {
        let (mut gate, pipe) = parked(1 << 20);
        assert!(gate.offer(body("{\"a\":1}"), || true).is_ok());
        assert_eq!(pipe.writes(), vec![framed("{\"a\":1}")]);
        // Not alone (other calls in flight): queued for the writer, which batches.
        let Err(Outgoing::Body(queued)) = gate.offer(body("{\"b\":2}"), || false) else {
            panic!("a message that is not alone was written through");
        };
        assert_eq!(queued, b"{\"b\":2}");
        assert_eq!(pipe.writes().len(), 1);
    }

    #[test]
    fn a_write_that_would_block_hands_the_rest_to_the_writer_and_queues_what_follows() {
        let (mut gate, pipe) = parked(10);
        let Err(Outgoing::Framed(rest)) = gate.offer(body("{\"a\":1}"), || true) else {
            panic!("a partial write was not handed to the writer");
        };
        let whole = framed("{\"a\":1}");
        assert_eq!(pipe.writes(), vec![whole[..10].to_vec()]);
        assert_eq!(&rest[..], &whole[10..]);
        // The writer has work queued: what follows goes behind it, even when alone.
        assert!(matches!(gate.offer(body("{\"b\":2}"), || true), Err(Outgoing::Body(_))));
        assert!(gate.hand_over().is_none(), "already handed over");
        // The writer takes its stream back; once it parks again, writing through resumes.
        let (stream, collected) = gate.unpark();
        assert!(stream.is_some() && collected.is_empty());
        assert!(matches!(gate.offer(body("{}"), || true), Err(Outgoing::Body(_))), "no stream parked");
    }

    #[test]
    fn answers_given_while_corked_are_written_in_one_write_at_uncork() {
        let (mut gate, pipe) = parked(1 << 20);
        gate.cork();
        // Corked, `alone` is not even asked: the batch is written at the end.
        assert!(gate.offer(body("{\"a\":1}"), || unreachable!()).is_ok());
        assert!(gate.offer(body("{\"b\":2}"), || unreachable!()).is_ok());
        assert!(pipe.writes().is_empty());
        assert!(gate.uncork().is_none());
        assert_eq!(pipe.writes(), vec![[framed("{\"a\":1}"), framed("{\"b\":2}")].concat()]);
    }

    #[test]
    fn what_was_collected_goes_to_the_queue_before_the_message_that_cannot_be_written_through() {
        let (mut gate, pipe) = parked(1 << 20);
        gate.cork();
        assert!(gate.offer(body("{\"a\":1}"), || true).is_ok());
        let big = Outgoing::Body(vec![b' '; THROUGH_LIMIT + 1]);
        assert!(gate.offer(big, || true).is_err());
        let Some(Outgoing::Framed(collected)) = gate.hand_over() else {
            panic!("the collected frame was not handed over");
        };
        assert_eq!(&collected[..], &framed("{\"a\":1}")[..]);
        assert!(gate.uncork().is_none());
        assert!(pipe.writes().is_empty());
    }
}
