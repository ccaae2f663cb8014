//! Fuzz target: structure-aware JSON-RPC envelopes (`arbitrary` members of every kind, valid and
//! not, in any order, some twice) through `parse_message` and the §3.4 oracle. The generator is
//! `spec/tests/fuzz_oracle/message_structured.rs`. Replaying a crash with `FUZZ_SHOW_BODY=1`
//! prints the body; save it under `spec/fuzz/regressions/message/` so `cargo test` keeps checking it.
#![no_main]

#[path = "../../tests/fuzz_oracle/message.rs"]
#[allow(dead_code)]
mod message_oracle;
#[path = "../../tests/fuzz_oracle/message_structured.rs"]
#[allow(dead_code)]
mod structured;

libfuzzer_sys::fuzz_target!(|data: &[u8]| structured::check(data));
