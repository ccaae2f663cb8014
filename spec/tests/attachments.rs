//! Attachment frames (SPEC.md §2.8) through the codec: random frames with attachments split at
//! random points, every byte boundary, huge declared lengths with bounded memory, malformed
//! lists, lengths adding up to more than `Content-Length`, and a codec that did not negotiate.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Buf, BytesMut};
use tether_spec::{AttachedFrame, AttachmentError, Frame, FrameCodec, FrameError, OutgoingFrame};
use tokio_util::codec::Decoder;

/// SplitMix64, seeded so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn negotiated() -> FrameCodec {
    FrameCodec::builder().attachments(true).build()
}

fn strict_negotiated() -> FrameCodec {
    FrameCodec::builder().strict().attachments(true).build()
}

/// The bytes of a frame as a writer sends them.
fn wire(json: &[u8], attachments: &[&[u8]]) -> Vec<u8> {
    let mut frame =
        OutgoingFrame::new(json, attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect());
    let mut out = Vec::new();
    while frame.has_remaining() {
        out.extend_from_slice(frame.chunk());
        let n = frame.chunk().len();
        frame.advance(n);
    }
    out
}

fn attached(json: &[u8], attachments: &[&[u8]]) -> Frame {
    if attachments.is_empty() {
        return Frame::Message(bytes::Bytes::copy_from_slice(json));
    }
    Frame::Attached(AttachedFrame {
        body: bytes::Bytes::copy_from_slice(json),
        attachments: attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect(),
    })
}

/// Feeds `input` in pieces cut at `cuts`, decoding after each.
fn decode_cut(codec: &mut FrameCodec, input: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&input.len()]) {
        buf.extend_from_slice(&input[from..to]);
        from = to;
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

#[test]
fn random_attachment_frames_split_at_random_points() {
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let json = format!(r#"{{"jsonrpc":"2.0","method":"m","params":{{"n":{}}}}}"#, rng.below(1000));
            let count = rng.below(4);
            let owned: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = [0, 1, 7, 300, 5000][rng.below(5)];
                    // Raw bytes, sometimes holding what looks like a frame header.
                    let mut a: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if rng.below(4) == 0 {
                        a.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
                    }
                    a
                })
                .collect();
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            input.extend(wire(json.as_bytes(), &refs));
            expected.push(attached(json.as_bytes(), &refs));
        }
        let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(input.len() + 1)).collect();
        cuts.sort_unstable();
        let lenient = decode_cut(&mut negotiated(), &input, &cuts).expect("lenient never fails");
        assert_eq!(lenient, expected, "lenient, seed {seed}");
        let strict = decode_cut(&mut strict_negotiated(), &input, &cuts).expect("writer form");
        assert_eq!(strict, expected, "strict, seed {seed}");
    }
}

