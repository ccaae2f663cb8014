//! Envelopes written without a serializer: the JSON-RPC head and tail put around params and
//! results that are already encoded, so the writer copies each payload once. [`Outgoing`] is
//! what waits in the writer's queue.

use std::borrow::Cow;

use serde_json::value::RawValue;
use tether_spec::Id;

/// Whether a string is written in JSON as itself between quotes (nothing to escape).
pub(super) fn plain_json_str(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

pub(super) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if plain_json_str(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes an integer in decimal without the `String` that `to_string` would allocate.
pub(super) fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub(super) fn write_id(out: &mut Vec<u8>, id: &Id) {
    match id {
        Id::Int(n) => write_int(out, *n),
        Id::Str(s) => write_json_str(out, s),
    }
}

/// A frame waiting for the writer.
pub(super) enum Outgoing {
    /// A complete body.
    Body(Vec<u8>),
    /// A request whose method needs no escaping, put in its envelope by the writer.
    Request {
        /// The request's id.
        id: i64,
        /// The method, written between quotes as it is.
        method: Cow<'static, str>,
        /// The params.
        params: Box<RawValue>,
        /// What `{"$bytes": i}` in the params stand for.
        attachments: Vec<bytes::Bytes>,
    },
    /// A successful response to an integer id, put in its envelope by the writer.
    Result {
        /// The request's id.
        id: i64,
        /// The result.
        result: Box<RawValue>,
        /// What `{"$bytes": i}` in the result stand for.
        attachments: Vec<bytes::Bytes>,
    },
    /// A complete body with attachments (SPEC.md §2.8).
    Attached {
        /// The JSON body.
        body: Vec<u8>,
        /// Its attachments, in order.
        attachments: Vec<bytes::Bytes>,
    },
    /// Bytes already framed, which a write through the gate (`through`) could not finish.
    Framed(bytes::Bytes),
}

pub(super) const RESULT_HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
pub(super) const REQUEST_HEAD: &[u8] = RESULT_HEAD;
pub(super) const REQUEST_METHOD: &[u8] = br#","method":""#;
pub(super) const REQUEST_PARAMS: &[u8] = br#"","params":"#;
pub(super) const RESULT_MID: &[u8] = br#","result":"#;

impl Outgoing {
    /// What the message counts for in the write backlog: its payload's size.
    pub(super) fn weight(&self) -> usize {
        let attached = |a: &[bytes::Bytes]| a.iter().map(bytes::Bytes::len).sum::<usize>();
        match self {
            Outgoing::Body(body) => body.len(),
            Outgoing::Framed(bytes) => bytes.len(),
            Outgoing::Request { params, attachments, .. } => params.get().len() + attached(attachments),
            Outgoing::Result { result, attachments, .. } => result.get().len() + attached(attachments),
            Outgoing::Attached { body, attachments } => body.len() + attached(attachments),
        }
    }

    /// The attachments written after the body.
    pub(super) fn attachments(&self) -> &[bytes::Bytes] {
        match self {
            Outgoing::Body(_) | Outgoing::Framed(_) => &[],
            Outgoing::Request { attachments, .. }
            | Outgoing::Result { attachments, .. }
            | Outgoing::Attached { attachments, .. } => attachments,
        }
    }

    /// The body as three pieces written one after the other: the small head (built in
    /// `scratch`), the payload, and the tail.
    pub(super) fn parts<'a>(&'a self, scratch: &'a mut Vec<u8>) -> (&'a [u8], &'a [u8], &'a [u8]) {
        scratch.clear();
        match self.head_into(scratch) {
            Some((payload, tail)) => (scratch, payload, tail),
            None => (&[], self.complete_body().unwrap_or_default(), &[]),
        }
    }

    /// The body of a message that is already whole (`Body`, `Attached`); `None` for one the
    /// envelope is put around when it is written.
    pub(super) fn complete_body(&self) -> Option<&[u8]> {
        match self {
            Outgoing::Body(body) | Outgoing::Attached { body, .. } => Some(body),
            // Written as they are by the writer; never a body handed to a message sink.
            Outgoing::Framed(bytes) => Some(&bytes[..]),
            Outgoing::Request { .. } | Outgoing::Result { .. } => None,
        }
    }

    /// The whole body of an enveloped message (`Request`, `Result`) written into `out` (after
    /// what it holds), in one reservation; false (nothing written) for a whole one.
    pub(super) fn write_enveloped(&self, out: &mut Vec<u8>) -> bool {
        let Some(len) = self.enveloped_len() else { return false };
        out.reserve(len);
        if let Some((payload, tail)) = self.head_into(out) {
            out.extend_from_slice(payload);
            out.extend_from_slice(tail);
        }
        true
    }

    /// At least the length of an enveloped message's body.
    fn enveloped_len(&self) -> Option<usize> {
        match self {
            Outgoing::Request { method, params, .. } => {
                Some(ENVELOPE_MAX + method.len() + params.get().len())
            }
            Outgoing::Result { result, .. } => Some(ENVELOPE_MAX + result.get().len()),
            Outgoing::Body(_) | Outgoing::Attached { .. } | Outgoing::Framed(_) => None,
        }
    }

    /// Writes the head of an enveloped message into `out` and returns its payload and tail;
    /// `None` (nothing written) for a whole body.
    fn head_into(&self, out: &mut Vec<u8>) -> Option<(&[u8], &'static [u8])> {
        match self {
            Outgoing::Body(_) | Outgoing::Attached { .. } | Outgoing::Framed(_) => None,
            Outgoing::Request { id, method, params, .. } => {
                out.extend_from_slice(REQUEST_HEAD);
                write_int(out, *id);
                out.extend_from_slice(REQUEST_METHOD);
                out.extend_from_slice(method.as_bytes());
                out.extend_from_slice(REQUEST_PARAMS);
                Some((params.get().as_bytes(), b"}"))
            }
            Outgoing::Result { id, result, .. } => {
                out.extend_from_slice(RESULT_HEAD);
                write_int(out, *id);
                out.extend_from_slice(RESULT_MID);
                Some((result.get().as_bytes(), b"}"))
            }
        }
    }
}

/// The most an envelope adds around its payload besides the method name: head, id (at most 20
/// characters), the members' names, tail.
const ENVELOPE_MAX: usize = 64;

/// The number of bytes `write_int` writes for `n`.
pub(super) fn int_len(n: i64) -> usize {
    let digits = n.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1);
    digits + usize::from(n < 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_written_in_the_writer_order() {
        let mut out = Vec::new();
        write_json_str(&mut out, "kv.put");
        write_json_str(&mut out, "a\"b");
        assert_eq!(out, br#""kv.put""a\"b""#);
        let mut out = Vec::new();
        write_id(&mut out, &Id::Int(-3));
        write_id(&mut out, &Id::from("x"));
        assert_eq!(out, br#"-3"x""#);
        for n in [0, 7, 9, 10, -1, -10, 99, 100, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(int_len(n), out.len());
        }
        let result = RawValue::from_string(r#"{"a":1}"#.to_owned()).unwrap_or_default();
        let out = Outgoing::Result { id: -5, result, attachments: Vec::new() };
        let mut scratch = Vec::new();
        let (head, payload, tail) = out.parts(&mut scratch);
        assert_eq!([head, payload, tail].concat(), br#"{"jsonrpc":"2.0","id":-5,"result":{"a":1}}"#);
        let params = RawValue::from_string(r#"{"key":"k"}"#.to_owned()).unwrap_or_default();
        let out =
            Outgoing::Request { id: 12, method: Cow::Borrowed("kv.get"), params, attachments: Vec::new() };
        let (head, payload, tail) = out.parts(&mut scratch);
        assert_eq!(
            [head, payload, tail].concat(),
            br#"{"jsonrpc":"2.0","id":12,"method":"kv.get","params":{"key":"k"}}"#
        );
        assert!(plain_json_str("kv.get") && !plain_json_str("a\"b") && !plain_json_str("a\nb"));
    }

    #[test]
    fn a_whole_body_written_at_once_is_the_body_written_in_parts() {
        let params = RawValue::from_string(r#"{"key":"k"}"#.to_owned()).unwrap_or_default();
        let result = RawValue::from_string(r#"{"value":{"$bytes":0}}"#.to_owned()).unwrap_or_default();
        let messages = [
            Outgoing::Request { id: 12, method: Cow::Borrowed("kv.get"), params, attachments: Vec::new() },
            Outgoing::Result { id: -5, result, attachments: Vec::new() },
        ];
        let mut scratch = Vec::new();
        for out in &messages {
            let (head, payload, tail) = out.parts(&mut scratch);
            let in_parts = [head, payload, tail].concat();
            // Written after what the buffer holds, in one reservation.
            let mut whole = b"old".to_vec();
            assert!(out.write_enveloped(&mut whole));
            assert_eq!(&whole[3..], &in_parts[..]);
            assert!(out.complete_body().is_none());
        }
        let body = Outgoing::Body(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec());
        let mut untouched = Vec::new();
        assert!(!body.write_enveloped(&mut untouched) && untouched.is_empty());
        assert_eq!(body.complete_body(), Some(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..]));
    }
}
