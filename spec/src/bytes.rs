//! Binary data on the wire: a base64 string, standard alphabet, padded (SPEC.md §5.3), or an
//! attachment reference `{"$bytes": i}` inside the scopes that a connection opens once
//! attachments are negotiated (SPEC.md §2.8).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// The member name of an attachment reference, `{"$bytes": i}` (SPEC.md §2.8.2).
pub const BYTES_REF: &str = "$bytes";

/// Bytes that travel as a padded standard-alphabet base64 string, or as an attachment
/// (`{"$bytes": i}`) while an attachment sink or source is active on the thread (SPEC.md §2.8).
///
/// The bytes are a shared [`bytes::Bytes`]: an attachment read from the wire becomes a `Bytes`
/// without a copy (it stays a slice of the frame's buffer), and writing one as an attachment
/// hands out a reference-counted clone, not a copy.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub bytes::Bytes);

impl Bytes {
    /// The shared bytes.
    pub fn into_inner(self) -> bytes::Bytes {
        self.0
    }

    /// The bytes as a vector (without a copy when nothing else shares them).
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v.into())
    }
}

impl From<bytes::Bytes> for Bytes {
    fn from(v: bytes::Bytes) -> Self {
        Bytes(v)
    }
}

impl From<Bytes> for bytes::Bytes {
    fn from(v: Bytes) -> Self {
        v.0
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(v: Bytes) -> Self {
        v.into_vec()
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(bytes::Bytes::copy_from_slice(v))
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes(bytes::Bytes::copy_from_slice(v.as_bytes()))
    }
}

thread_local! {
    /// Where `Bytes` values being serialized go as attachments, while a sink is active.
    static SINK: RefCell<Option<Vec<bytes::Bytes>>> = const { RefCell::new(None) };
    /// The attachments of the frame being deserialized, while a source is active.
    static SOURCE: RefCell<Option<Vec<bytes::Bytes>>> = const { RefCell::new(None) };
}

/// Restores a thread-local slot when a scope ends, even by unwinding, so that a panicking
/// serializer cannot leave a sink active for unrelated code on the same thread.
struct Restore<'a> {
    slot: &'static std::thread::LocalKey<RefCell<Option<Vec<bytes::Bytes>>>>,
    previous: Option<Vec<bytes::Bytes>>,
    out: Option<&'a mut Vec<bytes::Bytes>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let ours = self.slot.with(|s| s.replace(previous));
        if let (Some(out), Some(ours)) = (self.out.take(), ours) {
            *out = ours;
        }
    }
}

/// Runs `f` (which serializes one frame's JSON body) with an attachment sink: every [`Bytes`]
/// serialized on this thread inside `f` is pushed onto `sink` (a clone of its shared buffer, not
/// a copy) and written as `{"$bytes": i}`, `i` its index in `sink`.
///
/// How a connection uses it (SPEC.md §2.8.3): only after attachments are negotiated, and around
/// exactly the serialization whose text goes into one frame, starting with an empty `sink`
/// (indices count from the sink's length, so a sink that already holds a frame's attachments
/// numbers the next values after them: serialize params first and the envelope around them
/// later, in the same sink). The frame is then `Content-Length: T`, `Tether-Attachments:` with
/// the sink's lengths, the JSON and the sink's buffers in order (`OutgoingFrame::new`). A
/// serialization that fails drops the sink with it. Without a sink, `Bytes` is base64. Scopes
/// nest: an inner sink hides the outer one until it ends.
pub fn with_attachment_sink<R>(sink: &mut Vec<bytes::Bytes>, f: impl FnOnce() -> R) -> R {
    let start = std::mem::take(sink);
    let previous = SINK.with(|s| s.replace(Some(start)));
    let _restore = Restore { slot: &SINK, previous, out: Some(sink) };
    f()
}

/// Runs `f` (which deserializes from one frame's JSON body, in whole or in part) with that frame's
/// attachments as the source of `{"$bytes": i}` references: such a reference deserializes as a
/// [`Bytes`] sharing attachment `i`'s buffer (no copy). A reference to an attachment the frame does
/// not have is a deserialization error, which a connection answers as invalid params (-32602) for
/// a request, or treats as a local error for a response (SPEC.md §2.8.2).
///
/// How a connection uses it: when it deserializes params or a result of a frame read as
/// `Frame::Attached`, inside this scope with the frame's attachments; everything else (plain
/// frames, and all frames before negotiation) outside any source, so that `{"$bytes": i}` there
/// is an error. Keep the frame's attachments with its raw params until the typed handler
/// deserializes them, since that may happen later on another thread.
pub fn with_attachment_source<R>(attachments: &[bytes::Bytes], f: impl FnOnce() -> R) -> R {
    with_owned_attachment_source(attachments.to_vec(), f)
}

