//! Attachments in the judge's driver (SPEC.md §2.8): when the reader switches to them, how a
//! frame's `{"$bytes": i}` references become the base64 strings they stand for, and how a frame
//! sent without negotiation is recognised.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::Shared;

/// The header that lists a frame's attachments.
pub(crate) const ATTACHMENTS_HEADER: &str = "Tether-Attachments";

/// Whether the header block at the start of `head` holds a `Tether-Attachments` line (any case).
pub(super) fn has_attachments_header(head: &[u8]) -> bool {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len());
    let block = head[..end].to_ascii_lowercase();
    let name = format!("{}:", ATTACHMENTS_HEADER.to_ascii_lowercase());
    block.windows(name.len()).any(|w| w == name.as_bytes())
}

/// Called by the reader for each plain body: true when this body is the answer to an initialize
/// that offered attachments and it announces them too, so that the frames after it may carry
/// attachments (§2.8.3: the plugin may use them from the frame after its answer). Only the first
/// response after the offer decides; the judge's initialize is always a session's first request.
pub(super) fn negotiates(shared: &Arc<Mutex<Shared>>, body: &[u8]) -> bool {
    let Ok(mut s) = shared.lock() else { return false };
    if !s.attachments_offered || s.attachments_on {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return false };
    if v.get("method").is_some() || !(v.get("result").is_some() || v.get("error").is_some()) {
        return false; // `$/log` or a request: the answer is still to come
    }
    s.attachments_offered = false;
    s.attachments_on = v.pointer("/result/capabilities/attachments").is_some_and(Value::is_object);
    s.attachments_on
}

/// The body with every `{"$bytes": i}` replaced by the base64 of attachment `i`, so that the
/// checks read one form; an error names a reference to an attachment the frame does not have.
pub(super) fn resolve(json: &[u8], attachments: &[bytes::Bytes]) -> Result<Vec<u8>, String> {
    let mut value: Value =
        serde_json::from_slice(json).map_err(|e| format!("the JSON body is not JSON: {e}"))?;
    replace(&mut value, attachments)?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

fn replace(value: &mut Value, attachments: &[bytes::Bytes]) -> Result<(), String> {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$bytes") => {
            let i = map.get("$bytes").and_then(Value::as_u64);
            let part = i.and_then(|i| usize::try_from(i).ok()).and_then(|i| attachments.get(i));
            match part {
                Some(bytes) => {
                    *value = Value::String(STANDARD.encode(bytes));
                    Ok(())
                }
                None => Err(format!(
                    "{} references an attachment the frame does not have ({} attachments)",
                    Value::Object(map.clone()),
                    attachments.len()
                )),
            }
        }
        Value::Object(map) => map.values_mut().try_for_each(|v| replace(v, attachments)),
        Value::Array(items) => items.iter_mut().try_for_each(|v| replace(v, attachments)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_base64_and_missing_ones_are_named() {
        let parts = [bytes::Bytes::from_static(b"hi")];
        let body = br#"{"result":{"value":{"$bytes":0}}}"#;
        assert_eq!(resolve(body, &parts).ok(), Some(br#"{"result":{"value":"aGk="}}"#.to_vec()));
        let bad = br#"{"result":{"value":{"$bytes":3}}}"#;
        assert!(resolve(bad, &parts).is_err_and(|e| e.contains("1 attachments")));
    }

    #[test]
    fn the_header_is_found_in_any_case_only_in_the_header_block() {
        assert!(has_attachments_header(b"Content-Length: 9\r\ntether-attachments: 2\r\n\r\n{}"));
        assert!(!has_attachments_header(b"Content-Length: 30\r\n\r\n{\"x\":\"Tether-Attachments:\"}"));
    }
}
