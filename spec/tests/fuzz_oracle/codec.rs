//! The frame codec's fuzz oracle: a slow reference decoder written from SPEC.md §2.3 and §2.6,
//! and the invariants every input must keep (no panic, the same frames however the input is
//! chunked, bounded buffers, strict mode a prefix of lenient mode). Shared by the `codec` fuzz
//! target (`spec/fuzz/`) and by `spec/tests/fuzz_corpus.rs`, which replays the committed corpus
//! through the same checks on stable Rust.

use bytes::BytesMut;
use tether_spec::{Frame, FrameCodec, Mode, MAX_HEADER_BLOCK, OVERSIZED_PREFIX};
use tokio_util::codec::Decoder;

/// How one fuzz input is read: the first bytes choose the codec and the chunking, the rest is the
/// byte stream (see [`split_input`]).
#[derive(Debug, Clone)]
pub struct Case<'a> {
    /// The maximum frame size the codec is built with (small ones reach the oversized path).
    pub max: usize,
    /// Whether attachments are negotiated.
    pub attachments: bool,
    /// The sizes the stream is fed in, cycled; empty means one piece.
    pub chunks: Vec<usize>,
    /// The byte stream.
    pub stream: &'a [u8],
}

/// The maximum frame sizes a case may use: tiny ones make oversized frames common.
const MAXES: [usize; 4] = [0, 24, 300, 33_554_432];

/// Reads a case from fuzz bytes: byte 0 picks the maximum (bits 0-1) and attachments (bit 2);
/// byte 1 the number of chunk sizes (low 4 bits); then that many sizes; then the stream.
pub fn split_input(data: &[u8]) -> Case<'_> {
    let config = data.first().copied().unwrap_or(0);
    let n = usize::from(data.get(1).copied().unwrap_or(0) & 0x0f);
    let start = (2 + n).min(data.len());
    let chunks = data.get(2..start).unwrap_or(&[]).iter().map(|&b| usize::from(b) + 1).collect();
    Case { max: MAXES[usize::from(config & 3)], attachments: config & 4 != 0, chunks, stream: &data[start..] }
}

/// Builds the fuzz bytes of a case: the inverse of [`split_input`] (used to seed the corpus).
pub fn join_input(max_index: u8, attachments: bool, chunks: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut out = vec![(max_index & 3) | if attachments { 4 } else { 0 }, chunks.len().min(15) as u8];
    out.extend(chunks.iter().take(15).map(|c| c.saturating_sub(1)));
    out.extend_from_slice(stream);
    out
}

/// What a decoder reported, with runs of garbage merged: how garbage is cut into reports depends
/// on how the input arrived, what it is does not.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A frame's body.
    Message(Vec<u8>),
    /// A frame with attachments: its JSON and attachments, joined.
    Attached(Vec<u8>),
    /// A frame whose attachment header was bad.
    BadAttachments(Vec<u8>),
    /// Skipped bytes that were not a frame (adjacent reports merged).
    Garbage(Vec<u8>),
    /// An oversized frame: its declared length and kept prefix.
    Oversized(u64, Vec<u8>),
    /// End of input inside a frame.
    Truncated(Vec<u8>),
}

fn push(events: &mut Vec<Event>, event: Event) {
    if let (Some(Event::Garbage(prev)), Event::Garbage(more)) = (events.last_mut(), &event) {
        prev.extend_from_slice(more);
        return;
    }
    events.push(event);
}

fn event_of(frame: Frame) -> Event {
    match frame {
        Frame::Message(b) => Event::Message(b.to_vec()),
        Frame::Attached(a) => {
            let mut all = a.body.to_vec();
            for part in &a.attachments {
                all.extend_from_slice(part);
            }
            Event::Attached(all)
        }
        Frame::BadAttachments { bytes, .. } => Event::BadAttachments(bytes.to_vec()),
        Frame::Garbage { bytes, .. } => Event::Garbage(bytes.to_vec()),
        Frame::Oversized(o) => Event::Oversized(o.declared, o.prefix.to_vec()),
        Frame::Truncated(b) => Event::Truncated(b.to_vec()),
    }
}

/// What one decoding run gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The frames, garbage runs merged.
    pub events: Vec<Event>,
    /// Strict mode: the codec reported a violation (and reading stopped there).
    pub violation: bool,
}

