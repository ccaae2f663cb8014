//! The reference interfaces of SPEC.md §9, used by the conformance suite, every example and
//! the benchmark.

pub mod counter;
pub mod kv;
