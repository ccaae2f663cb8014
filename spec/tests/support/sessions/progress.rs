//! The source of `progress.tether`: `_meta` in params (SPEC.md §14, §15), `$/progress` for a
//! large `kv.put` in the steps §9.1 fixes, and none for a call without a token.

use tether_spec::interfaces::kv;
use tether_spec::{Capabilities, ProgressCapability, TraceContextCapability};

use super::{initialize_with, initialized_with, notification, ok, request, Script};

fn progress(token: &str, done: u64, total: u64) -> String {
    notification("$/progress", &format!(r#"{{"token":{token},"done":{done},"total":{total}}}"#))
}

pub(super) fn session() -> (&'static str, super::Transcript) {
    let mut s = Script::new(
        "progress.tether",
        "kv",
        &[
            "Progress and trace context (SPEC.md §14, §15): a kv.put of 20000 bytes with a progress",
            "token is answered after one $/progress per 16384 bytes stored and one at the end (§9.1);",
            "a small put, or one without a token, gets none; _meta.traceparent changes no result.",
        ],
    );
    let caps = Capabilities {
        progress: Some(ProgressCapability {}),
        trace_context: Some(TraceContextCapability {}),
        ..Capabilities::new()
    };
    let big = tether_spec::Bytes::from(vec![0u8; 20000]);
    let big = serde_json::to_string(&big).unwrap();
    let steps = kv::put_progress_steps(20000);
    assert_eq!(steps, [16384, 20000]);
    s.note(&["", "Both sides announce progress and traceContext (§14.1, §15)."])
        .send(initialize_with("1", r#"{"kv":[2]}"#, "info", r#"{"progress":{},"traceContext":{}}"#))
        .recv(initialized_with("1", "kv-reference", &[("kv", 2)], caps))
        .note(&[
            "",
            "A small put with a token: nothing to report, just the answer. _meta is not a",
            "parameter of kv.put (§14.1.2).",
        ])
        .send(request("2", "kv.put", r#"{"key":"small","value":"d29ybGQ=","_meta":{"progressToken":7}}"#))
        .recv(ok("2", "{}"))
        .note(&[
            "",
            "A put of 20000 bytes (zeros, so the base64 is all A) with the string token \"big\".",
        ])
        .send(request("3", "kv.put", &format!(r#"{{"key":"big","value":{big},"_meta":{{"progressToken":"big"}}}}"#)))
        .note(&[
            "Progress in bytes stored, echoing the token exactly, before the answer (§14.2); done",
            "never decreases and never exceeds total.",
        ])
        .recv(progress(r#""big""#, steps[0], 20000))
        .recv(progress(r#""big""#, steps[1], 20000))
        .recv(ok("3", "{}"))
        .note(&["", "The same put without a token: no $/progress at all (§14.2.1)."])
        .send(request("4", "kv.put", &format!(r#"{{"key":"big","value":{big}}}"#)))
        .recv(ok("4", "{}"))
        .note(&[
            "",
            "A get in the host's span (§15): the trace context is about the call, not its params.",
        ])
        .send(request(
            "5",
            "kv.get",
            r#"{"key":"small","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}"#,
        ))
        .recv(ok("5", r#"{"value":"d29ybGQ="}"#))
        .note(&[""])
        .send(request("6", "tether/shutdown", "{}"))
        .recv(ok("6", "{}"));
    s.finish(&[])
}
