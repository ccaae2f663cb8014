//! Fuzz target: `parse_message` and the answer rules of SPEC.md §3.4 on arbitrary bodies,
//! against the oracle of `spec/tests/fuzz_oracle/message.rs`.
#![no_main]

#[path = "../../tests/fuzz_oracle/message.rs"]
#[allow(dead_code)]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