#[test]
fn every_byte_boundary_of_attachment_frames() {
    let mut input =
        wire(br#"{"v":{"$bytes":0},"w":{"$bytes":1}}"#, &[b"hello", b"\r\n\r\nContent-Length: 0\r\n\r\n"]);
    input.extend(wire(b"{}", &[]));
    let expected = vec![
        attached(
            br#"{"v":{"$bytes":0},"w":{"$bytes":1}}"#,
            &[b"hello", b"\r\n\r\nContent-Length: 0\r\n\r\n"],
        ),
        attached(b"{}", &[]),
    ];
    for cut in 0..=input.len() {
        assert_eq!(decode_cut(&mut negotiated(), &input, &[cut]).unwrap(), expected, "lenient, cut at {cut}");
        assert_eq!(
            decode_cut(&mut strict_negotiated(), &input, &[cut]).unwrap(),
            expected,
            "strict, cut at {cut}"
        );
    }
}

#[test]
fn attachments_are_slices_of_the_read_buffer() {
    let mut buf = BytesMut::from(&wire(b"{}", &[b"0123456789"])[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Some(Frame::Attached(frame)) = negotiated().decode(&mut buf).unwrap() else { panic!("not attached") };
    let at = frame.attachments[0].as_ptr() as usize;
    assert!((start..end).contains(&at), "the attachment was copied out of the read buffer");
}

#[test]
fn any_header_order_is_read_leniently() {
    let input = b"Tether-Attachments: 3\r\ncontent-length: 5\r\n\r\n{}abcContent-Length: 2\r\n\r\n[]";
    let frames = decode_cut(&mut negotiated(), input, &[]).unwrap();
    assert_eq!(frames, vec![attached(b"{}", &[b"abc"]), attached(b"[]", &[])]);
}

#[test]
fn huge_declared_attachment_lengths_keep_memory_bounded() {
    // Lengths far above Content-Length: refused before anything is reserved, T bytes skipped.
    for list in ["18446744073709551615", "4,18446744073709551615", "99999999999999999999999", "11"] {
        let mut input =
            format!("Content-Length: 10\r\nTether-Attachments: {list}\r\n\r\n0123456789").into_bytes();
        input.extend(wire(b"{}", &[]));
        let mut codec = negotiated();
        let mut buf = BytesMut::from(&input[..]);
        let first = codec.decode(&mut buf).unwrap();
        assert!(buf.capacity() < 1 << 20, "{list}");
        assert!(
            matches!(first, Some(Frame::BadAttachments { ref bytes, .. }) if bytes.len() == 10),
            "{list}: {first:?}"
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(attached(b"{}", &[])), "{list}");
        // Strict mode reports the same frame as a violation instead.
        assert!(strict_negotiated().decode(&mut BytesMut::from(&input[..])).is_err(), "{list}");
    }
    // A huge total with attachments: skipped as oversized, never reserved.
    let mut codec = negotiated();
    let mut buf = BytesMut::from(
        &b"Content-Length: 9223372036854775807\r\nTether-Attachments: 9223372036854775000\r\n\r\n{\"id\":4,"
            [..],
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() < 1 << 20);
    for _ in 0..64 {
        buf.extend_from_slice(&[b'x'; 64 * 1024]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 1 << 20);
    }
}

#[test]
fn malformed_lists_and_sums_above_the_total_are_bad_frames_and_reading_goes_on() {
    for (list, why) in [
        ("", "not a list"),
        ("1,", "not a list"),
        ("01", "not a list"),
        ("1, 2", "not a list"),
        ("-1", "not a list"),
        ("3,3", "more than the frame's Content-Length"),
    ] {
        let mut input =
            format!("Content-Length: 5\r\nTether-Attachments: {list}\r\n\r\n{{}}abc").into_bytes();
        input.extend(wire(b"{}", &[b"x"]));
        let frames = decode_cut(&mut negotiated(), &input, &[]).unwrap();
        let [Frame::BadAttachments { bytes, reason }, next] = &frames[..] else {
            panic!("{list:?}: {frames:?}")
        };
        assert_eq!(&bytes[..], b"{}abc", "{list:?}");
        assert!(reason.to_string().contains(why), "{list:?}: {reason}");
        assert_eq!(next, &attached(b"{}", &[b"x"]), "{list:?}");
        let err = strict_negotiated().decode(&mut BytesMut::from(&input[..])).err().map(|e| e.to_string());
        assert!(err.is_some(), "strict accepted {list:?}");
    }
    let twice = b"Content-Length: 3\r\nTether-Attachments: 1\r\nTether-Attachments: 1\r\n\r\n{}x";
    let frames = decode_cut(&mut negotiated(), twice, &[]).unwrap();
    assert!(matches!(&frames[..], [Frame::BadAttachments { reason: AttachmentError::Duplicate, .. }]));
}

#[test]
fn without_negotiation_the_whole_length_is_the_body() {
    let input = wire(b"{}", &[b"abc"]);
    let frames = decode_cut(&mut FrameCodec::new(), &input, &[]).unwrap();
    assert_eq!(frames, vec![attached(b"{}abc", &[])]);
    let err = FrameCodec::builder().strict().build().decode(&mut BytesMut::from(&input[..])).err();
    assert!(err.is_some_and(|e| e.to_string().contains("must be followed by")));
    // Negotiated later, mid-stream: from then on the header is read.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&input[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(attached(b"{}abc", &[])));
    codec.set_attachments(true);
    buf.extend_from_slice(&input);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(attached(b"{}", &[b"abc"])));
}

#[test]
fn strict_mode_takes_the_attachment_header_only_right_after_the_length() {
    let input = b"Content-Length: 5\r\nX-Other: 1\r\nTether-Attachments: 3\r\n\r\n{}abc";
    assert!(strict_negotiated().decode(&mut BytesMut::from(&input[..])).is_err());
    let input = b"Tether-Attachments: 3\r\nContent-Length: 5\r\n\r\n{}abc";
    assert!(strict_negotiated().decode(&mut BytesMut::from(&input[..])).is_err());
    let input = b"Content-Length: 5\r\ntether-attachments: 3\r\n\r\n{}abc";
    assert!(strict_negotiated().decode(&mut BytesMut::from(&input[..])).is_err());
}
