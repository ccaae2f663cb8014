//! The seed messages the fuzzer mutates: every host-to-plugin frame of the committed transcripts
//! (`spec/transcripts/*.tether`, built into the judge so that it runs anywhere) and the messages
//! the judge's own checks send.

use serde_json::{json, Value};

// The spec crate's own transcript parser (its test support, shared by path as the testkit does),
// so that the fuzzer reads the transcripts exactly as the spec's tests do.
#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
#[path = "../../../spec/tests/support/transcript.rs"]
mod transcript;

/// The transcripts, by name. A unit test checks that this list is the directory's content.
const TRANSCRIPTS: &[(&str, &[u8])] = &[
    ("attachments.tether", include_bytes!("../../../spec/transcripts/attachments.tether")),
    ("before-initialize.tether", include_bytes!("../../../spec/transcripts/before-initialize.tether")),
    ("cancel.tether", include_bytes!("../../../spec/transcripts/cancel.tether")),
    ("counter.tether", include_bytes!("../../../spec/transcripts/counter.tether")),
    ("errors.tether", include_bytes!("../../../spec/transcripts/errors.tether")),
    ("kv-v1.tether", include_bytes!("../../../spec/transcripts/kv-v1.tether")),
    ("kv.tether", include_bytes!("../../../spec/transcripts/kv.tether")),
    ("logs.tether", include_bytes!("../../../spec/transcripts/logs.tether")),
    ("progress.tether", include_bytes!("../../../spec/transcripts/progress.tether")),
    ("streams.tether", include_bytes!("../../../spec/transcripts/streams.tether")),
    ("version-mismatch.tether", include_bytes!("../../../spec/transcripts/version-mismatch.tether")),
];

/// Whether a body may be sent mid-session: never `tether/shutdown`, after which every request is
/// refused (-32005) and the health checks could not tell a broken plugin from a stopped one.
pub(super) fn allowed(body: &[u8]) -> bool {
    !body.windows(8).any(|w| w == b"shutdown")
}

/// Every seed body, in a fixed order (so that a seed gives the same run): the transcripts'
/// host-to-plugin frames (their JSON; attachments are not negotiated in a fuzz session), then the
/// checks' messages.
pub(super) fn seeds() -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (name, bytes) in TRANSCRIPTS {
        let t = transcript::parse(name, bytes)?;
        out.extend(t.blocks.into_iter().filter(|b| b.dir == transcript::Dir::ToPlugin).map(|b| b.body));
    }
    out.extend(check_messages().iter().map(|v| v.to_string().into_bytes()));
    out.retain(|b| allowed(b));
    Ok(out)
}

/// Messages like those the checks send (`src/checks/`): calls of every reference interface,
/// handles, cancellation, logs and envelope errors.
fn check_messages() -> Vec<Value> {
    let req = |id: Value, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let note = |method: &str, params: Value| json!({"jsonrpc": "2.0", "method": method, "params": params});
    vec![
        req(json!(101), "tether/ping", json!({})),
        json!({"jsonrpc": "2.0", "id": "no-params", "method": "tether/ping"}),
        req(json!(102), "kv.put", json!({"key": "fuzz", "value": "aGVsbG8="})),
        req(json!(103), "kv.get", json!({"key": "fuzz"})),
        req(json!(104), "kv.get", json!({"key": "missing"})),
        req(json!(105), "kv.delete", json!({"key": "fuzz"})),
        req(json!(106), "kv.put", json!({"key": "empty", "value": ""})),
        req(json!(107), "kv.put", json!({"key": "bad", "value": "not base64!"})),
        req(json!(108), "kv.put", json!({"key": "ключ-🔑-鍵-\u{0}", "value": "AAECAw=="})),
        req(json!(109), "kv.get", json!({"key": 42})),
        req(json!(110), "kv.put", json!({"key": "p", "value": "AAAA", "_meta": {"progressToken": 4242}})),
        req(
            json!(111),
            "counter.put",
            json!({"key": "c", "value": 5, "adder": {"$handle": "h1", "interface": "adder"}}),
        ),
        req(json!(112), "counter.get", json!({"key": "c"})),
        req(json!(113), "blob.missing", json!({"name": "x"})),
        req(json!(114), "blob.download", json!({"name": "nothing"})),
        req(json!(115), "blob.produce", json!({"size": 1000})),
        req(json!(116), "nosuch.method", json!({})),
        req(json!(117), "tether/nosuch", json!({})),
        req(
            json!(118),
            "tether/invoke",
            json!({"handle": "judge-unknown-1", "method": "sum", "params": {"a": 1, "b": 2}}),
        ),
        req(json!(119), "tether/retain", json!({"handle": "judge-unknown-2"})),
        req(json!(9007199254740991_i64), "tether/ping", json!({})),
        req(json!(-9007199254740991_i64), "tether/ping", json!({})),
        req(json!(""), "tether/ping", json!({})),
        req(Value::Null, "tether/ping", json!({})),
        req(json!(120), "tether/ping", json!([])),
        req(
            json!(121),
            "tether/initialize",
            json!({"protocolVersions": [1], "interfaces": {}, "host": {"name": "x", "version": "1"}, "capabilities": {}, "maxFrameSize": 1048576}),
        ),
        note("$/release", json!({"handle": "judge-unknown-3"})),
        note("$/cancelRequest", json!({"id": 999_999})),
        note("$/setLogLevel", json!({"level": "debug"})),
        note("$/setLogLevel", json!({"level": "warn"})),
        note("$/nosuch", json!({})),
        note("$/stream.abort", json!({"stream": 12345})),
        note("$/stream.credit", json!({"stream": 2, "bytes": 65536})),
        json!({"jsonrpc": "2.0", "id": 77, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "stray", "error": {"code": -32601, "message": "no"}}),
        json!({"jsonrpc": "2.0"}),
        json!(42),
        json!([]),
        json!([{"jsonrpc": "2.0", "id": 1, "method": "tether/ping"}]),
        json!({"jsonrpc": "1.0", "id": 122, "method": "tether/ping", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 123, "method": 7, "params": {}}),
        json!({"jsonrpc": "2.0", "id": 124, "result": {}, "error": {"code": 1, "message": "both"}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transcript_is_built_in_and_gives_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/transcripts");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tether"))
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = TRANSCRIPTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, built_in, "add the new transcript to TRANSCRIPTS");
        let seeds = seeds();
        assert!(seeds.as_ref().is_ok_and(|s| s.len() > 100), "{seeds:?}");
        assert!(seeds.iter().flatten().all(|b| allowed(b)));
    }
}
