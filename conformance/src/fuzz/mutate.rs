//! The fuzzer's generator: from the seed bodies, frames that are valid, mutated (bit flips,
//! truncations, wrong types, huge numbers, deep nesting) or mis-framed (wrong, negative or missing
//! `Content-Length`, garbage between frames), and generated messages the spec makes answers for
//! (unknown methods, unknown handles) or forbids answers to (stray responses).
//!
//! Every declared length it writes is within the maximum frame size (a header's digit flipped
//! makes a length at most ten times a seed's), or above it and followed by exactly that many bytes: a reader that follows SPEC.md §2.6
//! (skip an oversized frame by its declared length) can never be made to wait for more bytes than
//! the burst's tail provides (`burst::tail`).

use serde_json::{json, Value};

/// What the judge requires of an answer to one frame, if the plugin sends one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expect {
    /// An error with this code (§3.6 unknown method -32601, §6.2 unknown handle -32003, §2.6
    /// oversized -32004).
    Error(i64),
    /// A result (`tether/ping`, §4.5).
    Result,
    /// No answer at all: the frame is a response, and a response is never answered (§3.4.3).
    NoAnswer,
}

/// One input: the bytes written as they are, what made them, and what an answer must be.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// The bytes, written to the plugin's stdin as they are.
    pub(super) wire: Vec<u8>,
    /// The mutator or generator that made them (for the replay file).
    pub(super) kind: &'static str,
    /// The id a tracked answer carries and what it must be; none for most items.
    pub(super) expect: Option<(String, Expect)>,
}

/// A frame in the writer form of SPEC.md §2.2.
pub(super) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The generator: deterministic for a given seed.
pub(super) struct Gen {
    rng: fastrand::Rng,
    seeds: Vec<Vec<u8>>,
    /// Counts the generated ids, so that each tracked id is unique in the run.
    next: u64,
    /// The session's maximum frame size (oversized frames go just above it).
    max_frame: usize,
}

/// The mutators and generators, with their weights.
const KINDS: &[(&str, u32)] = &[
    ("valid", 150),
    ("valid-call", 80),
    ("bit-flip", 100),
    ("header-bit-flip", 30),
    ("truncated-body", 50),
    ("truncated-frame", 30),
    ("wrong-length", 40),
    ("bad-header", 50),
    ("garbage", 40),
    ("deep-nesting", 30),
    ("huge-number", 40),
    ("wrong-type", 100),
    ("unknown-method", 40),
    ("stray-response", 40),
    ("duplicate-id", 20),
    ("cancel-unknown", 30),
    ("bogus-handle", 30),
    ("oversized", 1),
    ("not-an-object", 20),
    ("bad-utf8", 30),
    ("unnegotiated-attachment", 10),
];

impl Gen {
    /// A generator over `seeds` (never empty: `corpus::seeds` always holds the checks' messages).
    pub(super) fn new(seed: u64, seeds: Vec<Vec<u8>>, max_frame: usize) -> Gen {
        Gen { rng: fastrand::Rng::with_seed(seed), seeds, next: 0, max_frame }
    }

