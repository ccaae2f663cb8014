//! Writing frames in the exact writer form (SPEC.md §2.2, §2.8).
//!
//! The zero-copy path for attachments: a writer serializes the JSON body (collecting the
//! message's `tether_spec::Bytes` values as attachments, see `with_attachment_sink`), then
//! [`encode_attached_frame_head`] appends the header and the JSON to its output buffer, and the
//! attachments themselves go to the pipe as they are, after that head, in order (a vectored
//! write of [`OutgoingFrame`]'s chunks, or one write per attachment). The only copies of a large
//! value are then the one into the kernel's pipe buffer and the one out of it.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BytesMut};

use crate::format::{encode_attachments_header, encode_frame_header};

/// Appends one plain frame in the exact writer form: `Content-Length: N\r\n\r\n` and the body.
pub fn encode_frame(body: &[u8], dst: &mut BytesMut) {
    dst.reserve(40 + body.len());
    encode_frame_header(body.len(), dst);
    dst.extend_from_slice(body);
}

/// Appends the header and JSON body of a frame whose attachments are `attachments`, without
/// copying the attachments: the caller writes them after `dst`'s new bytes, in order. Without
/// attachments this is [`encode_frame`].
pub fn encode_attached_frame_head(json: &[u8], attachments: &[bytes::Bytes], dst: &mut BytesMut) {
    dst.reserve(64 + 21 * attachments.len() + json.len());
    encode_attachments_header(json.len(), attachments.iter().map(|a| a.len()), dst);
    dst.extend_from_slice(json);
}

/// The length `Content-Length` declares for a frame: the JSON and every attachment.
pub fn frame_len(json_len: usize, attachments: &[bytes::Bytes]) -> u64 {
    attachments.iter().fold(json_len as u64, |t, a| t.saturating_add(a.len() as u64))
}

/// A whole frame ready for the pipe: its head (header and JSON) and its attachments, as a
/// [`Buf`] whose chunks are those pieces, so that `write_all_buf` or `write_vectored` sends the
/// attachments from where they are.
#[derive(Debug, Default)]
pub struct OutgoingFrame {
    head: bytes::Bytes,
    attachments: VecDeque<bytes::Bytes>,
}

impl OutgoingFrame {
    /// Encodes a frame of `json` and `attachments` (the plain form when there are none). Copies
    /// the JSON once into the head; the attachments are shared, not copied.
    pub fn new(json: &[u8], attachments: Vec<bytes::Bytes>) -> Self {
        let mut head = BytesMut::new();
        encode_attached_frame_head(json, &attachments, &mut head);
        OutgoingFrame {
            head: head.freeze(),
            attachments: attachments.into_iter().filter(|a| !a.is_empty()).collect(),
        }
    }
}

impl Buf for OutgoingFrame {
    fn remaining(&self) -> usize {
        self.head.len() + self.attachments.iter().map(bytes::Bytes::len).sum::<usize>()
    }

    fn chunk(&self) -> &[u8] {
        if self.head.is_empty() {
            self.attachments.front().map_or(&[], |a| &a[..])
        } else {
            &self.head
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        let from_head = cnt.min(self.head.len());
        self.head.advance(from_head);
        cnt -= from_head;
        while cnt > 0 {
            let Some(front) = self.attachments.front_mut() else { return };
            let n = cnt.min(front.len());
            front.advance(n);
            cnt -= n;
            if front.is_empty() {
                self.attachments.pop_front();
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let head = (!self.head.is_empty()).then_some(&self.head);
        let pieces = head.into_iter().chain(self.attachments.iter());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_frame_reads_as_the_whole_frame() {
        let a = bytes::Bytes::from_static(b"hello");
        let mut frame = OutgoingFrame::new(br#"{"v":{"$bytes":0}}"#, vec![a.clone(), bytes::Bytes::new()]);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(frame.chunks_vectored(&mut slices), 2);
        // The attachment is the caller's buffer, not a copy.
        assert_eq!(slices[1].as_ptr(), a.as_ptr());
        let mut all = Vec::new();
        while frame.has_remaining() {
            let take = frame.chunk().len().min(7);
            all.extend_from_slice(&frame.chunk()[..take]);
            frame.advance(take);
        }
        assert_eq!(
            all,
            b"Content-Length: 23\r\nTether-Attachments: 5,0\r\n\r\n{\"v\":{\"$bytes\":0}}hello".to_vec()
        );
    }
}
