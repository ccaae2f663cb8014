//! The stream-carrying types of the `blob` reference interface (SPEC.md §9.5): the wire types
//! of `tether_spec::interfaces::blob` with their `data` member as a [`ReadStream`], so that a
//! handler reads the upload and returns a download as Rust values. Names, docs and schemas are
//! those of the spec crate (a test checks that the declared schemas are the same).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use tether_spec::interfaces::blob::{
    blob_not_found, produced_byte, BlobNotFound, Digest, NameParams, ProduceParams, MAX_PRODUCE,
};

use crate::stream::ReadStream;

/// Params of `blob.upload`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobUploadParams")]
pub struct UploadParams {
    /// The name to store the bytes under.
    pub name: String,
    /// The bytes, a stream the plugin reads (`"mode": "read"`).
    pub data: ReadStream,
}

/// Result of `blob.download`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobDownloadResult")]
pub struct DownloadResult {
    /// The number of bytes the stream carries.
    pub size: u64,
    /// The bytes, a stream opened by the plugin that the host reads.
    pub data: ReadStream,
}

/// Params of `blob.count`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobCountParams")]
pub struct CountParams {
    /// The bytes, a stream the plugin reads.
    pub data: ReadStream,
}

/// Result of `blob.produce`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "BlobProduceResult")]
pub struct ProduceResult {
    /// The bytes, a stream opened by the plugin that the host reads.
    pub data: ReadStream,
}
