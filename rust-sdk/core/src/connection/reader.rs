//! The reader task: decodes frames with the lenient codec, hands each to the dispatcher, and
//! ends the session at end of input (or reports it, when [`crate::Options::close_on_eof`] is
//! off). It stops reading while the write backlog is above its bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tether_spec::{Frame, FrameCodec};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::error::{CloseKind, CloseReason};
use super::options::Event;
use super::shared::{self, Shared};

/// `unread`: bytes read from the stream before this reader started (by the reader of a session
/// that was handed over), decoded first.
pub(super) async fn read_loop<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    unread: BytesMut,
    shared: Arc<Shared>,
) {
    let mut codec = FrameCodec::builder().max_frame_size(shared.max_frame.load(Ordering::Relaxed)).build();
    let mut buf = unread;
    buf.reserve(64 * 1024);
    // Made once, not per read: a fresh `cancelled()` future registers with the token's waiters
    // when polled and unregisters when dropped, two locked list updates per message.
    let cancelled = shared.token.cancelled();
    let detach = shared.reader_detach.cancelled();
    tokio::pin!(cancelled, detach);
    loop {
        // The answers of handlers that finish while this read's frames are decoded are
        // collected and written together at the end, as one write (`through`).
        shared.cork();
        loop {
            // Every frame may add to the backlog: look before each one, not only before reading.
            if !shared.backlog_below_limit().await {
                shared.uncork();
                return;
            }
            match next_frame(&shared, &mut codec, &mut buf) {
                Some(frame) => shared.on_frame(frame),
                None => break,
            }
        }
        shared.uncork();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        // Every complete frame in `buf` was decoded: this is a frame boundary, where the stream
        // can be handed over with the bytes of the next frame read so far (unless the decoder
        // is skipping a frame, whose state is not in `buf`: then it reads on until the skip ends).
        let skipping = codec.is_skipping();
        // The read first (`biased`): when bytes are waiting, the two other futures are not
        // polled, which saves their locked waiter updates on every message. The end and the
        // hand-over are still seen between reads, by these loads, however busy the stream.
        if shared.token.is_cancelled() {
            return;
        }
        let hand_back = |reader: R, buf: &BytesMut| {
            if let Some(back) = shared::lock(&shared.reader_back).take() {
                let _ = back.send((Box::new(reader), buf.to_vec()));
            }
        };
        if !skipping && shared.reader_detach.is_cancelled() {
            return hand_back(reader, &buf);
        }
        let read = tokio::select! {
            biased;
            read = reader.read_buf(&mut buf) => read,
            () = &mut cancelled => return,
            () = &mut detach, if !skipping => return hand_back(reader, &buf),
        };
        match read {
            Ok(0) => return end_of_input(&shared, &mut codec, &mut buf),
            Ok(_) => {}
            Err(e) => {
                shared.close(CloseReason::new(CloseKind::ReadFailed, format!("reading failed: {e}")));
                return;
            }
        }
    }
}

/// The next complete frame of `buf`, decoded with the session's current limits.
pub(super) fn next_frame(shared: &Shared, codec: &mut FrameCodec, buf: &mut BytesMut) -> Option<Frame> {
    // `tether/initialize` changes the maximum synchronously: read the next frame with it.
    codec.set_max_frame_size(shared.max_frame.load(Ordering::Relaxed));
    // Attachments are read from the frame after the one that negotiated them (SPEC.md §2.8.3):
    // the initialize answer for a host, the initialize request for a plugin, whose answer is
    // queued before the next frame is decoded.
    codec.set_attachments(shared.negotiated.attachments_out());
    codec.decode_frame(buf)
}

/// The input ended: what is left in `buf` is decoded (a frame cut short is reported), then the
/// session closes, or reports the end when [`crate::Options::close_on_eof`] is off.
pub(super) fn end_of_input(shared: &Arc<Shared>, codec: &mut FrameCodec, buf: &mut BytesMut) {
    let mut kind = CloseKind::EndOfInput;
    while let Some(frame) = codec.decode_last(buf) {
        if matches!(frame, Frame::Truncated(_)) {
            kind = CloseKind::Truncated;
        }
        shared.on_frame(frame);
    }
    if shared.options.close_on_eof {
        let message = match kind {
            CloseKind::Truncated => "the input ended in the middle of a frame",
            _ => "the input reached end of file",
        };
        shared.close(CloseReason::new(kind, message));
    } else {
        shared.event(Event::EndOfInput);
    }
}

/// The lenient codec never fails; these wrappers make that explicit.
trait DecodeExt {
    fn decode_frame(&mut self, buf: &mut BytesMut) -> Option<Frame>;
    fn decode_last(&mut self, buf: &mut BytesMut) -> Option<Frame>;
}

impl DecodeExt for FrameCodec {
    fn decode_frame(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        tokio_util::codec::Decoder::decode(self, buf).ok().flatten()
    }
    fn decode_last(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        tokio_util::codec::Decoder::decode_eof(self, buf).ok().flatten()
    }
}
