//! Encoding a value into a `Box<RawValue>` of exactly its size, for the params and results of
//! every message.
//!
//! `serde_json::value::to_raw_value` writes into a 128-byte vector and then shrinks it to a
//! `Box<str>`. With glibc's allocator, that shrinking `realloc` splits a chunk on every
//! message and leaves odd remainders in its bins, so the next allocations of the call miss
//! the per-thread cache. Profiled on an in-process `kv.get` (`bench/examples/call_loop.rs`
//! under callgrind), allocation was a fifth of a call's instructions; without the two shrinks
//! of a call (its params and its result) the call takes 14.3k instructions instead of 15.1k.
//! `RawValue::from_string` would allocate exactly, but it parses the text again.
//!
//! [`to_raw_value`] writes into a per-thread buffer that is reused, then copies the text into
//! a box of its size through serde_json's own raw-value deserializer, which trusts the text
//! as serde_json's `Value` does: one exact allocation and no second parse.

use std::cell::RefCell;

use serde::de::value::MapDeserializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The name serde_json gives the one member through which a raw value is handed to its
/// deserializer (serde_json's `raw.rs`). Should a later serde_json change it, the handing
/// over fails and [`to_raw_value`] parses the text instead: slower, never wrong (a test
/// catches the change).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Buffers larger than this are not kept for the next value, so one large message does not
/// pin its memory to the thread.
const KEPT_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `value` as JSON into a `Box<RawValue>` whose allocation is exactly the text's
/// size: what `serde_json::value::to_raw_value` returns, without its shrinking reallocation.
///
/// Re-entrant: a `Serialize` implementation that encodes another value with it meanwhile gets a
/// buffer of its own.
pub fn to_raw_value<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    // Taken out of the cell rather than borrowed, so a nested call finds it empty and works.
    let mut buffer = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buffer.clear();
    let written = serde_json::to_writer(&mut buffer, value);
    let raw = written.and_then(|()| boxed_exact(&buffer));
    if buffer.capacity() <= KEPT_CAPACITY {
        SCRATCH.with(|s| *s.borrow_mut() = buffer);
    }
    raw
}

/// A box of exactly `json`'s size holding it, for text serde_json just wrote.
fn boxed_exact(json: &[u8]) -> Result<Box<RawValue>, serde_json::Error> {
    // serde_json writes UTF-8 only; the check is a fast scan over what is nearly always ASCII.
    let text = std::str::from_utf8(json).map_err(serde::de::Error::custom)?;
    let handed = MapDeserializer::<_, serde_json::Error>::new(std::iter::once((RAW_VALUE_TOKEN, text)));
    match Box::<RawValue>::deserialize(handed) {
        Ok(raw) => Ok(raw),
        Err(_) => RawValue::from_string(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Nested {
        inner: Inner,
    }

    struct Inner;

    impl Serialize for Inner {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            // Encodes another value while the outer one is being written.
            let raw = to_raw_value(&[1, 2]).map_err(serde::ser::Error::custom)?;
            raw.serialize(serializer)
        }
    }

    #[test]
    fn the_text_is_serde_jsons_own() {
        let value = serde_json::json!({"key": "k\u{e9}\"", "n": [1, 2.5, null], "m": {}});
        let ours = to_raw_value(&value).map(|r| r.get().to_owned());
        let theirs = serde_json::value::to_raw_value(&value).map(|r| r.get().to_owned());
        assert_eq!(ours.ok(), theirs.ok());
    }

    #[test]
    fn serde_json_takes_the_text_without_parsing_it_again() {
        // Text that is not JSON comes back as it went in only when serde_json trusted it: the
        // fallback parses and refuses it. This fails if serde_json renames its token.
        let handed =
            MapDeserializer::<_, serde_json::Error>::new(std::iter::once((RAW_VALUE_TOKEN, "not json")));
        let raw = Box::<RawValue>::deserialize(handed).map(|r| r.get().to_owned());
        assert_eq!(raw.ok().as_deref(), Some("not json"));
    }

    #[test]
    fn a_value_encoded_while_encoding_another_gets_its_own_buffer() {
        let raw = to_raw_value(&Nested { inner: Inner }).map(|r| r.get().to_owned());
        assert_eq!(raw.ok().as_deref(), Some(r#"{"inner":[1,2]}"#));
    }

    #[test]
    fn an_error_leaves_the_buffer_usable() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 2);
        assert!(to_raw_value(&map).is_err(), "a map with non-string keys is not JSON");
        assert_eq!(to_raw_value(&7).map(|r| r.get().to_owned()).ok().as_deref(), Some("7"));
    }
}
