//! Fuzz target: structure-aware JSON-RPC envelopes (`arbitrary` members of every kind, valid and
//! not, in any order, some twice) through `parse_message` and the §3.4 oracle. Replaying a crash with
//! `FUZZ_SHOW_BODY=1` prints the body; save it under `spec/fuzz/regressions/message/` so `cargo test` keeps checking it.
#![no_main]

#[path = "../../tests/fuzz_oracle/message.rs"]
#[allow(dead_code)]
mod oracle;

use arbitrary::Arbitrary;

/// A JSON value, biased towards what envelopes hold.
#[derive(Arbitrary, Debug)]
enum Json {
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
enum Name {
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
enum Body {
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

libfuzzer_sys::fuzz_target!(|body: Body| {
    let mut text = String::new();
    match &body {
        Body::Envelope { members, spaces } => write_object(members, &mut text, 0, *spaces),
        Body::Any(json) => write(json, &mut text, 0),
    }
    // libFuzzer aborts at the first panic, before a wrapper could print the body: replaying a
    // crash with FUZZ_SHOW_BODY=1 prints it first (to save under `regressions/message/`).
    if std::env::var_os("FUZZ_SHOW_BODY").is_some() {
        eprintln!("body: {text}");
    }
    oracle::check(text.as_bytes());
});
