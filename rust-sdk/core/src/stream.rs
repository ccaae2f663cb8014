//! Streams for applications (SPEC.md §12): [`ReadStream`], the field type of params or a result
//! that carries a stream its receiver reads ([`WriteStream`] for one its receiver writes), and
//! the two ends, [`StreamReader`]
//! (`tokio::io::AsyncRead` and `futures::Stream` of chunks) and [`StreamWriter`]
//! (`tokio::io::AsyncWrite` and [`StreamWriter::send`]).
//!
//! The opener makes a pair with [`ReadStream::new`], puts the `ReadStream` in params or a result
//! and writes into the writer; the receiver reads the `ReadStream` it got. Credit is handled for
//! both: a writer waits when the reader's window is full, and a reader grants credit back as the
//! application consumes. Dropping an end before the stream is finished aborts it (-32006).
//!
//! ```
//! # use tether_core::stream::ReadStream;
//! # use tokio::io::AsyncWriteExt as _;
//! # async fn demo() -> std::io::Result<()> {
//! let (data, mut writer) = ReadStream::new();
//! // Put `data` in the params of a call (for example `blob.upload`), then:
//! # drop(data);
//! writer.write_all(b"hello").await?;
//! writer.finish().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use schemars::JsonSchema;
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use tether_spec::{codes, stream_error, ErrorObject, StreamMode, StreamRef};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::scope::{claim_inbound, claim_outbound, open_inbound, open_outbound};
use crate::connection::shared::lock;
use crate::connection::streams::{Done, Inbound, Outbound};

/// Why a stream failed: the error object of its abort (SPEC.md §12.4), or the end of the
/// session. Also the inner error of the `io::Error` that the `AsyncRead`/`AsyncWrite` ends give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stream aborted: {0}")]
pub struct StreamError(pub ErrorObject);

impl StreamError {
    fn io(error: &ErrorObject) -> io::Error {
        io::Error::other(StreamError(error.clone()))
    }
}

/// So that `?` works in code that also uses the `AsyncRead`/`AsyncWrite` ends.
impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        io::Error::other(e)
    }
}

/// A stream field that the receiver of the message reads (`{"$stream": id, "mode": "read"}`).
///
/// On the opening side make one with [`ReadStream::new`]; it binds to the session when the
/// params or the result that hold it are sent. On the receiving side it is the consuming end:
/// read it (it is `AsyncRead`) or take the [`StreamReader`] with [`ReadStream::into_reader`].
pub struct ReadStream {
    inner: Inner,
}

enum Inner {
    /// The opener's, to be sent.
    Outgoing(Unsent),
    /// The receiver's.
    Incoming(StreamReader),
}

impl fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Outgoing(end) => write!(f, "ReadStream(outgoing {})", lock(&end.0.state).id),
            Inner::Incoming(r) => write!(f, "ReadStream(incoming {})", r.end.id()),
        }
    }
}

impl ReadStream {
    /// A stream to send: put the `ReadStream` in params or a result, write into the
    /// [`StreamWriter`]. Writes wait until the message that carries the stream is sent.
    pub fn new() -> (ReadStream, StreamWriter) {
        let end = Outbound::unbound();
        (ReadStream { inner: Inner::Outgoing(Unsent(end.clone())) }, StreamWriter { end, done: false })
    }

    /// The consuming end of a stream received in params or a result; an error for a stream made
    /// with [`ReadStream::new`].
    pub fn into_reader(self) -> Result<StreamReader, StreamError> {
        match self.inner {
            Inner::Incoming(reader) => Ok(reader),
            Inner::Outgoing(_) => {
                Err(StreamError(stream_error(0, "this stream is sent by this side, not received")))
            }
        }
    }
}

/// The opener's end of a [`ReadStream`] before and after it is sent.
struct Unsent(Arc<Outbound>);

impl Drop for Unsent {
    fn drop(&mut self) {
        // Never sent: its writer fails instead of waiting for ever.
        if lock(&self.0.state).id == 0 {
            self.0.fail(stream_error(0, "the stream was dropped without being sent"));
        }
    }
}

/// A stream field's schema is the wire form's, `{"$stream", "mode"}` (SPEC.md §12.1).
macro_rules! stream_ref_schema {
    ($t:ty) => {
        impl JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                StreamRef::schema_name()
            }
            fn schema_id() -> std::borrow::Cow<'static, str> {
                StreamRef::schema_id()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                StreamRef::json_schema(generator)
            }
        }
    };
}

/// The id of a received stream whose mode must be `want`: a field typed for reading cannot take
/// a stream to write, and the other way round.
fn stream_id_of_mode(r: StreamRef, want: StreamMode) -> Result<u64, String> {
    if r.mode == want {
        return Ok(r.stream);
    }
    let (got, expected) = match want {
        StreamMode::Read => ("write", "read"),
        StreamMode::Write => ("read", "write"),
    };
    Err(format!("stream {} has mode \"{got}\" where a stream to {expected} is expected", r.stream))
}

