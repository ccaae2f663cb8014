//! The `kv` reference interface, versions 1 and 2 (SPEC.md §9.1, §9.2).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bytes::Bytes;
use crate::error::{codes, ErrorObject};
use crate::method::{Empty, MethodSchema, RequestMethod};

/// The interface name.
pub const NAME: &str = "kv";
/// The versions every `kv` example speaks.
pub const VERSIONS: &[u32] = &[1, 2];

/// `kv.put` (v1): store a value.
#[derive(Debug, Clone, Copy)]
pub enum Put {}
impl RequestMethod for Put {
    const METHOD: &'static str = "kv.put";
    type Params = PutParams;
    type Result = Empty;
}

/// The reference plugins report the progress of a `kv.put` (SPEC.md §9.1) in steps of this
/// many bytes, for values longer than one step.
pub const PUT_PROGRESS_STEP: u64 = 16384;

/// The `done` values a reference plugin reports for a `kv.put` of `len` bytes (SPEC.md §9.1):
/// every multiple of [`PUT_PROGRESS_STEP`] below `len`, then `len`; nothing for a short value.
pub fn put_progress_steps(len: u64) -> Vec<u64> {
    if len <= PUT_PROGRESS_STEP {
        return Vec::new();
    }
    let mut steps: Vec<u64> = (1..).map(|k| k * PUT_PROGRESS_STEP).take_while(|&d| d < len).collect();
    steps.push(len);
    steps
}

/// Params of `kv.put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KvPutParams")]
pub struct PutParams {
    /// Any non-empty Unicode string.
    #[schemars(length(min = 1))]
    pub key: String,
    /// The value, possibly empty.
    pub value: Bytes,
}

/// `kv.get` (v1): read a value; error 1001 when the key is missing.
#[derive(Debug, Clone, Copy)]
pub enum Get {}
impl RequestMethod for Get {
    const METHOD: &'static str = "kv.get";
    type Params = KeyParams;
    type Result = GetResult;
}

/// Params of `kv.get` and `kv.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KvKeyParams")]
pub struct KeyParams {
    /// The key.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Result of `kv.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KvGetResult")]
pub struct GetResult {
    /// The stored value.
    pub value: Bytes,
}

/// `kv.delete` (v2): remove a key.
#[derive(Debug, Clone, Copy)]
pub enum Delete {}
impl RequestMethod for Delete {
    const METHOD: &'static str = "kv.delete";
    type Params = KeyParams;
    type Result = DeleteResult;
}

/// Result of `kv.delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KvDeleteResult")]
pub struct DeleteResult {
    /// Whether the key held a value.
    pub existed: bool,
}

/// `data` of the key-not-found error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KvKeyNotFound")]
pub struct KeyNotFound {
    /// The missing key.
    pub key: String,
}

/// The error 1001 for a missing key (SPEC.md §9.1).
pub fn key_not_found(key: &str) -> ErrorObject {
    ErrorObject::new(codes::KEY_NOT_FOUND, format!("key not found: {key}"))
        .with_data(serde_json::json!({ "key": key }))
}

/// The methods of a `kv` version with their schemas, as a plugin declares them; empty for a
/// version that does not exist.
pub fn methods(version: u32) -> BTreeMap<String, MethodSchema> {
    let mut methods = BTreeMap::new();
    if (1..=2).contains(&version) {
        methods.insert("put".to_owned(), MethodSchema::of::<Put>());
        methods.insert("get".to_owned(), MethodSchema::of::<Get>());
    }
    if version == 2 {
        methods.insert("delete".to_owned(), MethodSchema::of::<Delete>());
    }
    methods
}

/// The interface file of `kv` (SPEC.md §9.1, §9.2), committed as `interfaces/kv.json`.
pub fn document() -> crate::InterfaceDocument {
    crate::InterfaceDocument::from_methods(NAME, VERSIONS, methods)
        .with_description("A key/value store: byte values under non-empty string keys (SPEC.md §9.1, §9.2).")
        .with_error(
            codes::KEY_NOT_FOUND,
            "kv.get of a key that holds no value",
            Some(crate::method::schema_value::<KeyNotFound>()),
        )
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn put_progress_steps_follow_the_rule() {
        assert!(put_progress_steps(0).is_empty());
        assert!(put_progress_steps(16384).is_empty());
        assert_eq!(put_progress_steps(20000), vec![16384, 20000]);
        assert_eq!(put_progress_steps(32768), vec![16384, 32768]);
        assert_eq!(put_progress_steps(32769), vec![16384, 32768, 32769]);
    }
}
