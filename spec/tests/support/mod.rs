//! Shared by the integration tests: the transcript format, the transcripts' source, an in-memory
//! reference plugin and the README's replay algorithm.
#![allow(dead_code, unreachable_pub, missing_docs)]
// Test support: a failed assumption here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::type_complexity)]

pub mod plugin;
pub mod replay;
pub mod schema;
pub mod sessions;
pub mod transcript;