impl Serialize for ReadStream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.inner {
            Inner::Outgoing(end) => {
                let id = open_outbound(&end.0).map_err(serde::ser::Error::custom)?;
                StreamRef::read(id).serialize(serializer)
            }
            Inner::Incoming(_) => Err(serde::ser::Error::custom("a received stream cannot be sent on")),
        }
    }
}

impl<'de> Deserialize<'de> for ReadStream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = stream_id_of_mode(StreamRef::deserialize(deserializer)?, StreamMode::Read)
            .map_err(serde::de::Error::custom)?;
        let end = claim_inbound(id).map_err(serde::de::Error::custom)?;
        Ok(ReadStream { inner: Inner::Incoming(StreamReader { end, done: false }) })
    }
}

stream_ref_schema!(ReadStream);

impl AsyncRead for ReadStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Incoming(reader) => Pin::new(reader).poll_read(cx, buf),
            Inner::Outgoing(_) => {
                Poll::Ready(Err(io::Error::other("this stream is sent by this side, not received")))
            }
        }
    }
}

/// A stream field that the receiver of the message writes (`{"$stream": id, "mode": "write"}`):
/// the opener consumes what the receiver produces, as when a host hands a plugin somewhere to
/// write its output.
///
/// On the opening side make one with [`WriteStream::new`] and read the [`StreamReader`]; on the
/// receiving side take the [`StreamWriter`] with [`WriteStream::into_writer`] (or write to it:
/// it is `AsyncWrite`).
pub struct WriteStream {
    inner: WriteInner,
}

enum WriteInner {
    /// The opener's, to be sent.
    Outgoing(Arc<Inbound>),
    /// The receiver's.
    Incoming(StreamWriter),
}

impl fmt::Debug for WriteStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            WriteInner::Outgoing(end) => write!(f, "WriteStream(outgoing {})", end.id()),
            WriteInner::Incoming(w) => write!(f, "WriteStream(incoming {})", w.id()),
        }
    }
}

impl WriteStream {
    /// A stream to send whose data comes back: put the `WriteStream` in params or a result,
    /// read the [`StreamReader`].
    pub fn new() -> (WriteStream, StreamReader) {
        let end = Inbound::unbound();
        (WriteStream { inner: WriteInner::Outgoing(end.clone()) }, StreamReader { end, done: false })
    }

    /// The producing end of a stream received in params or a result; an error for a stream
    /// made with [`WriteStream::new`].
    pub fn into_writer(self) -> Result<StreamWriter, StreamError> {
        match self.inner {
            WriteInner::Incoming(writer) => Ok(writer),
            WriteInner::Outgoing(_) => {
                Err(StreamError(stream_error(0, "this stream is read by this side, not written")))
            }
        }
    }
}

impl Serialize for WriteStream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.inner {
            WriteInner::Outgoing(end) => {
                let id = open_inbound(end).map_err(serde::ser::Error::custom)?;
                StreamRef::write(id).serialize(serializer)
            }
            WriteInner::Incoming(_) => Err(serde::ser::Error::custom("a received stream cannot be sent on")),
        }
    }
}

impl<'de> Deserialize<'de> for WriteStream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = stream_id_of_mode(StreamRef::deserialize(deserializer)?, StreamMode::Write)
            .map_err(serde::de::Error::custom)?;
        let end = claim_outbound(id).map_err(serde::de::Error::custom)?;
        Ok(WriteStream { inner: WriteInner::Incoming(StreamWriter { end, done: false }) })
    }
}

stream_ref_schema!(WriteStream);

/// The consuming end of a stream: `AsyncRead`, and a `futures::Stream` of chunks (no copy).
/// Dropping it before the end aborts the stream with -32006.
pub struct StreamReader {
    end: Arc<Inbound>,
    done: bool,
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader").field("stream", &self.end.id()).finish_non_exhaustive()
    }
}

impl StreamReader {
    /// The stream's id.
    pub fn id(&self) -> u64 {
        self.end.id()
    }

    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<bytes::Bytes, StreamError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx, usize::MAX)).await
    }

    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<bytes::Bytes, StreamError>>> {
        let (chunk, grant) = {
            let mut s = lock(&self.end.state);
            match s.take(max) {
                Some(chunk) => {
                    let grant = s.on_consumed(chunk.len() as u64);
                    (chunk, grant)
                }
                None => match &s.done {
                    Some(Done::End) => {
                        self.done = true;
                        return Poll::Ready(None);
                    }
                    Some(Done::Failed(e)) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(StreamError(e.clone()))));
                    }
                    None => {
                        s.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                },
            }
        };
        if let (Some(grant), Some(shared)) = (grant, self.end.shared()) {
            shared.send_credit(self.end.id(), grant);
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl futures::Stream for StreamReader {
    type Item = Result<bytes::Bytes, StreamError>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx, usize::MAX)
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match this.poll_chunk(cx, buf.remaining()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Ok(())),
            Poll::Ready(Some(Ok(chunk))) => {
                buf.put_slice(&chunk);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(StreamError::io(&e.0))),
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let finished = matches!(lock(&self.end.state).done, Some(Done::End));
        let id = self.end.id();
        match self.end.shared() {
            Some(shared) if finished => shared.forget_stream(id),
            Some(shared) => shared.abort_stream(id, stream_error(id, "the reader stopped before the end")),
            // Never bound (a `WriteStream` that was not sent): nothing to tell.
            None => {}
        }
    }
}

