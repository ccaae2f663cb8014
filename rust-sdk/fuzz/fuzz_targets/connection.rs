//! Fuzz target: a plugin session of the SDK (kv, counter and a handle lender) driven by a peer
//! that follows a program read from the input: requests, answers with known and unknown ids,
//! cancels, handle invokes, retains and releases, garbage, partial and oversized frames. The
//! driver and its checks are in `rust-sdk/tests/fuzz_driver/connection.rs`.
#![no_main]

#[path = "../../tests/fuzz_driver/connection.rs"]
#[allow(dead_code)]
mod driver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| driver::check(data));