/// Feeds `stream` to a codec in pieces of `chunks` (cycled; the whole stream at once when empty),
/// decoding after each piece and at the end, and checks the buffer never grows beyond what
/// the pieces and the frame limit explain.
pub fn decode_run(mode: Mode, case: &Case<'_>) -> Run {
    let mut codec =
        FrameCodec::builder().mode(mode).max_frame_size(case.max).attachments(case.attachments).build();
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut sizes = case.chunks.iter().copied().cycle();
    // The memory bound: the buffer holds at most a header block, a body within the limit (which
    // the codec may reserve on its declared length) and the largest piece; a declared length
    // above the limit must not count (§2.5). Its capacity may be up to four times that: `BytesMut`
    // doubles and keeps consumed room (the first bound, at twice, was found too tight by the
    // fuzzer on growth alone: `regressions/codec/buffer-capacity-growth`).
    let largest = case.chunks.iter().copied().max().unwrap_or(case.stream.len());
    let held = MAX_HEADER_BLOCK + case.max + largest;
    let check_buf = |buf: &BytesMut| {
        assert!(buf.len() <= held, "{} bytes held, above {held}", buf.len());
        assert!(buf.capacity() <= 4 * held + 64, "a buffer of {} bytes, above 4 x {held}", buf.capacity());
    };
    while fed < case.stream.len() {
        let piece = if case.chunks.is_empty() { case.stream.len() } else { sizes.next().unwrap_or(1) };
        let end = (fed + piece).min(case.stream.len());
        buf.extend_from_slice(&case.stream[fed..end]);
        fed = end;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => push(&mut events, check_frame(frame, case.max)),
                Ok(None) => break,
                Err(_) => return Run { events, violation: true },
            }
            check_buf(&buf);
        }
        check_buf(&buf);
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => push(&mut events, check_frame(frame, case.max)),
            Ok(None) => break,
            Err(_) => return Run { events, violation: true },
        }
    }
    assert!(buf.is_empty(), "bytes left in the buffer after the end of input");
    Run { events, violation: false }
}

/// Per-frame bounds of SPEC.md §2.5 and §2.6.
fn check_frame(frame: Frame, max: usize) -> Event {
    match &frame {
        Frame::Message(b) => assert!(b.len() <= max, "a message of {} bytes above the limit {max}", b.len()),
        Frame::Oversized(o) => {
            assert!(o.declared > max as u64, "an oversized frame within the limit");
            assert!(o.prefix.len() <= OVERSIZED_PREFIX, "an oversized prefix of {} bytes", o.prefix.len());
            // Attribution reads untrusted bytes: it must not panic whatever they are.
            let _ = o.attribution();
        }
        Frame::Garbage { bytes, .. } => assert!(!bytes.is_empty(), "an empty garbage report"),
        _ => {}
    }
    event_of(frame)
}

/// Every check on one fuzz input; panics (the fuzzer's crash) on a violation.
pub fn check(data: &[u8]) {
    let case = split_input(data);
    let whole = Case { chunks: Vec::new(), ..case.clone() };
    let lenient = decode_run(Mode::Lenient, &whole);
    assert!(!lenient.violation, "lenient mode reported a violation");
    assert_eq!(decode_run(Mode::Lenient, &case), lenient, "lenient: chunked and whole input differ");
    let strict = decode_run(Mode::Strict, &whole);
    assert_eq!(decode_run(Mode::Strict, &case), strict, "strict: chunked and whole input differ");
    if !case.attachments {
        assert_eq!(
            lenient.events,
            reference(case.stream, case.max),
            "lenient codec and the reference differ"
        );
    }
    // Strict mode accepts a subset of what lenient mode accepts, in the same order.
    let strict_len = strict.events.len();
    assert!(
        strict.events.iter().all(|e| matches!(e, Event::Message(_) | Event::Attached(_))),
        "strict mode reported a frame instead of failing: {:?}",
        strict.events
    );
    assert!(lenient.events.len() >= strict_len, "strict mode read more frames than lenient mode");
    assert_eq!(
        strict.events[..],
        lenient.events[..strict_len],
        "strict frames are not lenient's first frames"
    );
    if !strict.violation {
        assert_eq!(
            strict.events, lenient.events,
            "strict mode passed input that lenient mode reads differently"
        );
    }
}

// ---- The reference decoder, from the text of SPEC.md §2.3 and §2.6 ----
// Whole input at once, no incremental state: a header block is read from a position, the frame
// taken or the bytes discarded up to the next `Content-Length:`. It reads without attachments
// (§2.8 applies only once negotiated).

const NAME: &[u8] = b"content-length:";

/// The header block at the start of `input`, as SPEC.md §2.3 defines it.
enum Block {
    /// A valid block of `len` bytes declaring `length`; `foreign` when `Content-Type` names a
    /// charset other than UTF-8.
    Valid { len: usize, length: u64, foreign: bool },
    /// Not a header block: to discard and resynchronise (§2.6.1).
    Broken,
    /// The input ends inside what could still be a header block (§2.6.3).
    Unfinished,
}

