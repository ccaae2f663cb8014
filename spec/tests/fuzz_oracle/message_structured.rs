//! The structure-aware message target's input: `arbitrary` JSON-RPC envelopes (members of every
//! kind, valid and not, in any order, some twice) built from the fuzzer's bytes, written as a body
//! and judged by the envelope oracle (`message.rs` beside this file). Shared by the
//! `message_structured` fuzz target (`spec/fuzz/`) and by `spec/tests/fuzz_corpus.rs`, which
//! replays its committed corpus: the bytes decode to the same body in both (the same `arbitrary`
//! version, pinned in both manifests).

use arbitrary::{Arbitrary, Unstructured};

use super::message_oracle;

/// Decodes `data` as libFuzzer's typed targets do (`arbitrary_take_rest`), writes the body and
/// checks it; bytes that decode to nothing are skipped, as the fuzzer skips them.
pub fn check(data: &[u8]) {
    let Some(text) = body(data) else { return };
    // libFuzzer aborts at the first panic, before a wrapper could print the body: replaying a
    // crash with FUZZ_SHOW_BODY=1 prints it first (to save under `regressions/message/`).
    if std::env::var_os("FUZZ_SHOW_BODY").is_some() {
        eprintln!("body: {text}");
    }
    message_oracle::check(text.as_bytes());
}

/// The body the fuzzer's bytes stand for, or `None` for bytes that decode to nothing.
pub fn body(data: &[u8]) -> Option<String> {
    Body::arbitrary_take_rest(Unstructured::new(data)).ok().map(|body| body.text())
}

impl Body {
    /// The body as the receiver reads it.
    pub fn text(&self) -> String {
        let mut text = String::new();
        match self {
            Body::Envelope { members, spaces } => write_object(members, &mut text, 0, *spaces),
            Body::Any(json) => write(json, &mut text, 0),
        }
        text
    }
}

/// A JSON value, biased towards what envelopes hold.
#[derive(Arbitrary, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Big(u64),
    Float(f64),
    Text(String),
    Name(Name),
    Array(Vec<Json>),
    Object(Vec<(Name, Json)>),
    /// Nesting this deep, to reach the parser's depth limit.
    Deep(u8),
}

/// Strings that mean something in an envelope.
#[derive(Arbitrary, Debug)]
pub enum Name {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Code,
    Message,
    Data,
    Version,
    KvGet,
    Ping,
    Cancel,
    Other(String),
}

impl Name {
    fn text(&self) -> &str {
        match self {
            Name::Jsonrpc => "jsonrpc",
            Name::Id => "id",
            Name::Method => "method",
            Name::Params => "params",
            Name::Result => "result",
            Name::Error => "error",
            Name::Code => "code",
            Name::Message => "message",
            Name::Data => "data",
            Name::Version => "2.0",
            Name::KvGet => "kv.get",
            Name::Ping => "tether/ping",
            Name::Cancel => "$/cancelRequest",
            Name::Other(s) => s,
        }
    }
}

/// A body: an object of envelope members, or any value at all.
#[derive(Arbitrary, Debug)]
pub enum Body {
    Envelope { members: Vec<(Name, Json)>, spaces: bool },
    Any(Json),
}

fn write(json: &Json, out: &mut String, depth: usize) {
    if depth > 300 {
        out.push_str("null");
        return;
    }
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(n) => out.push_str(&n.to_string()),
        Json::Big(n) => out.push_str(&n.to_string()),
        Json::Float(f) => out.push_str(&serde_json::to_string(f).unwrap_or_else(|_| "1.5".into())),
        Json::Text(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        Json::Name(n) => out.push_str(&serde_json::Value::from(n.text()).to_string()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out, depth + 1);
            }
            out.push(']');
        }
        Json::Object(members) => write_object(members, out, depth, false),
        Json::Deep(n) => {
            let n = usize::from(*n);
            out.push_str(&"[".repeat(n));
            out.push('1');
            out.push_str(&"]".repeat(n));
        }
    }
}

fn write_object(members: &[(Name, Json)], out: &mut String, depth: usize, spaces: bool) {
    out.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if spaces {
            out.push(' ');
        }
        out.push_str(&serde_json::Value::from(name.text()).to_string());
        out.push(':');
        if spaces {
            out.push(' ');
        }
        write(value, out, depth + 1);
    }
    out.push('}');
}