/// The producing end of a stream: `AsyncWrite` (shut it down or call [`StreamWriter::finish`]
/// to end the stream) and [`StreamWriter::send`] for shared buffers. A write waits for credit;
/// dropping the writer before `finish` aborts the stream with -32006.
pub struct StreamWriter {
    end: Arc<Outbound>,
    done: bool,
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter").field("stream", &lock(&self.end.state).id).finish_non_exhaustive()
    }
}

/// A producing end of a stream not yet usable: Pending while its message is not sent or it has
/// no credit; an error once failed.
fn poll_credit(end: &Outbound, cx: &mut Context<'_>, want: usize) -> Poll<Result<(u64, usize), ErrorObject>> {
    let max_chunk = end.shared_max_chunk();
    let mut s = lock(&end.state);
    if let Some(e) = &s.failed {
        return Poll::Ready(Err(e.clone()));
    }
    if s.finished {
        return Poll::Ready(Err(stream_error(s.id, "the stream is already finished")));
    }
    if s.active {
        let n = s.take_credit(want.min(max_chunk));
        if n > 0 || want == 0 {
            return Poll::Ready(Ok((s.id, n)));
        }
    }
    s.waker = Some(cx.waker().clone());
    Poll::Pending
}

impl Outbound {
    fn shared_max_chunk(&self) -> usize {
        lock(&self.shared).upgrade().map_or(tether_spec::MAX_CHUNK, |s| s.max_chunk())
    }

    fn send(&self, id: u64, chunk: bytes::Bytes) -> Result<(), ErrorObject> {
        let shared = lock(&self.shared).upgrade();
        match shared {
            Some(shared) if shared.send_chunk(id, chunk).is_ok() => Ok(()),
            _ => Err(ErrorObject::new(codes::STREAM_ERROR, "the session ended")),
        }
    }
}

impl StreamWriter {
    /// The stream's id, 0 until the message that carries it is sent.
    pub fn id(&self) -> u64 {
        lock(&self.end.state).id
    }

    /// Sends `data`, in chunks of at most the credit and 1 MiB, waiting for credit as needed.
    /// The chunks share `data`'s buffer (no copy).
    pub async fn send(&mut self, mut data: bytes::Bytes) -> Result<(), StreamError> {
        while !data.is_empty() {
            let (id, n) = std::future::poll_fn(|cx| poll_credit(&self.end, cx, data.len()))
                .await
                .map_err(StreamError)?;
            let chunk = data.split_to(n);
            self.end.send(id, chunk).map_err(StreamError)?;
        }
        Ok(())
    }

    /// Ends the stream (`$/stream.end`) once the message that carries it is sent.
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        let (id, _) = std::future::poll_fn(|cx| poll_credit(&self.end, cx, 0)).await.map_err(StreamError)?;
        self.done = true;
        lock(&self.end.state).finished = true;
        if let Some(shared) = lock(&self.end.shared).upgrade() {
            shared.forget_stream(id);
            shared.send_end(id);
        }
        Ok(())
    }

    /// Ends the stream early with `error` (`$/stream.abort`): the reader's reads fail with it.
    pub fn abort(mut self, error: ErrorObject) {
        self.done = true;
        self.abort_with(error);
    }

    fn abort_with(&mut self, error: ErrorObject) {
        let (id, active) = {
            let s = lock(&self.end.state);
            (s.id, s.active)
        };
        let shared = lock(&self.end.shared).upgrade();
        match shared {
            Some(shared) if active => shared.abort_stream(id, error),
            _ => self.end.fail(error),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.done {
            let id = self.id();
            self.abort_with(stream_error(id, "the writer was dropped before finishing the stream"));
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match poll_credit(&self.end, cx, buf.len()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(StreamError::io(&e))),
            Poll::Ready(Ok((id, n))) => match self.end.send(id, bytes::Bytes::copy_from_slice(&buf[..n])) {
                Ok(()) => Poll::Ready(Ok(n)),
                Err(e) => Poll::Ready(Err(StreamError::io(&e))),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Chunks are queued for the session's writer as they are written.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        match poll_credit(&this.end, cx, 0) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(StreamError::io(&e))),
            Poll::Ready(Ok((id, _))) => {
                this.done = true;
                lock(&this.end.state).finished = true;
                if let Some(shared) = lock(&this.end.shared).upgrade() {
                    shared.forget_stream(id);
                    shared.send_end(id);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}
