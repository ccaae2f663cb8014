//! Every JSON example of SPEC.md (its indented code blocks) parses with this crate's types and
//! validates against the generated schema, so that the prose cannot drift from the types.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use support::schema::{validator, Schema};
use tether_spec::{parse_message, ErrorObject, HandleRef, Message, StreamRef};

/// An indented code block: its first line number and text.
fn code_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    let mut previous_blank = true;
    for (n, line) in markdown.lines().enumerate() {
        let indented = line.strip_prefix("    ");
        match (&mut current, indented) {
            (Some((_, lines)), Some(text)) => lines.push(text),
            (Some(_), None) if line.trim().is_empty() => {}
            (Some(_), None) => {
                let (start, lines) = current.take().unwrap();
                blocks.push((start, lines.join("\n")));
            }
            (None, Some(text)) if previous_blank && !text.trim().is_empty() => {
                current = Some((n + 1, vec![text]))
            }
            _ => {}
        }
        previous_blank = line.trim().is_empty();
    }
    if let Some((start, lines)) = current {
        blocks.push((start, lines.join("\n")));
    }
    blocks
}

/// Parses `value` as `T` and checks that writing it back gives the same JSON.
fn round_trips<T: DeserializeOwned + Serialize>(at: &str, value: &Value) {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        value,
        "{at}: the types write this example differently"
    );
}

fn typed(at: &str, method: &str, what: &str, value: &Value) {
    use tether_spec::interfaces::{blob, counter, kv};
    use tether_spec::{CancelRequest, Initialize, Invoke, Log, NotificationMethod, Ping, RequestMethod};
    use tether_spec::{
        Release, Retain, SetLogLevel, Shutdown, StreamAbort, StreamCredit, StreamData, StreamEnd,
    };
    macro_rules! request {
        ($($m:ty),*) => {$(
            if method == <$m>::METHOD {
                if what == "params" { round_trips::<<$m as RequestMethod>::Params>(at, value) }
                else { round_trips::<<$m as RequestMethod>::Result>(at, value) }
                return;
            }
        )*};
    }
    macro_rules! notification {
        ($($m:ty),*) => {$(
            if method == <$m>::METHOD { round_trips::<<$m as NotificationMethod>::Params>(at, value); return; }
        )*};
    }
    request!(
        Initialize,
        Ping,
        Shutdown,
        Retain,
        kv::Put,
        kv::Get,
        kv::Delete,
        counter::Put,
        counter::Get,
        blob::Upload,
        blob::Download,
        blob::Count,
        blob::Produce
    );
    notification!(
        Release,
        CancelRequest,
        Log,
        SetLogLevel,
        StreamData,
        StreamEnd,
        StreamCredit,
        StreamAbort,
        tether_spec::Progress
    );
    if method == <Invoke as RequestMethod>::METHOD && what == "params" {
        // Raw params inside: compare as values.
        let p: tether_spec::InvokeParams =
            serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(&serde_json::to_value(&p).unwrap(), value, "{at}");
        return;
    }
    panic!("{at}: an example of {method}, which this crate does not type");
}

#[test]
fn every_json_example_of_the_spec_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("SPEC.md");
    let spec = std::fs::read_to_string(path).unwrap();
    let schema = Schema::load();
    let errors = validator("ErrorObject");
    let handles = validator("HandleRef");
    let streams = validator("Stream");
    let mut checked = 0;
    let mut other = Vec::new();
    // The method of each request example by id, to check the result of a response example.
    let mut methods = std::collections::HashMap::new();
    for (line, text) in code_blocks(&spec) {
        let at = format!("SPEC.md:{line}");
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') && !trimmed.starts_with('[') {
            other.push(text);
            continue;
        }
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
        checked += 1;
        if value.get("jsonrpc").is_some() {
            schema.message(&value).unwrap_or_else(|e| panic!("{at}: {e}"));
            match parse_message(text.as_bytes()) {
                Ok(Message::Request(r)) => {
                    // `_meta` is about the call, not a parameter (§14.1): typed on its own.
                    let mut params = value["params"].clone();
                    if let Some(meta) = params.as_object_mut().and_then(|p| p.remove("_meta")) {
                        round_trips::<tether_spec::Meta>(&at, &meta);
                    }
                    typed(&at, &r.method, "params", &params);
                    schema.params(&r.method, &value["params"]).unwrap_or_else(|e| panic!("{at}: {e}"));
                    methods.insert(value["id"].to_string(), r.method);
                }
                Ok(Message::Notification(n)) => {
                    typed(&at, &n.method, "params", &value["params"]);
                    schema.params(&n.method, &value["params"]).unwrap_or_else(|e| panic!("{at}: {e}"));
                }
                Ok(Message::Response(_)) => {
                    if let Some(result) = value.get("result") {
                        let method = methods
                            .get(&value["id"].to_string())
                            .unwrap_or_else(|| panic!("{at}: a response example without its request"));
                        typed(&at, method, "result", result);
                        schema.result(method, result).unwrap_or_else(|e| panic!("{at}: {e}"));
                    } else {
                        round_trips::<ErrorObject>(&at, &value["error"]);
                    }
                }
                Err(e) => panic!("{at}: {e}"),
            }
        } else if value.get("code").is_some() {
            round_trips::<ErrorObject>(&at, &value);
            assert!(errors.is_valid(&value), "{at}: not a valid error object");
        } else if value.get("$handle").is_some() {
            round_trips::<HandleRef>(&at, &value);
            assert!(handles.is_valid(&value), "{at}: not a valid handle");
        } else if value.get("$stream").is_some() {
            round_trips::<StreamRef>(&at, &value);
            assert!(streams.is_valid(&value), "{at}: not a valid stream");
        } else {
            panic!("{at}: a JSON example this test does not know how to check");
        }
    }
    // The examples of SPEC.md: initialize, its error and its result, a handle, an invoke, a
    // $/log, a kv error. A new example is checked automatically; this count only guards the
    // extraction itself.
    assert!(checked >= 7, "only {checked} JSON examples found in SPEC.md");
    // The non-JSON blocks: the reference cookie and the frame layouts (plain, with the optional
    // Content-Type line, and with attachments).
    assert_eq!(other.len(), 4, "unexpected non-JSON blocks: {other:?}");
    assert!(other.iter().any(|b| b.starts_with("Content-Length: <N>") && b.contains("Content-Type: ")));
    assert!(other.iter().any(|b| b.starts_with("Content-Length: <T>") && b.contains("Tether-Attachments: ")));
    assert!(other.iter().any(|b| b.starts_with("TETHER_MAGIC_COOKIE=")));
    assert!(other.iter().any(|b| b.starts_with("Content-Length: <N>")));
}

#[test]
fn the_block_extractor_finds_indented_blocks_only() {
    let md = "text\n\n    {\"a\":1}\n\nmore\n    not a block\n\n    line1\n    line2\n";
    let blocks = code_blocks(md);
    assert_eq!(blocks, vec![(3, "{\"a\":1}".to_owned()), (8, "line1\nline2".to_owned())]);
}
