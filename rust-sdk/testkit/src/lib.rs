//! Test-only helpers that the Rust suites share instead of copying: finding (building) example
//! and test binaries through cargo, spawning a plugin with the reference cookie, and replaying
//! the transcripts of `spec/transcripts/` against a real plugin process.
//!
//! The conformance judge keeps its own code on purpose and does not use this crate.

// Test support: a failed assumption is a failed test, reported with its cause.
#![allow(clippy::expect_used, clippy::panic)]

mod cargo;
mod spawn;
pub mod transcripts;

pub use crate::cargo::{
    cargo_binary, cargo_build, cargo_build_library, cargo_library, sdk_example, test_plugin, Target,
};
pub use crate::spawn::{plugin_command, BodyAndAttachments, ProcessPlugin};