/// [`with_attachment_source`] for a caller that owns the frame's attachments and is done with
/// them after `f`: they are moved into the scope rather than cloned one by one.
pub fn with_owned_attachment_source<R>(attachments: Vec<bytes::Bytes>, f: impl FnOnce() -> R) -> R {
    let previous = SOURCE.with(|s| s.replace(Some(attachments)));
    let _restore = Restore { slot: &SOURCE, previous, out: None };
    f()
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = SINK.with(|s| {
            s.borrow_mut().as_mut().map(|sink| {
                sink.push(self.0.clone());
                sink.len() - 1
            })
        });
        if let Some(index) = index {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(BYTES_REF, &index)?;
            return map.end();
        }
        // Encoded in small chunks straight into the serializer's output: no string of 4/3 the
        // value's size is allocated (and page-faulted in) for a large value.
        serializer.collect_str(&base64::display::Base64Display::new(&self.0, &STANDARD))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a padded standard base64 string or an attachment reference {\"$bytes\": i}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes, E> {
                STANDARD
                    .decode(s)
                    .map(Bytes::from)
                    .map_err(|e| E::custom(format_args!("not valid padded base64: {e}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
                let not_a_ref =
                    || de::Error::custom("an object in place of bytes must be exactly {\"$bytes\": i}");
                let Some(IsBytesRef(true)) = map.next_key::<IsBytesRef>()? else { return Err(not_a_ref()) };
                let index: u64 = map.next_value()?;
                if map.next_key::<IsBytesRef>()?.is_some() {
                    return Err(not_a_ref());
                }
                attachment(index).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(BytesVisitor)
    }
}

/// Whether an object's key is `$bytes`, read without copying it into a `String` (as a
/// `Cow<str>` key would be: serde deserializes `Cow` as owned).
struct IsBytesRef(bool);

impl<'de> Deserialize<'de> for IsBytesRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IsBytesRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<IsBytesRef, E> {
                Ok(IsBytesRef(key == BYTES_REF))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Attachment `index` of the active source.
fn attachment(index: u64) -> Result<Bytes, String> {
    SOURCE.with(|s| match s.borrow().as_ref() {
        None => Err(format!(
            "{{\"$bytes\": {index}}} outside a frame with attachments (attachments are not negotiated, or the frame has none)"
        )),
        Some(all) => usize::try_from(index)
            .ok()
            .and_then(|i| all.get(i))
            .map(|b| Bytes(b.clone()))
            .ok_or_else(|| format!("{{\"$bytes\": {index}}} but the frame has {} attachments", all.len())),
    })
}

impl JsonSchema for Bytes {
    fn schema_name() -> Cow<'static, str> {
        "Bytes".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes as standard-alphabet base64 with padding (SPEC.md §5.3), or, once attachments are negotiated, a reference to an attachment of the same frame (SPEC.md §2.8).",
            "anyOf": [
                { "type": "string", "contentEncoding": "base64" },
                {
                    "type": "object",
                    "properties": { "$bytes": { "type": "integer", "minimum": 0 } },
                    "required": ["$bytes"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte_value() {
        let all: Vec<u8> = (0..=255).collect();
        let json = serde_json::to_string(&Bytes::from(all.clone())).unwrap_or_default();
        assert!(json.ends_with("==\""));
        assert_eq!(serde_json::from_str::<Bytes>(&json).ok(), Some(Bytes::from(all)));
        assert_eq!(serde_json::to_string(&Bytes::from("hello")).unwrap_or_default(), "\"aGVsbG8=\"");
        assert_eq!(serde_json::to_string(&Bytes::default()).unwrap_or_default(), "\"\"");
    }

    #[test]
    fn chunked_encoding_is_one_padded_string_at_every_length() {
        // The serializer is fed in chunks; padding may only appear at the very end.
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..70).chain([1023, 1024, 1025, 3071, 3072, 3073, 5000]) {
            let json = serde_json::to_string(&Bytes::from(&data[..len])).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", STANDARD.encode(&data[..len])), "length {len}");
        }
    }

    #[test]
    fn rejects_unpadded_and_foreign_alphabets() {
        assert!(serde_json::from_str::<Bytes>("\"aGVsbG8\"").is_err());
        assert!(serde_json::from_str::<Bytes>("\"a-_b\"").is_err());
        assert!(serde_json::from_str::<Bytes>("\"aGVs\\nbG8=\"").is_err());
        assert!(serde_json::from_str::<Bytes>("12").is_err());
    }

    #[test]
    fn a_sink_turns_values_into_attachment_references_without_copying() {
        let value = bytes::Bytes::from_static(b"raw bytes");
        let pair = (Bytes(value.clone()), Bytes::from("second"));
        let mut sink = Vec::new();
        let json = with_attachment_sink(&mut sink, || serde_json::to_string(&pair)).unwrap_or_default();
        assert_eq!(json, r#"[{"$bytes":0},{"$bytes":1}]"#);
        assert_eq!(sink.len(), 2);
        assert_eq!(sink[0].as_ptr(), value.as_ptr());
        assert_eq!(&sink[1][..], b"second");
        // Outside the scope, base64 again.
        assert_eq!(serde_json::to_string(&pair.1).unwrap_or_default(), "\"c2Vjb25k\"");
    }

    #[test]
    fn a_source_resolves_references_and_rejects_missing_ones() {
        let attachments = [bytes::Bytes::from_static(b"zero"), bytes::Bytes::from_static(b"one")];
        let got: Option<(Bytes, Bytes)> =
            with_attachment_source(&attachments, || serde_json::from_str(r#"[{"$bytes":1},"aGk="]"#).ok());
        let (one, hi) = got.unwrap_or_default();
        assert_eq!(&one[..], b"one");
        assert_eq!(one.0.as_ptr(), attachments[1].as_ptr());
        assert_eq!(&hi[..], b"hi");
        // The key is read as a string, escapes included.
        let escaped: Option<Bytes> =
            with_attachment_source(&attachments, || serde_json::from_str(r#"{"\u0024bytes":0}"#).ok());
        assert_eq!(escaped.as_deref(), Some(&b"zero"[..]));
        let err = with_attachment_source(&attachments, || serde_json::from_str::<Bytes>(r#"{"$bytes":2}"#))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("has 2 attachments"), "{err}");
        let err =
            serde_json::from_str::<Bytes>(r#"{"$bytes":0}"#).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not negotiated"), "{err}");
        for bad in [r#"{"$bytes":0,"x":1}"#, r#"{"x":0}"#, r#"{"$bytes":-1}"#, r#"{}"#] {
            assert!(
                with_attachment_source(&attachments, || serde_json::from_str::<Bytes>(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
