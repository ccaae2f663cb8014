//! Fuzz target: the frame codec, lenient and strict, on arbitrary bytes in arbitrary chunkings,
//! against the reference decoder of SPEC.md §2.6 (`spec/tests/fuzz_oracle/codec.rs`).
#![no_main]

#[path = "../../tests/fuzz_oracle/codec.rs"]
#[allow(dead_code)]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
