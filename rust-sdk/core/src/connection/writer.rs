//! The writer task: drains the queue of [`Outgoing`] messages into one buffer per batch and
//! writes it with one `write` and one `flush`; a large payload is written from where it is.
//! After the session closes it writes the answers of the handlers being cancelled, for a short
//! while, then shuts its stream down.
//!
//! The write backlog (what is queued and not written) is counted here and in
//! [`Shared::enqueue`] when [`crate::Options::max_write_backlog`] bounds it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use tether_spec::format::encode_attachments_header;
use tether_spec::{encode_frame, OutgoingFrame};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::envelope::Outgoing;
use super::error::{CloseKind, CloseReason};
use super::shared::{lock, Shared};
use super::through::Stream;

/// Writes the header of a frame of `len` bytes in the writer form (SPEC.md §2.2).
fn frame_header(len: usize, dst: &mut BytesMut) {
    dst.extend_from_slice(b"Content-Length: ");
    dst.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    dst.extend_from_slice(b"\r\n\r\n");
}

const BATCH_LIMIT: usize = 1 << 20;
const DIRECT_WRITE: usize = 256 * 1024;

/// Appends one message, framed, to `buf` (the form for frames that are copied into the batch).
pub(super) fn encode_small(out: &Outgoing, buf: &mut BytesMut, scratch: &mut Vec<u8>) {
    if let Outgoing::Framed(bytes) = out {
        buf.extend_from_slice(bytes);
        return;
    }
    let (head, payload, tail) = out.parts(scratch);
    encode_parts(head, payload, tail, out.attachments(), buf);
}

/// Appends the frame of a body written as three pieces, and its attachments, to `buf`.
fn encode_parts(head: &[u8], payload: &[u8], tail: &[u8], attachments: &[bytes::Bytes], buf: &mut BytesMut) {
    let json_len = head.len() + payload.len() + tail.len();
    if !attachments.is_empty() {
        encode_attachments_header(json_len, attachments.iter().map(bytes::Bytes::len), buf);
        buf.extend_from_slice(head);
        buf.extend_from_slice(payload);
        buf.extend_from_slice(tail);
        for a in attachments {
            buf.extend_from_slice(a);
        }
    } else if head.is_empty() && tail.is_empty() {
        encode_frame(payload, buf);
    } else {
        frame_header(json_len, buf);
        buf.extend_from_slice(head);
        buf.extend_from_slice(payload);
        buf.extend_from_slice(tail);
    }
}

async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    scratch: &mut Vec<u8>,
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut next = Some(first);
    let mut weight = 0;
    while let Some(out) = next.take() {
        weight += out.weight();
        if let Outgoing::Framed(bytes) = &out {
            // What a write through the gate left: already framed.
            buf.extend_from_slice(bytes);
            if buf.len() < BATCH_LIMIT {
                next = rx.try_recv().ok();
            }
            continue;
        }
        let attachments = out.attachments();
        let (head, payload, tail) = out.parts(scratch);
        let json_len = head.len() + payload.len() + tail.len();
        let attached: usize = attachments.iter().map(bytes::Bytes::len).sum();
        if !attachments.is_empty() && attached >= DIRECT_WRITE {
            // Large attachments go to the pipe from where they are (SPEC.md §2.8): the batch
            // so far, then the frame as header+JSON and the attachments in one vectored
            // write, without copying them into the buffer.
            writer.write_all(buf).await?;
            buf.clear();
            let mut json = Vec::with_capacity(json_len);
            json.extend_from_slice(head);
            json.extend_from_slice(payload);
            json.extend_from_slice(tail);
            let mut frame = OutgoingFrame::new(&json, attachments.to_vec());
            while frame.has_remaining() {
                writer.write_all_buf(&mut frame).await?;
            }
        } else if attachments.is_empty() && json_len >= DIRECT_WRITE {
            // A large body is written from where it is rather than copied into the batch.
            frame_header(json_len, buf);
            buf.extend_from_slice(head);
            writer.write_all(buf).await?;
            buf.clear();
            writer.write_all(payload).await?;
            buf.extend_from_slice(tail);
        } else {
            encode_parts(head, payload, tail, attachments, buf);
        }
        if buf.len() < BATCH_LIMIT {
            next = rx.try_recv().ok();
        }
    }
    writer.write_all(buf).await?;
    writer.flush().await?;
    shared.written(weight);
    buf.clear();
    if buf.capacity() > 4 * BATCH_LIMIT {
        *buf = BytesMut::with_capacity(64 * 1024);
    }
    Ok(())
}

