//! JSON for a person: a value read with the attachments of its frame, whose bytes references
//! (`{"$bytes": i}`, SPEC.md §2.8) are replaced by the base64 of the bytes they stand for.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A JSON value in which every bytes value is a base64 string, however it travelled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shown(pub(crate) Value);

impl<'de> Deserialize<'de> for Shown {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Deserialized while the frame's attachments are the source (the connection does that
        // for a call's result and for `RequestContext::decode`), so `Bytes` can resolve them.
        let value = Value::deserialize(deserializer)?;
        resolve(value).map(Shown).map_err(serde::de::Error::custom)
    }
}

fn resolve(value: Value) -> Result<Value, String> {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(tether_host::spec::BYTES_REF) => {
            let bytes =
                tether_host::spec::Bytes::deserialize(&Value::Object(map)).map_err(|e| e.to_string())?;
            Ok(Value::String(STANDARD.encode(&bytes[..])))
        }
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| resolve(v).map(|v| (k, v)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        Value::Array(items) => items.into_iter().map(resolve).collect::<Result<_, _>>().map(Value::Array),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_base64_and_the_rest_is_unchanged() {
        let attachments = [bytes::Bytes::from_static(b"hi")];
        let shown: Result<Shown, _> = tether_host::spec::with_attachment_source(&attachments, || {
            serde_json::from_str(r#"{"value":{"$bytes":0},"list":[1,{"a":"b"}]}"#)
        });
        let expected = serde_json::json!({"value": "aGk=", "list": [1, {"a": "b"}]});
        assert_eq!(shown.ok(), Some(Shown(expected)));
    }
}
