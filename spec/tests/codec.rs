//! The framing codec beyond its unit tests: random frames mixed with random garbage and split at
//! random points, huge declared lengths, the header block limit, and bounded memory.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use tether_spec::{
    encode_frame, Frame, FrameCodec, FrameError, GarbageReason, DEFAULT_MAX_FRAME_SIZE, MAX_HEADER_BLOCK,
    OVERSIZED_PREFIX,
};
use tokio_util::codec::Decoder;

/// SplitMix64: a tiny seeded generator, so that a failure can be replayed from its seed.
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
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

/// How many seeds a property test runs: `TETHER_CODEC_SEEDS` overrides the default.
fn seeds(default: u64) -> u64 {
    std::env::var("TETHER_CODEC_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn contains_header_name(bytes: &[u8]) -> bool {
    bytes.windows(15).any(|w| w.eq_ignore_ascii_case(b"content-length:"))
}

/// A body: JSON-like text, sometimes with frame-looking text inside it.
fn random_body(rng: &mut Rng) -> Vec<u8> {
    let mut body = b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"s\":\"".to_vec();
    let len = [0, 1, 10, 100, 3000, 70_000][rng.below(6)];
    body.extend(rng.bytes(len, b"abcXYZ019 :-{}[]\\/"));
    if rng.chance(20) {
        body.extend_from_slice(b"Content-Length: 3\r\n\r\n{}}");
    }
    body.extend_from_slice(b"\"}}");
    if rng.chance(5) {
        body.clear();
    }
    body
}

/// A frame in one of the header forms SPEC.md §2.3 allows.
fn random_frame(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut frame = match rng.below(6) {
        0 | 1 => {
            let mut f = BytesMut::new();
            encode_frame(body, &mut f);
            return f.to_vec();
        }
        2 => format!("content-length: {n}\r\n\r\n"),
        3 => format!(
            "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nCONTENT-LENGTH:  {n} \r\n\r\n"
        ),
        4 => format!("Content-Length:{n}\r\nX-Trace: abc\r\n\r\n"),
        _ => format!("X-A: 1\r\nContent-Length: {n}\r\nContent-Type: application/json\r\n\r\n"),
    }
    .into_bytes();
    frame.extend_from_slice(body);
    frame
}

/// Garbage that cannot contain `Content-Length:` (case-insensitively).
fn random_garbage(rng: &mut Rng) -> Vec<u8> {
    loop {
        let len = [1, 2, 5, 40, 600, 5000][rng.below(6)];
        let garbage = match rng.below(4) {
            0 => rng.bytes(len, b"hello world progress 50%\n"),
            1 => (0..len).map(|_| rng.next() as u8).collect(),
            2 => rng.bytes(len, b"Content-Lngth: 12\r\n"),
            _ => rng.bytes(len, b"abcdefghijklmnopqrstuvwxyz-"),
        };
        if !contains_header_name(&garbage) {
            return garbage;
        }
    }
}

/// Decodes `input` fed in random pieces; returns every frame, then the eof frames.
fn decode_in_pieces(rng: &mut Rng, codec: &mut FrameCodec, input: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let piece = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(16),
            2 => 1 + rng.below(4096),
            _ => 1 + rng.below(100_000),
        };
        let end = (pos + piece).min(input.len());
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

#[test]
fn every_frame_after_garbage_is_recovered() {
    for seed in 0..seeds(300) {
        let mut rng = Rng(seed);
        let mut input = Vec::new();
        let mut bodies = Vec::new();
        let mut had_garbage = false;
        for _ in 0..1 + rng.below(12) {
            if rng.chance(50) {
                input.extend(random_garbage(&mut rng));
                had_garbage = true;
            }
            let body = random_body(&mut rng);
            input.extend(random_frame(&mut rng, &body));
            bodies.push(body);
        }
        if rng.chance(30) {
            input.extend(random_garbage(&mut rng));
            had_garbage = true;
        }
        let frames = decode_in_pieces(&mut rng, &mut FrameCodec::new(), &input)
            .expect("the lenient codec never fails");
        let messages: Vec<&[u8]> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Message(b) => Some(&b[..]),
                _ => None,
            })
            .collect();
        let expected: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        if messages != expected {
            let shown: Vec<String> = frames
                .iter()
                .map(|f| match f {
                    Frame::Message(b) => format!("Message({})", tether_spec::format::show_bytes(b, 60)),
                    Frame::Garbage { bytes, reason } => {
                        format!("Garbage({reason}: {})", tether_spec::format::show_bytes(bytes, 200))
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            panic!(
                "seed {seed}: {} frames recovered of {}\ninput: {}\nframes: {shown:#?}",
                messages.len(),
                expected.len(),
                tether_spec::format::show_bytes(&input, 3000)
            );
        }
        if !had_garbage {
            assert!(
                frames.iter().all(|f| matches!(f, Frame::Message(_) | Frame::Truncated(_))),
                "seed {seed}"
            );
        }
        // Garbage is reported, never silently dropped: the bytes reported plus the frames add up.
        for f in &frames {
            if let Frame::Garbage { bytes, .. } = f {
                assert!(!bytes.is_empty(), "seed {seed}: an empty garbage report");
            }
        }
    }
}

#[test]
fn strict_mode_reads_random_writer_form_frames_split_anywhere() {
    for seed in 0..seeds(200) {
        let mut rng = Rng(seed);
        let mut input = BytesMut::new();
        let mut bodies = Vec::new();
        for _ in 0..1 + rng.below(10) {
            let body = random_body(&mut rng);
            encode_frame(&body, &mut input);
            bodies.push(body);
        }
        let frames = decode_in_pieces(&mut rng, &mut FrameCodec::builder().strict().build(), &input)
            .expect("writer-form input");
        let got: Vec<Vec<u8>> = frames
            .into_iter()
            .map(|f| match f {
                Frame::Message(b) => b.to_vec(),
                other => panic!("seed {seed}: {other:?}"),
            })
            .collect();
        assert!(got == bodies, "seed {seed}");
        // Any garbage before a frame is a violation in strict mode.
        let mut bad = random_garbage(&mut rng);
        bad.extend_from_slice(&input);
        assert!(
            decode_in_pieces(&mut rng, &mut FrameCodec::builder().strict().build(), &bad).is_err(),
            "seed {seed}"
        );
    }
}

fn decode_all(codec: &mut FrameCodec, input: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        out.push(frame);
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        out.push(frame);
    }
    out
}

fn msg(body: &[u8]) -> Frame {
    Frame::Message(bytes::Bytes::copy_from_slice(body))
}

#[test]
fn huge_declared_lengths_are_skipped_or_reported() {
    let next = b"Content-Length: 2\r\n\r\n{}";
    for (declared, oversized) in [
        ("33554433", true),
        ("9223372036854775807", true),
        ("9223372036854775808", true),
        ("18446744073709551615", true),
        ("18446744073709551616", false),
        ("99999999999999999999999999999999", false),
    ] {
        let mut input =
            format!("Content-Length: {declared}\r\n\r\n{{\"id\":1,\"method\":\"kv.put\"}}").into_bytes();
        input.extend_from_slice(next);
        let frames = decode_all(&mut FrameCodec::new(), &input);
        if oversized {
            // The skip swallows the rest of the input: the stream ends inside the huge body.
            assert!(
                matches!(&frames[..], [Frame::Truncated(b)] if b.starts_with(b"{\"id\":1")),
                "{declared}: {frames:?}"
            );
        } else {
            assert!(
                matches!(&frames[0], Frame::Garbage { reason: GarbageReason::BadLength(_), .. }),
                "{declared}: {frames:?}"
            );
            assert_eq!(frames.last(), Some(&msg(b"{}")), "{declared}");
        }
        let mut strict = FrameCodec::builder().strict().build();
        assert!(strict.decode(&mut BytesMut::from(&input[..])).is_err(), "strict accepted {declared}");
    }
    // A length just above a small maximum is skipped exactly, and the next frame is read.
    let mut codec = FrameCodec::builder().max_frame_size(4).build();
    let frames = decode_all(&mut codec, b"Content-Length: 5\r\n\r\n{\"a\"}Content-Length: 2\r\n\r\n{}");
    assert!(matches!(&frames[0], Frame::Oversized(o) if o.declared == 5 && &o.prefix[..] == b"{\"a\"}"));
    assert_eq!(frames[1], msg(b"{}"));
    // Exactly the maximum is a frame.
    let frames =
        decode_all(&mut FrameCodec::builder().max_frame_size(2).build(), b"Content-Length: 2\r\n\r\n{}");
    assert_eq!(frames, vec![msg(b"{}")]);
}

#[test]
fn a_declared_length_of_2_pow_63_never_grows_the_buffer() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"Content-Length: 9223372036854775808\r\n\r\n"[..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    let chunk = vec![b'A'; 64 * 1024];
    let mut max_capacity = 0;
    for _ in 0..2_000 {
        // 128 MiB in all, more than the default maximum frame size.
        buf.extend_from_slice(&chunk);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(buf.is_empty(), "skipped bytes are not kept");
        max_capacity = max_capacity.max(buf.capacity());
    }
    assert!(max_capacity <= 2 * chunk.len() + OVERSIZED_PREFIX, "the buffer grew to {max_capacity}");
    // The frame never ends: end of input reports it truncated, with only a bounded prefix.
    let frames: Vec<Frame> = std::iter::from_fn(|| codec.decode_eof(&mut buf).ok().flatten()).collect();
    assert!(matches!(&frames[..], [Frame::Truncated(b)] if b.len() == OVERSIZED_PREFIX));
    // A declared length within the maximum reserves at most the maximum.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(format!("Content-Length: {DEFAULT_MAX_FRAME_SIZE}\r\n\r\n").as_bytes());
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(buf.capacity() <= DEFAULT_MAX_FRAME_SIZE + 64);
}

/// A header block of exactly `len` bytes: `Content-Length: 2`, padding, the blank line.
fn header_block_of(len: usize) -> Vec<u8> {
    let head = b"Content-Length: 2\r\nX-Pad: ";
    let tail = b"\r\n\r\n";
    let mut block = head.to_vec();
    block.extend(std::iter::repeat_n(b'p', len - head.len() - tail.len()));
    block.extend_from_slice(tail);
    assert_eq!(block.len(), len);
    block
}

#[test]
fn the_header_block_limit_is_exact() {
    let next = b"Content-Length: 3\r\n\r\n[1]";
    // Exactly 4096 bytes: a frame, however the bytes arrive.
    let mut at_limit = header_block_of(MAX_HEADER_BLOCK);
    at_limit.extend_from_slice(b"{}");
    at_limit.extend_from_slice(next);
    for cut in (MAX_HEADER_BLOCK - 4..=MAX_HEADER_BLOCK + 2).chain([1, 100, 4000]) {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&at_limit[..cut]);
        let mut frames = Vec::new();
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            frames.push(f);
        }
        buf.extend_from_slice(&at_limit[cut..]);
        frames.extend(std::iter::from_fn(|| codec.decode(&mut buf).ok().flatten()));
        assert_eq!(frames, vec![msg(b"{}"), msg(b"[1]")], "cut at {cut}");
    }
    // One byte over: a broken header block, reported; the next frame is read.
    let mut over = header_block_of(MAX_HEADER_BLOCK + 1);
    over.extend_from_slice(b"{}");
    over.extend_from_slice(next);
    for cut in (MAX_HEADER_BLOCK - 4..=MAX_HEADER_BLOCK + 2).chain([1, 100, 4000]) {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&over[..cut]);
        let mut frames = Vec::new();
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            frames.push(f);
        }
        buf.extend_from_slice(&over[cut..]);
        frames.extend(std::iter::from_fn(|| codec.decode(&mut buf).ok().flatten()));
        assert!(
            matches!(&frames[0], Frame::Garbage { reason: GarbageReason::HeaderTooLong, .. }),
            "cut at {cut}: {:?}",
            &frames[..1]
        );
        assert!(!frames.contains(&msg(b"{}")), "cut at {cut}");
        assert_eq!(frames.last(), Some(&msg(b"[1]")), "cut at {cut}");
    }
}

