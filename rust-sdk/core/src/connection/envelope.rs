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
        match self {
            Outgoing::Body(body) | Outgoing::Attached { body, .. } => (&[], body, &[]),
            // Written as they are by the writer; never a body handed to a message sink.
            Outgoing::Framed(bytes) => (&[], bytes, &[]),
            Outgoing::Request { id, method, params, .. } => {
                scratch.clear();
                scratch.extend_from_slice(REQUEST_HEAD);
                write_int(scratch, *id);
                scratch.extend_from_slice(REQUEST_METHOD);
                scratch.extend_from_slice(method.as_bytes());
                scratch.extend_from_slice(REQUEST_PARAMS);
                (scratch, params.get().as_bytes(), b"}")
            }
            Outgoing::Result { id, result, .. } => {
                scratch.clear();
                scratch.extend_from_slice(RESULT_HEAD);
                write_int(scratch, *id);
                scratch.extend_from_slice(RESULT_MID);
                (scratch, result.get().as_bytes(), b"}")
            }
        }
    }
}

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
}
