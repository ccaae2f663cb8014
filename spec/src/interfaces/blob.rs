//! The `blob` reference interface, version 1 (SPEC.md §9.5): named byte strings moved by streams.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{codes, ErrorObject};
use crate::method::{MethodSchema, RequestMethod};
use crate::stream::StreamRef;

/// The interface name.
pub const NAME: &str = "blob";
/// The versions every `blob` example speaks.
pub const VERSIONS: &[u32] = &[1];
/// The largest `size` `blob.produce` accepts (2^40).
pub const MAX_PRODUCE: u64 = 1 << 40;

/// Byte `i` of what `blob.produce` streams: `i mod 251`.
pub fn produced_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// `blob.upload`: read `data` to its end and store it under `name`.
#[derive(Debug, Clone, Copy)]
pub enum Upload {}
impl RequestMethod for Upload {
    const METHOD: &'static str = "blob.upload";
    type Params = UploadParams;
    type Result = Digest;
}

/// Params of `blob.upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobUploadParams")]
pub struct UploadParams {
    /// The name to store the bytes under.
    pub name: String,
    /// The bytes, a stream the plugin reads (`"mode": "read"`).
    pub data: StreamRef,
}

/// Result of `blob.upload` and `blob.count`: what was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobDigest")]
pub struct Digest {
    /// The number of bytes.
    pub size: u64,
    /// Lowercase hex of their SHA-256 digest.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
}

/// `blob.download`: a stream of the bytes stored under `name`; error 1002 when there are none.
#[derive(Debug, Clone, Copy)]
pub enum Download {}
impl RequestMethod for Download {
    const METHOD: &'static str = "blob.download";
    type Params = NameParams;
    type Result = DownloadResult;
}

/// Params of `blob.download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobNameParams")]
pub struct NameParams {
    /// The stored name.
    pub name: String,
}

/// Result of `blob.download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobDownloadResult")]
pub struct DownloadResult {
    /// The number of bytes the stream carries.
    pub size: u64,
    /// The bytes, a stream opened by the plugin that the host reads.
    pub data: StreamRef,
}

/// `blob.count`: read `data` to its end without storing it.
#[derive(Debug, Clone, Copy)]
pub enum Count {}
impl RequestMethod for Count {
    const METHOD: &'static str = "blob.count";
    type Params = CountParams;
    type Result = Digest;
}

/// Params of `blob.count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobCountParams")]
pub struct CountParams {
    /// The bytes, a stream the plugin reads.
    pub data: StreamRef,
}

/// `blob.produce`: a stream of `size` bytes, byte `i` being `i mod 251`.
#[derive(Debug, Clone, Copy)]
pub enum Produce {}
impl RequestMethod for Produce {
    const METHOD: &'static str = "blob.produce";
    type Params = ProduceParams;
    type Result = ProduceResult;
}

/// Params of `blob.produce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobProduceParams")]
pub struct ProduceParams {
    /// How many bytes to produce, at most 2^40.
    #[schemars(range(max = 1099511627776u64))]
    pub size: u64,
}

/// Result of `blob.produce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobProduceResult")]
pub struct ProduceResult {
    /// The bytes, a stream opened by the plugin that the host reads.
    pub data: StreamRef,
}

/// `data` of the blob-not-found error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobNotFound")]
pub struct BlobNotFound {
    /// The missing name.
    pub name: String,
}

/// The error 1002 for a missing name (SPEC.md §9.5).
pub fn blob_not_found(name: &str) -> ErrorObject {
    ErrorObject::new(codes::BLOB_NOT_FOUND, format!("blob not found: {name}"))
        .with_data(serde_json::json!({ "name": name }))
}

/// The methods of a `blob` version with their schemas, as a plugin declares them; empty for a
/// version that does not exist.
pub fn methods(version: u32) -> BTreeMap<String, MethodSchema> {
    let mut methods = BTreeMap::new();
    if version == 1 {
        methods.insert("upload".to_owned(), MethodSchema::of::<Upload>());
        methods.insert("download".to_owned(), MethodSchema::of::<Download>());
        methods.insert("count".to_owned(), MethodSchema::of::<Count>());
        methods.insert("produce".to_owned(), MethodSchema::of::<Produce>());
    }
    methods
}

/// The interface file of `blob` (SPEC.md §9.5), committed as `interfaces/blob.json`.
pub fn document() -> crate::InterfaceDocument {
    crate::InterfaceDocument::from_methods(NAME, VERSIONS, methods)
        .with_description("Named byte strings moved by streams (SPEC.md §9.5).")
        .with_error(
            crate::error::codes::BLOB_NOT_FOUND,
            "blob.download of a name that holds no blob",
            Some(crate::method::schema_value::<BlobNotFound>()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_members_are_stream_references_in_the_schema() {
        let schema = MethodSchema::of::<Upload>().params.to_string();
        assert!(schema.contains(r##""$ref":"#/$defs/Stream""##), "{schema}");
        let upload: Option<UploadParams> =
            serde_json::from_str(r#"{"name":"a","data":{"$stream":1,"mode":"read"}}"#).ok();
        assert_eq!(upload.map(|u| u.data), Some(StreamRef::read(1)));
        assert_eq!(produced_byte(251), 0);
        assert_eq!(produced_byte(252), 1);
    }
}