#[test]
fn crlf_split_across_reads() {
    let input = b"Content-Length: 2\r\nX-A: b\r\n\r\n{}";
    for pieces in [vec![18, 1, 8, 1, 1, 1, 2], vec![17, 1, 1, 8, 1, 1, 3], vec![27, 1, 1, 2], vec![1; 32]] {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut pos = 0;
        for n in pieces {
            let end = (pos + n).min(input.len());
            buf.extend_from_slice(&input[pos..end]);
            pos = end;
            while let Ok(Some(f)) = codec.decode(&mut buf) {
                frames.push(f);
            }
        }
        assert_eq!(pos, input.len());
        assert_eq!(frames, vec![msg(b"{}")]);
    }
    // A lone \r at the end of a read is not yet a broken line.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"Content-Length: 2\r"[..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(b"\n\r");
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(b"\n{}");
    assert_eq!(codec.decode(&mut buf).ok().flatten(), Some(msg(b"{}")));
    // And in strict mode.
    let mut strict = FrameCodec::builder().strict().build();
    let mut buf = BytesMut::new();
    for piece in [&b"Content-Length: 2\r"[..], b"\n", b"\r", b"\n{", b"}"] {
        buf.extend_from_slice(piece);
        if let Some(f) = strict.decode(&mut buf).expect("writer form") {
            assert_eq!(f, msg(b"{}"));
        }
    }
}

#[test]
fn endless_garbage_is_consumed_not_buffered() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let mut rng = Rng(7);
    for _ in 0..500 {
        buf.extend(random_garbage(&mut rng));
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            assert!(matches!(f, Frame::Garbage { .. }), "{f:?}");
        }
        assert!(buf.len() < MAX_HEADER_BLOCK, "{} bytes of garbage kept", buf.len());
    }
}