/// Nothing queued: parks the stream in the gate, where senders write through it (`Err`);
/// otherwise gives back the first message queued and the stream. Looked at under the gate's
/// lock, which every sender takes: nothing can be queued between the look and the parking.
fn park_unless_queued(
    shared: &Shared,
    writer: Box<dyn Stream>,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> Result<(Outgoing, Box<dyn Stream>), ()> {
    let mut gate = lock(&shared.gate);
    match rx.try_recv() {
        Ok(first) => Ok((first, writer)),
        Err(_) => {
            gate.park(writer);
            Err(())
        }
    }
}

/// Why the writer task woke up while its stream was parked in the gate.
enum Wake {
    /// A message was queued (`None`: every sender is gone).
    Queued(Option<Outgoing>),
    /// The session closed.
    Closed,
    /// The session is being handed over.
    Detach,
}

pub(super) async fn write_loop<W: AsyncWrite + Unpin + Send + 'static>(
    writer: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) -> CloseReason {
    let mut writer: Box<dyn Stream> = Box::new(writer);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scratch = Vec::with_capacity(64);
    // Made once, not per batch (see `read_loop`).
    let cancelled = shared.token.cancelled();
    let detach = shared.writer_detach.cancelled();
    tokio::pin!(cancelled, detach);
    loop {
        let wake = match park_unless_queued(&shared, writer, &mut rx) {
            Ok((first, back)) => {
                writer = back;
                Wake::Queued(Some(first))
            }
            Err(()) => {
                let wake = tokio::select! {
                    biased;
                    first = rx.recv() => Wake::Queued(first),
                    () = &mut cancelled => Wake::Closed,
                    () = &mut detach => Wake::Detach,
                };
                let (back, collected) = lock(&shared.gate).unpark();
                let Some(back) = back else {
                    // Only this task takes the stream out of the gate: this cannot happen.
                    shared.close(CloseReason::new(CloseKind::WriteFailed, "the writer lost its stream"));
                    return shared.close_reason();
                };
                writer = back;
                // Collected by a corked reader and not written yet: before anything queued.
                if !collected.is_empty() {
                    let written = writer.write_all(&collected).await;
                    if let Err(e) = written {
                        shared
                            .close(CloseReason::new(CloseKind::WriteFailed, format!("writing failed: {e}")));
                        return shared.close_reason();
                    }
                    if !matches!(wake, Wake::Queued(Some(_))) {
                        let _ = writer.flush().await;
                    }
                }
                wake
            }
        };
        let first = match wake {
            Wake::Queued(first) => first,
            Wake::Closed => None,
            Wake::Detach => {
                // Handed over: write what is queued, then give the stream back unclosed.
                while let Ok(first) = rx.try_recv() {
                    if write_batch(&mut writer, &mut buf, &mut scratch, first, &mut rx, &shared)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = writer.flush().await;
                if let Some(back) = lock(&shared.writer_back).take() {
                    let _ = back.send(writer.into_any());
                }
                return super::handover::handed_over_reason();
            }
        };
        let Some(first) = first else { break };
        if let Err(e) = write_batch(&mut writer, &mut buf, &mut scratch, first, &mut rx, &shared).await {
            shared.close(CloseReason::new(CloseKind::WriteFailed, format!("writing failed: {e}")));
            return shared.close_reason();
        }
    }
    // Closed: write the answers of the handlers that are being cancelled, for a short while.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
    loop {
        tokio::task::yield_now().await;
        let first = match rx.try_recv() {
            Ok(first) => Some(first),
            Err(_) if shared.in_flight() == 0 => None,
            Err(_) => tokio::select! {
                first = rx.recv() => first,
                () = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some(first) = first else { break };
        if write_batch(&mut writer, &mut buf, &mut scratch, first, &mut rx, &shared).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    shared.close_reason()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_have_the_writer_form() {
        let mut framed = BytesMut::new();
        frame_header(1234, &mut framed);
        assert_eq!(&framed[..], b"Content-Length: 1234\r\n\r\n");
    }
}
