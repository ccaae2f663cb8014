//! Binary data on the wire: a base64 string, standard alphabet, padded (SPEC.md §5.3).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Bytes that travel as a padded standard-alphabet base64 string.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Takes the bytes out.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
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

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes(v.as_bytes().to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Encoded in small chunks straight into the serializer's output: no string of 4/3 the
        // value's size is allocated (and page-faulted in) for a large value.
        serializer.collect_str(&base64::display::Base64Display::new(&self.0, &STANDARD))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64Visitor;
        impl Visitor<'_> for Base64Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a padded standard base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes, E> {
                STANDARD
                    .decode(s)
                    .map(Bytes)
                    .map_err(|e| E::custom(format_args!("not valid padded base64: {e}")))
            }
        }
        deserializer.deserialize_str(Base64Visitor)
    }
}

impl JsonSchema for Bytes {
    fn schema_name() -> Cow<'static, str> {
        "Bytes".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "contentEncoding": "base64",
            "description": "Bytes as standard-alphabet base64 with padding (SPEC.md §5.3)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte_value() {
        let all: Vec<u8> = (0..=255).collect();
        let json = serde_json::to_string(&Bytes(all.clone())).unwrap_or_default();
        assert!(json.ends_with("==\""));
        assert_eq!(serde_json::from_str::<Bytes>(&json).ok(), Some(Bytes(all)));
        assert_eq!(serde_json::to_string(&Bytes::from("hello")).unwrap_or_default(), "\"aGVsbG8=\"");
        assert_eq!(serde_json::to_string(&Bytes::default()).unwrap_or_default(), "\"\"");
    }

    #[test]
    fn chunked_encoding_is_one_padded_string_at_every_length() {
        // The serializer is fed in chunks; padding may only appear at the very end.
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..70).chain([1023, 1024, 1025, 3071, 3072, 3073, 5000]) {
            let json = serde_json::to_string(&Bytes(data[..len].to_vec())).unwrap_or_default();
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
}