    fn seed_body(&mut self) -> Vec<u8> {
        let i = self.rng.usize(..self.seeds.len().max(1));
        self.seeds.get(i).cloned().unwrap_or_else(|| b"{}".to_vec())
    }

    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("fz-{what}-{}", self.next)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.usize(..from.len())]
    }

    /// The next input.
    pub(super) fn item(&mut self) -> Item {
        let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(..total);
        let mut kind = "valid";
        for (k, w) in KINDS {
            if roll < *w {
                kind = k;
                break;
            }
            roll -= w;
        }
        let mut item = self.make(kind);
        if !super::corpus::allowed(&item.wire) {
            item = Item {
                wire: frame(br#"{"jsonrpc":"2.0","method":"$/nosuch","params":{}}"#),
                kind,
                expect: None,
            };
        }
        item
    }

    fn plain(&self, kind: &'static str, wire: Vec<u8>) -> Item {
        Item { wire, kind, expect: None }
    }

    fn make(&mut self, kind: &'static str) -> Item {
        match kind {
            "valid-call" => self.valid_call(),
            "bit-flip" => {
                let mut body = self.seed_body();
                let flips = self.rng.usize(1..=8);
                flip(&mut self.rng, &mut body, flips);
                self.plain(kind, frame(&body))
            }
            "header-bit-flip" => {
                // Flips in the header block: a digit may become a larger one (at most ten times
                // the length), a letter or a line end something else.
                let mut wire = frame(&self.seed_body());
                let end = wire.windows(4).position(|w| w == b"\r\n\r\n").map_or(wire.len(), |p| p + 4);
                let i = self.rng.usize(..end.max(1));
                let bit = self.rng.u8(..8);
                if let Some(b) = wire.get_mut(i) {
                    *b ^= 1 << bit;
                }
                self.plain(kind, wire)
            }
            "truncated-body" => {
                let body = self.seed_body();
                let cut = self.rng.usize(..body.len().max(1));
                self.plain(kind, frame(&body[..cut.min(body.len())]))
            }
            "truncated-frame" => {
                // The length says more than comes: the reader takes the next bytes as this body.
                let wire = frame(&self.seed_body());
                let cut = self.rng.usize(1..wire.len().max(2));
                self.plain(kind, wire[..cut.min(wire.len())].to_vec())
            }
            "wrong-length" => self.wrong_length(),
            "bad-header" => self.bad_header(),
            "garbage" => self.garbage(),
            "deep-nesting" => self.deep_nesting(),
            "huge-number" => self.huge_number(),
            "wrong-type" => self.wrong_type(),
            "unknown-method" => {
                let id = self.fresh("unknown");
                let method = match self.rng.u8(..4) {
                    0 => format!("fuzz.nosuch-{}", self.next),
                    1 => format!("tether/nosuch-{}", self.next),
                    2 => format!("kv.nosuch-{}", self.next),
                    _ => String::new(),
                };
                let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
                Item {
                    wire: frame(body.to_string().as_bytes()),
                    kind,
                    expect: Some((id, Expect::Error(-32601))),
                }
            }
            "stray-response" => {
                let id = self.fresh("stray");
                let body = if self.rng.bool() {
                    json!({"jsonrpc": "2.0", "id": id, "result": {"value": "aGk="}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "stray"}})
                };
                let mut wire = frame(body.to_string().as_bytes());
                // Responses to ids the plugin might really use, and a null id, untracked.
                if self.rng.u8(..3) == 0 {
                    let other = match self.rng.u8(..3) {
                        0 => json!(self.rng.i64(1..1000)),
                        1 => Value::Null,
                        _ => json!(self.rng.i64(i64::MIN..i64::MAX)),
                    };
                    let body = json!({"jsonrpc": "2.0", "id": other, "result": {}});
                    wire.extend_from_slice(&frame(body.to_string().as_bytes()));
                }
                Item { wire, kind, expect: Some((id, Expect::NoAnswer)) }
            }
            "duplicate-id" => {
                let body = self.seed_body();
                let mut wire = frame(&body);
                wire.extend_from_slice(&frame(&body));
                self.plain(kind, wire)
            }
            "cancel-unknown" => {
                let id = match self.rng.u8(..7) {
                    0 => json!(self.rng.i64(..)),
                    1 => json!(self.fresh("cancel")),
                    2 => Value::Null,
                    3 => json!({}),
                    4 => json!([1]),
                    5 => json!(1.5),
                    _ => json!(self.rng.i64(0..100)),
                };
                let body = match self.rng.u8(..4) {
                    0 => json!({"jsonrpc": "2.0", "method": "$/cancelRequest"}),
                    1 => json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": [id]}),
                    _ => json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": id}}),
                };
                self.plain(kind, frame(body.to_string().as_bytes()))
            }
            "bogus-handle" => {
                let id = self.fresh("handle");
                let handle = format!("fz-bogus-{}", self.next);
                match self.rng.u8(..3) {
                    0 => {
                        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tether/invoke",
                            "params": {"handle": handle, "method": "sum", "params": {"a": 1, "b": 2}}});
                        Item {
                            wire: frame(body.to_string().as_bytes()),
                            kind,
                            expect: Some((id, Expect::Error(-32003))),
                        }
                    }
                    1 => {
                        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tether/retain", "params": {"handle": handle}});
                        Item {
                            wire: frame(body.to_string().as_bytes()),
                            kind,
                            expect: Some((id, Expect::Error(-32003))),
                        }
                    }
                    _ => {
                        let body =
                            json!({"jsonrpc": "2.0", "method": "$/release", "params": {"handle": handle}});
                        self.plain(kind, frame(body.to_string().as_bytes()))
                    }
                }
            }
            "oversized" => {
                // A whole frame above the maximum, with its id first (§2.2): skipped by its
                // length and answered -32004 (§2.6.2).
                let id = self.fresh("oversized");
                let head =
                    format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tether/ping","params":{{"pad":""#);
                let pad = self.max_frame + self.rng.usize(1..4096) - head.len();
                let mut body = head.into_bytes();
                body.resize(body.len() + pad, b'x');
                body.extend_from_slice(b"\"}}");
                Item { wire: frame(&body), kind, expect: Some((id, Expect::Error(-32004))) }
            }
            "not-an-object" => {
                let body = match self.rng.u8(..8) {
                    0 => b"[]".to_vec(),
                    1 => {
                        let mut b = b"[".to_vec();
                        b.extend_from_slice(&self.seed_body());
                        b.push(b']');
                        b
                    }
                    2 => b"42".to_vec(),
                    3 => b"\"x\"".to_vec(),
                    4 => b"null".to_vec(),
                    5 => b"{}".to_vec(),
                    6 => Vec::new(),
                    _ => b"true".to_vec(),
                };
                self.plain(kind, frame(&body))
            }
            "bad-utf8" => {
                let mut body = self.seed_body();
                match self.rng.u8(..3) {
                    0 => {
                        // Bytes that are never UTF-8, inside a string where possible.
                        let at = body.iter().position(|&b| b == b'"').map_or(0, |p| p + 1);
                        let bad = [b"\xff".as_slice(), b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82"];
                        let pick = bad[self.rng.usize(..bad.len())];
                        body.splice(at..at, pick.iter().copied());
                    }
                    1 => {
                        // Valid JSON text, but a lone surrogate escape: not a Unicode string.
                        let key = self.pick(&[r"\ud800", r"\udfff", r"a\ud83d", r"\u0000"]);
                        let id = self.fresh("utf8");
                        body = format!(
                            r#"{{"jsonrpc":"2.0","id":"{id}","method":"kv.put","params":{{"key":"{key}","value":"aGk="}}}}"#
                        )
                        .into_bytes();
                    }
                    _ => {
                        let at = self.rng.usize(..body.len().max(1)).min(body.len());
                        body.insert(at, 0x80 | self.rng.u8(..0x40));
                    }
                }
                self.plain(kind, frame(&body))
            }
            "unnegotiated-attachment" => {
                let json = self.seed_body();
                let part = b"raw attachment bytes\r\nContent-Type: x\r\n".to_vec();
                let mut wire = format!(
                    "Content-Length: {}\r\nTether-Attachments: {}\r\n\r\n",
                    json.len() + part.len(),
                    part.len()
                )
                .into_bytes();
                wire.extend_from_slice(&json);
                wire.extend_from_slice(&part);
                self.plain(kind, wire)
            }
            _ => {
                let body = self.seed_body();
                self.plain("valid", frame(&body))
            }
        }
    }

    /// A valid call with a fresh id: a ping (its answer must be a result) or a kv call.
    fn valid_call(&mut self) -> Item {
        let id = self.fresh("call");
        let key = format!("fz-key-{}", self.rng.u8(..8));
        let (body, expect) = match self.rng.u8(..4) {
            0 => (
                json!({"jsonrpc": "2.0", "id": id, "method": "tether/ping", "params": {}}),
                Some(Expect::Result),
            ),
            1 => (
                json!({"jsonrpc": "2.0", "id": id, "method": "kv.put", "params": {"key": key, "value": "dmFsdWU="}}),
                None,
            ),
            2 => (json!({"jsonrpc": "2.0", "id": id, "method": "kv.get", "params": {"key": key}}), None),
            _ => (json!({"jsonrpc": "2.0", "id": id, "method": "kv.delete", "params": {"key": key}}), None),
        };
        Item { wire: frame(body.to_string().as_bytes()), kind: "valid-call", expect: expect.map(|e| (id, e)) }
    }

    fn wrong_length(&mut self) -> Item {
        let body = self.seed_body();
        let d = self.rng.usize(1..=64);
        let (declared, pad) = match self.rng.u8(..3) {
            // Longer, nothing more: the next bytes are read as the rest of this body.
            0 => (body.len() + d, 0),
            // Longer, padded: a body that is not JSON, the frames stay in step.
            1 => (body.len() + d, d),
            // Shorter: the rest of the body is bytes that are not a frame (§2.6.1).
            _ => (body.len().saturating_sub(d), 0),
        };
        let mut wire = format!("Content-Length: {declared}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&body);
        for _ in 0..pad {
            wire.push(self.rng.u8(b' '..=b'~'));
        }
        self.plain("wrong-length", wire)
    }

    fn bad_header(&mut self) -> Item {
        let body = self.seed_body();
        let n = body.len();
        let header = match self.rng.u8(..12) {
            0 => format!("Content-Length: -{n}\r\n\r\n"),
            1 => format!("Content-Length: +{n}\r\n\r\n"),
            2 => format!("Content-Length: 0x{n:x}\r\n\r\n"),
            3 => format!("Content-Length: {n} {n}\r\n\r\n"),
            4 => "Content-Length: \r\n\r\n".to_owned(),
            5 => format!("Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n"),
            6 => format!("Content-Length: {n}\n\n"),
            7 => format!("Content-Type: text/plain; charset=latin1\r\nContent-Length: {n}\r\n\r\n"),
            8 => format!("X-Pad: {}\r\nContent-Length: {n}\r\n\r\n", "a".repeat(5000)),
            9 => format!("content-length:{n}\r\n\r\n"),
            10 => format!("Content-Length: {n}.0\r\n\r\n"),
            _ => String::new(), // no header at all: the body alone
        };
        let mut wire = header.into_bytes();
        wire.extend_from_slice(&body);
        self.plain("bad-header", wire)
    }

    fn garbage(&mut self) -> Item {
        let wire = match self.rng.u8(..6) {
            0 => (0..self.rng.usize(1..200)).map(|_| self.rng.u8(..)).collect(),
            1 => b"hello from a stray print\n".to_vec(),
            2 => b"\r\n\r\n".to_vec(),
            3 => b"Content-Length: \r\n".to_vec(),
            4 => b"Content-Length: lots\r\n\r\n{}".to_vec(),
            _ => vec![0u8; self.rng.usize(1..64)],
        };
        // A random run of bytes that happened to declare a length could stall the reader.
        let wire = if has_length_header(&wire) && wire.len() > 30 { b"garbage\n".to_vec() } else { wire };
        self.plain("garbage", wire)
    }

    fn deep_nesting(&mut self) -> Item {
        let depth = *[129usize, 200, 1000, 5000, 20_000, 100_000].get(self.rng.usize(..6)).unwrap_or(&129);
        let (open, close) = if self.rng.bool() { ("[", "]") } else { ("{\"a\":", "}") };
        let mut nested = open.repeat(depth);
        if open == "[" {
            nested.push_str(&close.repeat(depth));
        } else {
            nested.push('1');
            nested.push_str(&close.repeat(depth));
        }
        let id = self.fresh("deep");
        let body = match self.rng.u8(..3) {
            0 => format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"kv.get","params":{{"key":{nested}}}}}"#),
            1 => format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"tether/ping","params":{{"deep":{nested}}}}}"#
            ),
            _ => format!(r#"{{"jsonrpc":"2.0","method":"$/setLogLevel","params":{{"level":{nested}}}}}"#),
        };
        self.plain("deep-nesting", frame(body.as_bytes()))
    }

    fn huge_number(&mut self) -> Item {
        let numbers = [
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775808",
            "9007199254740993",
            "1.7976931348623157e309",
            "123456789012345678901234567890123456789",
            "-0",
            "1E+2",
            "4.9e-400",
        ];
        let long = format!("1{}", "0".repeat(1000));
        let number = if self.rng.u8(..8) == 0 { long.as_str() } else { self.pick(&numbers) };
        let id = self.fresh("num");
        let body = match self.rng.u8(..7) {
            0 => format!(r#"{{"jsonrpc":"2.0","id":{number},"method":"tether/ping","params":{{}}}}"#),
            1 => format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"kv.get","params":{{"key":{number}}}}}"#),
            2 => format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"counter.put","params":{{"key":"c","value":{number},"adder":{{"$handle":"h-{id}","interface":"adder"}}}}}}"#
            ),
            3 => format!(r#"{{"jsonrpc":"2.0","method":"$/cancelRequest","params":{{"id":{number}}}}}"#),
            4 => format!(
                r#"{{"jsonrpc":"2.0","method":"$/stream.credit","params":{{"stream":{number},"bytes":{number}}}}}"#
            ),
            5 => format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"blob.download","params":{{"name":"x","_meta":{{"progressToken":{number}}}}}}}"#
            ),
            _ => format!(r#"{{"jsonrpc":"2.0","id":{number},"result":{{}}}}"#),
        };
        self.plain("huge-number", frame(body.as_bytes()))
    }

    /// A seed with one value replaced by one of another type, a member removed or one added.
    fn wrong_type(&mut self) -> Item {
        let body = self.seed_body();
        let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
            return self.plain("wrong-type", frame(&body));
        };
        let replacements = [
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(""),
            json!("x"),
            json!([]),
            json!({}),
            json!([1, "2", null]),
            json!({"a": {"b": []}}),
            json!({"$handle": "fz", "interface": "adder"}),
            json!({"$bytes": 0}),
        ];
        let replacement = replacements[self.rng.usize(..replacements.len())].clone();
        // The path is chosen first, as a JSON pointer, then followed mutably once.
        let mut pointer = String::new();
        let mut at = &value;
        for _ in 0..self.rng.usize(1..=4) {
            let next = match at {
                Value::Object(map) if !map.is_empty() => {
                    let i = self.rng.usize(..map.len());
                    map.iter().nth(i).map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
                }
                Value::Array(items) if !items.is_empty() => {
                    let i = self.rng.usize(..items.len());
                    items.get(i).map(|v| (i.to_string(), v))
                }
                _ => None,
            };
            match next {
                Some((step, v)) => {
                    pointer.push('/');
                    pointer.push_str(&step);
                    at = v;
                }
                None => break,
            }
        }
        let roll = self.rng.u8(..4);
        let Some(at) = value.pointer_mut(&pointer) else {
            return self.plain("wrong-type", frame(&body));
        };
        match (roll, &mut *at) {
            (0, Value::Object(map)) if !map.is_empty() => {
                let i = self.rng.usize(..map.len());
                if let Some(k) = map.keys().nth(i).cloned() {
                    map.remove(&k);
                }
            }
            (1, Value::Object(map)) => {
                map.insert("fuzzExtra".into(), replacement);
            }
            _ => *at = replacement,
        }
        self.plain("wrong-type", frame(value.to_string().as_bytes()))
    }
}