/// RFC 7230 `tchar`: the bytes of a header name.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7230 field-value bytes: visible ASCII, space, tab and bytes above 0x7f.
fn value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Whitespace around a value (RFC 7230 OWS): spaces and tabs only.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether `line` (no `\r\n` in it) can still grow into a header line.
fn could_be_line(line: &[u8]) -> bool {
    let name = line.iter().take_while(|&&b| tchar(b)).count();
    match line.get(name) {
        None => true,
        Some(b':') => name > 0 && line[name + 1..].iter().all(|&b| value_byte(b)),
        Some(_) => false,
    }
}

/// The charset of a `Content-Type` value when it is not UTF-8.
fn foreign_charset(value: &[u8]) -> bool {
    let value = String::from_utf8_lossy(value);
    value.split(';').skip(1).any(|param| {
        let Some((key, v)) = param.split_once('=') else { return false };
        let v = trim_ows(v.as_bytes());
        let v = v.strip_prefix(b"\"").unwrap_or(v);
        let v = v.strip_suffix(b"\"").unwrap_or(v);
        trim_ows(key.as_bytes()).eq_ignore_ascii_case(b"charset")
            && !(v.eq_ignore_ascii_case(b"utf-8") || v.eq_ignore_ascii_case(b"utf8"))
    })
}

fn header_block(input: &[u8]) -> Block {
    let mut pos = 0;
    let mut lengths = Vec::new();
    let mut foreign = false;
    loop {
        let line_end = input[pos..].windows(2).position(|w| w == b"\r\n").map(|i| pos + i);
        // The block, blank line included, is at most MAX_HEADER_BLOCK bytes.
        let Some(end) = line_end.filter(|&e| e + 2 <= MAX_HEADER_BLOCK) else {
            if input.len() >= MAX_HEADER_BLOCK {
                return Block::Broken;
            }
            let rest = &input[pos..];
            let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
            return if could_be_line(rest) { Block::Unfinished } else { Block::Broken };
        };
        let line = &input[pos..end];
        if line.is_empty() {
            if pos == 0 || lengths.len() != 1 {
                return Block::Broken;
            }
            let value = trim_ows(lengths[0]);
            let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
            let length = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
            return match length {
                Some(length) if digits => Block::Valid { len: end + 2, length, foreign },
                _ => Block::Broken,
            };
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { return Block::Broken };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) || !value.iter().all(|&b| value_byte(b)) {
            return Block::Broken;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            // The spec allows one Content-Type; with several, the last one decides.
            foreign = foreign_charset(value);
        }
        pos = end + 2;
    }
}

/// The lenient reader of SPEC.md §2.3/§2.6 on a whole input, without attachments.
pub fn reference(input: &[u8], max: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < input.len() {
        let rest = &input[p..];
        match header_block(rest) {
            Block::Valid { len, length, foreign } => {
                let body = &rest[len..];
                let complete = (body.len() as u64) >= length;
                let take = usize::try_from(length).unwrap_or(usize::MAX).min(body.len());
                let prefix = body[..take.min(OVERSIZED_PREFIX)].to_vec();
                if foreign || length > max as u64 {
                    // Skipped whole, keeping a bounded prefix; at the end of input what was kept
                    // is the truncated frame.
                    let event = match (complete, foreign) {
                        (false, _) => Event::Truncated(prefix),
                        (true, true) => Event::Garbage([&rest[..len], &prefix[..]].concat()),
                        (true, false) => Event::Oversized(length, prefix),
                    };
                    push(&mut out, event);
                } else if complete {
                    push(&mut out, Event::Message(body[..take].to_vec()));
                } else {
                    push(&mut out, Event::Truncated(rest.to_vec()));
                }
                p += len + take;
            }
            Block::Unfinished => {
                push(&mut out, Event::Truncated(rest.to_vec()));
                p = input.len();
            }
            Block::Broken => {
                // Resynchronise at the next `Content-Length:` after the first discarded byte.
                let next = (1..rest.len()).find(|&i| {
                    rest[i..].len() >= NAME.len() && rest[i..i + NAME.len()].eq_ignore_ascii_case(NAME)
                });
                // Without one, a tail that could begin one stays, to be read at the end of input.
                let cut = next.unwrap_or_else(|| {
                    let tail = (1..rest.len().min(NAME.len()))
                        .rev()
                        .find(|&n| rest[rest.len() - n..].eq_ignore_ascii_case(&NAME[..n]))
                        .unwrap_or(0);
                    rest.len() - tail
                });
                push(&mut out, Event::Garbage(rest[..cut].to_vec()));
                p += cut;
            }
        }
    }
    out
}
