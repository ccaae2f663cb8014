//! The reference interfaces of SPEC.md §9, used by the conformance suite, every example and
//! the benchmark.

pub mod blob;
pub mod counter;
pub mod kv;