/// Flips `n` random bits of `bytes`.
fn flip(rng: &mut fastrand::Rng, bytes: &mut [u8], n: usize) {
    if bytes.is_empty() {
        return;
    }
    for _ in 0..n {
        let i = rng.usize(..bytes.len());
        bytes[i] ^= 1 << rng.u8(..8);
    }
}

/// Whether `bytes` hold `content-length:` (any case) followed by a digit, after optional spaces.
pub(super) fn has_length_header(bytes: &[u8]) -> bool {
    declared_lengths(bytes).next().is_some()
}

/// Every length declared in `bytes` (`content-length:` in any case, optional spaces or tabs,
/// then digits), saturating.
pub(super) fn declared_lengths(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    const NAME: &[u8] = b"content-length:";
    (0..bytes.len().saturating_sub(NAME.len() - 1)).filter_map(move |i| {
        if !bytes[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            return None;
        }
        let rest = &bytes[i + NAME.len()..];
        let start = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
        let digits: Vec<u8> = rest[start..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        if digits.is_empty() {
            return None;
        }
        Some(digits.iter().fold(0usize, |n, d| n.saturating_mul(10).saturating_add(usize::from(d - b'0'))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> Gen {
        Gen::new(7, super::super::corpus::seeds().unwrap_or_default(), tether_spec::MIN_MAX_FRAME_SIZE)
    }

    #[test]
    fn a_seed_gives_the_same_items() {
        let (mut a, mut b) = (gen(), gen());
        for _ in 0..2000 {
            assert_eq!(a.item().wire, b.item().wire);
        }
    }

    #[test]
    fn every_kind_is_made_and_no_declared_length_can_stall_a_reader() {
        let mut g = gen();
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let item = g.item();
            kinds.insert(item.kind);
            for n in declared_lengths(&item.wire) {
                // Above the maximum only a whole oversized frame, skipped by its length; the
                // rest within it, so that the tail (at most the maximum) always covers them.
                let whole = item.kind == "oversized" && n + 22 < item.wire.len();
                assert!(whole || n <= tether_spec::MIN_MAX_FRAME_SIZE, "{} declares {n}", item.kind);
            }
            assert!(super::super::corpus::allowed(&item.wire));
        }
        assert_eq!(kinds.len(), KINDS.len(), "{kinds:?}");
    }

    #[test]
    fn declared_lengths_are_found_in_any_case() {
        let found: Vec<usize> =
            declared_lengths(b"xx content-LENGTH:  12\r\nContent-Length: -3 Content-Length:7").collect();
        assert_eq!(found, vec![12, 7]);
    }
}
