//! The envelope parser's fuzz oracle: what SPEC.md §3.4 says a receiver does with a body,
//! decided independently from `serde_json::Value` (slow and plain), compared with
//! `parse_message` and `EnvelopeError::reply`. Shared by the `message` fuzz targets
//! (`spec/fuzz/`) and by `spec/tests/fuzz_corpus.rs`, which replays the committed corpus.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use tether_spec::{codes, parse_message, Id, Message, Outcome};

/// What a receiver does with a body (SPEC.md §3.4).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A valid request with this id and method.
    Request(Id, String),
    /// A valid notification with this method.
    Notification(String),
    /// A valid response for this id (`None`: an error answering an unreadable id).
    Response(Option<Id>),
    /// Not a valid message; answered with this code and id.
    Answer(i64, Option<Id>),
    /// Not a valid message; reported locally and never answered.
    Silent,
}

/// An object's members in order, duplicates kept (a `Value` would keep only one of them).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An id as §3.2 allows it: an integer that fits in 64 signed bits, or a string.
fn valid_id(v: &Value) -> Option<Id> {
    match v {
        Value::String(s) => Some(Id::Str(s.clone())),
        Value::Number(n) => n.as_i64().map(Id::Int),
        _ => None,
    }
}

/// An error object (§3.4.4): an integer `code`, a string `message`, optional `data`.
fn valid_error(v: &Value) -> bool {
    let Value::Object(o) = v else { return false };
    o.get("code").is_some_and(|c| c.as_i64().is_some()) && o.get("message").is_some_and(Value::is_string)
}

/// What SPEC.md §3.4 says about `body`; `None` for valid JSON that a `Value` cannot hold (an
/// escaped lone surrogate, nesting beyond serde_json's limit of 128), where the oracle only
/// checks that the parser does not panic.
pub fn expected(body: &[u8]) -> Option<Verdict> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // §2.4, §3.4.1: not UTF-8 or not JSON.
        return match serde_json::from_slice::<de::IgnoredAny>(body) {
            Err(_) => Some(Verdict::Answer(codes::PARSE_ERROR, None)),
            Ok(_) => None,
        };
    };
    Some(expected_of(body, value))
}

fn expected_of(body: &[u8], value: Value) -> Verdict {
    let Value::Object(_) = value else {
        // §3.3 and the last row of the table: a batch, a number, a string.
        return Verdict::Answer(codes::INVALID_REQUEST, None);
    };
    let Ok(Members(members)) = serde_json::from_slice::<Members>(body) else {
        return Verdict::Answer(codes::PARSE_ERROR, None);
    };
    let count = |k: &str| members.iter().filter(|(n, _)| n == k).count();
    // With a member given twice, the last one is read (as a JSON object would keep it).
    let get = |k: &str| members.iter().rfind(|(n, _)| n == k).map(|(_, v)| v);
    let has_method = count("method") > 0;
    let has_id = count("id") > 0;
    let has_outcome = count("result") > 0 || count("error") > 0;
    let id = get("id").and_then(valid_id);
    // A member given twice makes the message invalid: which one counts is not defined.
    let duplicate = ["jsonrpc", "id", "method", "params", "result", "error"].iter().any(|k| count(k) > 1);
    let version_ok = get("jsonrpc") == Some(&Value::String("2.0".into()));
    let invalid = || {
        if has_method {
            if has_id {
                Verdict::Answer(codes::INVALID_REQUEST, id.clone())
            } else {
                Verdict::Silent
            }
        } else if has_outcome {
            Verdict::Silent
        } else {
            Verdict::Answer(codes::INVALID_REQUEST, id.clone())
        }
    };
    if duplicate || !version_ok {
        return invalid();
    }
    if let Some(method) = get("method") {
        let Value::String(method) = method else { return invalid() };
        if has_outcome {
            return invalid();
        }
        let params_ok = match get("params") {
            None | Some(Value::Object(_)) => true,
            Some(Value::Array(_)) if has_id && id.is_some() => {
                return Verdict::Answer(codes::INVALID_PARAMS, id);
            }
            Some(_) => false,
        };
        if !params_ok {
            return invalid();
        }
        return match (has_id, id.clone()) {
            (false, _) => Verdict::Notification(method.clone()),
            (true, Some(id)) => Verdict::Request(id, method.clone()),
            (true, None) => invalid(),
        };
    }
    let result = get("result");
    let error = get("error");
    match (get("id"), result, error) {
        (Some(Value::Null), None, Some(e)) if valid_error(e) => Verdict::Response(None),
        (Some(v), Some(_), None) if valid_id(v).is_some() => Verdict::Response(valid_id(v)),
        (Some(v), None, Some(e)) if valid_id(v).is_some() && valid_error(e) => Verdict::Response(valid_id(v)),
        _ => invalid(),
    }
}

/// What `parse_message` and `EnvelopeError::reply` do with `body`.
pub fn actual(body: &[u8]) -> Verdict {
    match parse_message(body) {
        Ok(Message::Request(r)) => Verdict::Request(r.id, r.method),
        Ok(Message::Notification(n)) => Verdict::Notification(n.method),
        Ok(Message::Response(r)) => Verdict::Response(r.id),
        Err(e) => match e.reply() {
            None => Verdict::Silent,
            Some(reply) => match reply.outcome {
                Outcome::Error(err) => Verdict::Answer(err.code, reply.id),
                Outcome::Result(_) => panic!("an envelope error answered with a result"),
            },
        },
    }
}

/// Every check on one body; panics (the fuzzer's crash) on a violation.
pub fn check(body: &[u8]) {
    let verdict = actual(body);
    let Some(expected) = expected(body) else { return };
    assert_eq!(verdict, expected, "parse_message and SPEC.md §3.4 disagree");
    // A parsed message written again reads back as the same message.
    if let Ok(message) = parse_message(body) {
        let again = message.to_body();
        assert_eq!(actual(&again), verdict, "a message reads differently once written again");
        let params = |m: &Message| match m {
            Message::Request(r) => Some(r.params.get().to_owned()),
            Message::Notification(n) => Some(n.params.get().to_owned()),
            Message::Response(_) => None,
        };
        let first: Option<Value> = params(&message).and_then(|p| serde_json::from_str(&p).ok());
        let second =
            parse_message(&again).ok().and_then(|m| params(&m)).and_then(|p| serde_json::from_str(&p).ok());
        assert_eq!(first, second, "params changed when the message was written again");
    }
}
