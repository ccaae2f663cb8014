//! The JSON-RPC 2.0 envelope (SPEC.md §3): ids, requests, notifications, responses, and the
//! parser that classifies a frame body and says how to answer one that is not a valid message.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{codes, ErrorObject};

/// A request id (SPEC.md §3.2): an integer in the range of `i64`, or a string. Never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(untagged)]
pub enum Id {
    /// An integer id, as every Tether SDK mints them.
    Int(i64),
    /// A string id, which peers may use and which must be echoed exactly.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Int(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.to_owned())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Int(n) => serializer.serialize_i64(*n),
            Id::Str(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                Ok(Id::Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                i64::try_from(n)
                    .map(Id::Int)
                    .map_err(|_| E::custom("an id must fit in a signed 64-bit integer"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                Ok(Id::Str(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Id, E> {
                Ok(Id::Str(s))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// The `"jsonrpc": "2.0"` member, which serializes as that string and accepts nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TwoPointZero;

impl Serialize for TwoPointZero {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("2.0")
    }
}

impl JsonSchema for TwoPointZero {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonRpcVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "const": "2.0" })
    }
}

/// A request: it has an id and must be answered exactly once (SPEC.md §3.1).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: TwoPointZero,
    /// Unique among the sender's unanswered requests.
    pub id: Id,
    /// `<interface>.<method>`, or a reserved `tether/` method.
    pub method: String,
    /// Always a JSON object.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub params: Box<RawValue>,
}

/// A notification: no id, never answered (SPEC.md §3.5).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Notification {
    /// Always `"2.0"`.
    pub jsonrpc: TwoPointZero,
    /// A `$/` protocol notification or an application notification.
    pub method: String,
    /// Always a JSON object.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub params: Box<RawValue>,
}

/// A response: the id of the request it answers and either a result or an error.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: TwoPointZero,
    /// The request's id, echoed exactly; null only for an error answering a body whose id
    /// could not be read (a parse error, a batch, a null or malformed id).
    pub id: Option<Id>,
    /// The result or the error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a response carries.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The method's result: always a JSON object.
    Result(#[schemars(with = "serde_json::Map<String, Value>")] Box<RawValue>),
    /// The error (Appendix A of SPEC.md lists the codes).
    Error(ErrorObject),
}

/// One parsed message.
#[derive(Debug, Clone)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

impl Message {
    /// Serializes the message as a frame body.
    pub fn to_body(&self) -> Vec<u8> {
        let written = match self {
            Message::Request(m) => serde_json::to_vec(m),
            Message::Notification(m) => serde_json::to_vec(m),
            Message::Response(m) => serde_json::to_vec(m),
        };
        // Serializing these types cannot fail: every member is a string, number, raw JSON
        // that was already valid, or a map with string keys.
        written.unwrap_or_default()
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable_raw())
}

// `"{}"` is valid JSON, so the fallback in `empty_object` is never taken; this keeps the
// crate free of `unwrap` without pretending the case can happen.
fn unreachable_raw() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
}

impl Request {
    /// A request with params already encoded.
    pub fn new(id: Id, method: impl Into<String>, params: Box<RawValue>) -> Self {
        Request { jsonrpc: TwoPointZero, id, method: method.into(), params }
    }
}

impl Notification {
    /// A notification with params already encoded.
    pub fn new(method: impl Into<String>, params: Box<RawValue>) -> Self {
        Notification { jsonrpc: TwoPointZero, method: method.into(), params }
    }
}

impl Response {
    /// A successful response with the result already encoded.
    pub fn ok(id: Id, result: Box<RawValue>) -> Self {
        Response { jsonrpc: TwoPointZero, id: Some(id), outcome: Outcome::Result(result) }
    }

    /// An error response; `id` is `None` only when the request's id could not be read.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Response { jsonrpc: TwoPointZero, id, outcome: Outcome::Error(error) }
    }
}

/// Why a frame body is not a message, and what (if anything) to answer (SPEC.md §3.3, §3.4).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not valid JSON (or not UTF-8): answer -32700 with a null id.
    #[error("the body is not valid JSON: {0}")]
    Parse(String),
    /// A JSON array: batches are not part of Tether; answer -32600 with a null id.
    #[error("batches are not supported")]
    Batch,
    /// Valid JSON but not a valid message.
    #[error("not a valid JSON-RPC message: {reason}")]
    Invalid {
        /// The message's id when it could be read; null otherwise.
        id: Option<Id>,
        /// Whether the receiver answers it (SPEC.md §3.4.2): every invalid body is answered
        /// except one that looks like a notification (a `method` member and no `id` member) or
        /// like a response (a `result` or `error` member and no `method`), since neither
        /// notifications nor responses are ever answered.
        answer: bool,
        /// What is wrong, for the report.
        reason: String,
    },
    /// A request whose `params` is an array: valid JSON-RPC 2.0, but no Tether method takes
    /// positional params, so it is answered -32602 with its id (SPEC.md §3.4.2).
    #[error("invalid params: {reason}")]
    InvalidParams {
        /// The request's id.
        id: Id,
        /// What is wrong, for the report.
        reason: String,
    },
}

impl EnvelopeError {
    /// The error response the receiver sends, or `None` when it must stay silent.
    pub fn reply(&self) -> Option<Response> {
        match self {
            EnvelopeError::Parse(detail) => Some(Response::error(
                None,
                ErrorObject::new(codes::PARSE_ERROR, format!("parse error: {detail}")),
            )),
            EnvelopeError::Batch => Some(Response::error(
                None,
                ErrorObject::new(codes::INVALID_REQUEST, "batches are not supported by Tether"),
            )),
            EnvelopeError::InvalidParams { id, reason } => Some(Response::error(
                Some(id.clone()),
                ErrorObject::new(codes::INVALID_PARAMS, format!("invalid params: {reason}")),
            )),
            EnvelopeError::Invalid { id, answer, reason } => {
                if !answer {
                    return None;
                }
                Some(Response::error(
                    id.clone(),
                    ErrorObject::new(codes::INVALID_REQUEST, format!("invalid request: {reason}")),
                ))
            }
        }
    }
}

/// All members a message may have; which are present decides its kind.
#[derive(Deserialize)]
struct Envelope<'a> {
    // `present_raw`: a member that is `null` is present (`"params": null` makes a request
    // invalid, `"method": null` makes a body look like a request), unlike an absent one.
    #[serde(default, borrow, deserialize_with = "present_raw")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present_id")]
    id: Option<IdMember>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    result: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

/// Deserializes a member so that `"error": null` is `Some(Value::Null)`, unlike an absent member.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Deserializes a raw member so that `null` is `Some("null")`, unlike an absent member.
fn present_raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// Deserializes the `id` member so that `"id": null` is present, unlike an absent member.
fn present_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<IdMember>, D::Error> {
    IdMember::deserialize(deserializer).map(Some)
}

/// A present `id` member, read straight from the body: building a `Value` first and reading
/// the id from it cost a few hundred instructions per message on the hot path. Every JSON value
/// is accepted here, as the `Value` was, and sorted the way `Id::deserialize` of that `Value`
/// would have: the same visitor calls reach it, since both go through `deserialize_any`.
enum IdMember {
    /// `"id": null`, which is present, unlike an absent member.
    Null,
    /// An integer or a string id.
    Id(Id),
    /// Any other value (a float, an integer beyond `i64`, a boolean, an array, an object).
    Malformed,
}

impl<'de> Deserialize<'de> for IdMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = IdMember;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<IdMember, E> {
                Ok(IdMember::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<IdMember, E> {
                Ok(IdMember::Null)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IdMember, E> {
                Ok(IdMember::Id(Id::Int(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IdMember, E> {
                Ok(i64::try_from(n).map_or(IdMember::Malformed, |n| IdMember::Id(Id::Int(n))))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<IdMember, E> {
                Ok(IdMember::Malformed)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<IdMember, E> {
                Ok(IdMember::Malformed)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IdMember, E> {
                Ok(IdMember::Id(Id::Str(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<IdMember, E> {
                Ok(IdMember::Id(Id::Str(s)))
            }
            // Arrays and objects are read into a `Value` exactly as before (same nesting
            // limit, same errors), then dropped: they are never ids.
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<IdMember, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|_| IdMember::Malformed)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<IdMember, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(|_| IdMember::Malformed)
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// Parses a frame body into a message (SPEC.md §3).
///
/// An error response with `"id": null` (the answer to a body whose id could not be read) is a
/// [`Message::Response`] whose `id` is `None`: the receiver reports it and never answers it
/// (SPEC.md §3.4). Every other body that is not a valid message is an [`EnvelopeError`], whose
/// [`EnvelopeError::reply`] is the answer to send, if any.
pub fn parse_message(body: &[u8]) -> Result<Message, EnvelopeError> {
    if let Some(message) = writer_form::parse(body) {
        return Ok(message);
    }
    parse_general(body)
}

/// Any body, with serde: what [`parse_message`] does when the fast path does not apply.
fn parse_general(body: &[u8]) -> Result<Message, EnvelopeError> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'[') {
        // Still has to be valid JSON to be a batch rather than a parse error.
        return match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => Err(EnvelopeError::Batch),
            Err(e) => Err(EnvelopeError::Parse(e.to_string())),
        };
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => {
            // serde stops at the first value of the wrong shape (`4` in `4\xff...`): only a body
            // that is valid JSON throughout is an invalid message rather than a parse error
            // (found by the `message` fuzz target).
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(EnvelopeError::Parse(syntax.to_string()));
            }
            // Valid JSON of the wrong shape (a number, a string, a member of the wrong type).
            return Err(invalid_from_value(body, e.to_string()));
        }
        Err(e) => return Err(EnvelopeError::Parse(e.to_string())),
    };
    classify(envelope)
}

/// The bodies the Tether SDKs write, member for member (`{"jsonrpc":"2.0","id":7,"method":
/// "kv.get","params":{...}}`, the same without the id, and `{"jsonrpc":"2.0","id":7,"result":
/// {...}}`), read without serde's field matching: about half the cost of a message. Anything
/// else, including every body that is not valid, returns `None` and takes the general path, so
/// the result is always the one the general path would give.
mod writer_form {
    use serde_json::value::RawValue;

    use super::{Id, Message, Notification, Request, Response};

    pub(super) fn parse(body: &[u8]) -> Option<Message> {
        let rest = body.strip_prefix(br#"{"jsonrpc":"2.0","#)?;
        if let Some(rest) = rest.strip_prefix(br#""id":"#) {
            let (id, rest) = int_id(rest)?;
            if let Some(rest) = rest.strip_prefix(br#","method":"#) {
                let (method, rest) = method(rest)?;
                let params = object(rest.strip_prefix(br#","params":"#)?)?;
                return Some(Message::Request(Request::new(Id::Int(id), method, params)));
            }
            let result = object(rest.strip_prefix(br#","result":"#)?)?;
            return Some(Message::Response(Response::ok(Id::Int(id), result)));
        }
        let (method, rest) = method(rest.strip_prefix(br#""method":"#)?)?;
        let params = object(rest.strip_prefix(br#","params":"#)?)?;
        Some(Message::Notification(Notification::new(method, params)))
    }

    /// An integer id in JSON's grammar that fits in `i64`, and the bytes after it (a comma).
    fn int_id(text: &[u8]) -> Option<(i64, &[u8])> {
        let (negative, digits) = match text.strip_prefix(b"-") {
            Some(digits) => (true, digits),
            None => (false, text),
        };
        let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        // No leading zeros (not JSON) and no `-0`: both are left to the general path.
        if len == 0 || len > 18 || (digits[0] == b'0' && (len > 1 || negative)) {
            return None;
        }
        let value = digits[..len].iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0'));
        let rest = &digits[len..];
        if rest.first() != Some(&b',') {
            return None;
        }
        Some((if negative { -value } else { value }, rest))
    }

    /// A string without escapes (its bytes are its content) and the bytes after it.
    fn method(text: &[u8]) -> Option<(String, &[u8])> {
        let text = text.strip_prefix(b"\"")?;
        let end = text.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if text[end] != b'"' {
            return None;
        }
        let name = std::str::from_utf8(&text[..end]).ok()?;
        Some((name.to_owned(), &text[end + 1..]))
    }

    /// A JSON object followed only by the envelope's closing brace (and whitespace).
    fn object(text: &[u8]) -> Option<Box<RawValue>> {
        let text = trim(text).strip_suffix(b"}")?;
        let text = trim(text);
        if text.first() != Some(&b'{') || text.last() != Some(&b'}') {
            return None;
        }
        // The whole slice must be one valid JSON value; serde_json checks it, UTF-8 included.
        let raw: &RawValue = serde_json::from_slice(text).ok()?;
        Some(raw.to_owned())
    }

    fn trim(text: &[u8]) -> &[u8] {
        let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let start = text.iter().position(|b| !ws(b)).unwrap_or(text.len());
        let end = text.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
        &text[start..end.max(start)]
    }
}

fn invalid_from_value(body: &[u8], reason: String) -> EnvelopeError {
    let object = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.as_object().cloned());
    let id_member = object.as_ref().and_then(|o| o.get("id").cloned());
    let has = |key: &str| object.as_ref().is_some_and(|o| o.contains_key(key));
    let answer = answerable(has("method"), id_member.is_some(), has("result") || has("error"));
    let id = id_member.and_then(|v| serde_json::from_value::<Id>(v).ok());
    EnvelopeError::Invalid { id, answer, reason }
}

/// Whether an invalid body gets an answer (SPEC.md §3.4.2).
fn answerable(has_method: bool, has_id: bool, has_outcome: bool) -> bool {
    if has_method {
        has_id
    } else {
        !has_outcome
    }
}

/// The method name in a `method` member, or `None` when it is not a string.
fn method_name(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    // The parser already checked the string, so one without escapes is its own content: the
    // common case is sliced out instead of being parsed a second time.
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(inner.to_owned()),
        _ => serde_json::from_str(text).ok(),
    }
}

fn classify(envelope: Envelope<'_>) -> Result<Message, EnvelopeError> {
    let had_id = envelope.id.is_some();
    let answer =
        answerable(envelope.method.is_some(), had_id, envelope.result.is_some() || envelope.error.is_some());
    let id = match envelope.id {
        None | Some(IdMember::Null) => None,
        Some(IdMember::Id(id)) => Some(id),
        Some(IdMember::Malformed) => {
            return Err(EnvelopeError::Invalid {
                id: None,
                answer,
                reason: "the id must be an integer or a string".into(),
            })
        }
    };
    let id_for_errors = id.clone();
    let invalid = move |reason: &str| EnvelopeError::Invalid {
        id: id_for_errors.clone(),
        answer,
        reason: reason.into(),
    };
    let malformed = || invalid("the error member is malformed");
    match envelope.jsonrpc.map(RawValue::get) {
        Some("\"2.0\"") => {}
        _ => return Err(invalid("the jsonrpc member must be \"2.0\"")),
    }
    if let Some(method) = envelope.method {
        let method = method_name(method).ok_or_else(|| invalid("the method must be a string"))?;
        if envelope.result.is_some() || envelope.error.is_some() {
            return Err(invalid("a request cannot carry a result or an error"));
        }
        let params = match envelope.params {
            None => empty_object(),
            Some(raw) if raw.get().starts_with('{') => raw.to_owned(),
            Some(raw) if raw.get().starts_with('[') && had_id => {
                if let Some(id) = id {
                    return Err(EnvelopeError::InvalidParams {
                        id,
                        reason: "params must be a JSON object, not an array".into(),
                    });
                }
                return Err(invalid("a request id must not be null"));
            }
            Some(_) => return Err(invalid("params must be a JSON object")),
        };
        return match (had_id, id) {
            (false, _) => Ok(Message::Notification(Notification::new(method, params))),
            (true, Some(id)) => Ok(Message::Request(Request::new(id, method, params))),
            (true, None) => Err(invalid("a request id must not be null")),
        };
    }
    let Some(id) = id else {
        // The answer to a body whose id could not be read (a parse error, a batch, a null id)
        // is an error response with a null id (SPEC.md §3.3, §3.4); the receiver reports it.
        if had_id && envelope.result.is_none() {
            if let Some(error) = envelope.error {
                return Ok(Message::Response(Response::error(
                    None,
                    error_object(error).ok_or_else(malformed)?,
                )));
            }
        }
        return Err(invalid("a message needs a method, or an id and a result or error"));
    };
    match (envelope.result, envelope.error) {
        (Some(result), None) => Ok(Message::Response(Response::ok(id, result.to_owned()))),
        (None, Some(error)) => {
            Ok(Message::Response(Response::error(Some(id), error_object(error).ok_or_else(malformed)?)))
        }
        (Some(_), Some(_)) => Err(invalid("a response cannot carry both a result and an error")),
        (None, None) => Err(invalid("a response needs a result or an error")),
    }
}

/// The `error` member of a response: an object with an integer `code` and a string `message`
/// (SPEC.md §3.4). Checked to be an object first: serde reads a struct from an array too
/// (`[1, "m"]` as code and message), which the fuzzer found (`spec/fuzz/regressions/message/`).
fn error_object(error: Value) -> Option<ErrorObject> {
    error.is_object().then(|| serde_json::from_value(error).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_member_that_is_an_array_is_not_an_error_object() {
        // Responses stay silent when malformed (SPEC.md §3.4): neither is read as a response.
        for body in [
            r#"{"jsonrpc":"2.0","id":null,"error":[1,"m"]}"#,
            r#"{"jsonrpc":"2.0","id":4,"error":[1,"m",null]}"#,
        ] {
            let parsed = parse_message(body.as_bytes());
            assert!(matches!(&parsed, Err(e) if e.reply().is_none()), "{body}: {parsed:?}");
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|_| empty_object())
    }

    #[test]
    fn request_is_written_with_id_and_method_first() {
        let msg = Message::Request(Request::new(Id::Int(7), "kv.get", raw(r#"{"key":"a"}"#)));
        assert_eq!(
            String::from_utf8_lossy(&msg.to_body()),
            r#"{"jsonrpc":"2.0","id":7,"method":"kv.get","params":{"key":"a"}}"#
        );
    }

    #[test]
    fn responses_are_written_exactly() {
        let ok = Message::Response(Response::ok(Id::from("a"), raw("{}")));
        assert_eq!(String::from_utf8_lossy(&ok.to_body()), r#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        let err =
            Message::Response(Response::error(None, ErrorObject::new(codes::PARSE_ERROR, "parse error")));
        assert_eq!(
            String::from_utf8_lossy(&err.to_body()),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
        );
    }

    #[test]
    fn notification_has_no_id() {
        let msg = Message::Notification(Notification::new("$/cancelRequest", raw(r#"{"id":3}"#)));
        assert_eq!(
            String::from_utf8_lossy(&msg.to_body()),
            r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":3}}"#
        );
    }

    #[test]
    fn parses_each_kind() {
        let m = parse_message(br#"{"jsonrpc":"2.0","id":"x","method":"tether/ping"}"#);
        assert!(matches!(m, Ok(Message::Request(r)) if r.id == Id::from("x") && r.params.get() == "{}"));
        let m =
            parse_message(br#"{"jsonrpc":"2.0","method":"$/log","params":{"level":"info","message":"m"}}"#);
        assert!(matches!(m, Ok(Message::Notification(n)) if n.method == "$/log"));
        let m = parse_message(br#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#);
        assert!(
            matches!(m, Ok(Message::Response(Response { outcome: Outcome::Result(r), .. })) if r.get() == r#"{"a":1}"#)
        );
        let m = parse_message(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1001,"message":"key not found: k","data":{"key":"k"}}}"#);
        assert!(
            matches!(m, Ok(Message::Response(Response { outcome: Outcome::Error(e), .. })) if e.code == 1001)
        );
    }

    #[test]
    fn error_responses_with_a_null_id_are_responses() {
        let m =
            parse_message(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#);
        assert!(
            matches!(m, Ok(Message::Response(Response { id: None, outcome: Outcome::Error(e), .. })) if e.code == -32700)
        );
        let no_id = parse_message(br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error"}}"#);
        assert!(matches!(no_id, Err(EnvelopeError::Invalid { answer: false, id: None, .. })));
        let both = parse_message(br#"{"jsonrpc":"2.0","id":3,"result":{},"error":{"code":1,"message":"m"}}"#);
        assert!(matches!(both, Err(EnvelopeError::Invalid { answer: false, id: Some(Id::Int(3)), .. })));
    }

    #[test]
    fn the_writer_form_fast_path_agrees_with_the_general_parser() {
        let taken = [
            r#"{"jsonrpc":"2.0","id":7,"method":"kv.get","params":{"key":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":-42,"method":"","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":0,"method":"a.b","params": {"x":[1,{"y":null}]} } "#,
            r#"{"jsonrpc":"2.0","id":999999999999999999,"result":{"value":"aGk="}}"#,
            r#"{"jsonrpc":"2.0","method":"$/log","params":{"level":"info","message":"é"}}"#,
        ];
        for body in taken {
            let fast = writer_form::parse(body.as_bytes());
            assert!(fast.is_some(), "{body}");
            assert_eq!(format!("{fast:?}"), format!("{:?}", parse_general(body.as_bytes()).ok()), "{body}");
        }
        let left = [
            r#"{"jsonrpc":"2.0","id":07,"method":"a.b","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":-0,"method":"a.b","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"a.b","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a"b","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":{}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":{"a":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":{},"x":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":{}}x"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\u{1}\",\"params\":{}}",
        ];
        for body in left {
            assert!(writer_form::parse(body.as_bytes()).is_none(), "{body}");
        }
        assert!(
            writer_form::parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\",\"params\":{}}").is_none()
        );
    }

    #[test]
    fn bad_bodies_get_the_spec_errors() {
        assert!(matches!(parse_message(b"{nope"), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse_message(b"4\xff0"), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse_message(b"\"x\" 1"), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse_message(b"[1,2]"), Err(EnvelopeError::Batch)));
        assert!(matches!(parse_message(b"[1,"), Err(EnvelopeError::Parse(_))));
        let null_id = parse_message(br#"{"jsonrpc":"2.0","id":null,"method":"kv.get","params":{}}"#);
        assert!(matches!(&null_id, Err(EnvelopeError::Invalid { id: None, answer: true, .. })));
        let reply = null_id.err().and_then(|e| e.reply()).map(|r| Message::Response(r).to_body());
        assert!(reply.is_some_and(|b| b.starts_with(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600"#)));
        let no_version = parse_message(br#"{"id":4,"method":"kv.get","params":{}}"#);
        assert!(matches!(no_version, Err(EnvelopeError::Invalid { id: Some(Id::Int(4)), .. })));
        let array_params = parse_message(br#"{"jsonrpc":"2.0","id":5,"method":"kv.get","params":[]}"#);
        assert!(matches!(array_params, Err(EnvelopeError::InvalidParams { id: Id::Int(5), .. })));
        let reply = array_params.err().and_then(|e| e.reply()).map(|r| Message::Response(r).to_body());
        assert!(reply.is_some_and(|b| b.starts_with(br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32602"#)));
        let bad_notification = parse_message(br#"{"jsonrpc":"2.0","method":7}"#);
        assert!(bad_notification.is_err_and(|e| e.reply().is_none()));
        assert!(matches!(parse_message(b"42"), Err(EnvelopeError::Invalid { answer: true, id: None, .. })));
        let not_a_notification = parse_message(br#"{"jsonrpc":"2.0"}"#);
        assert!(not_a_notification.is_err_and(|e| e.reply().is_some()));
        let null_result = parse_message(br#"{"jsonrpc":"2.0","id":null,"result":{}}"#);
        assert!(matches!(null_result, Err(EnvelopeError::Invalid { id: None, answer: false, .. })));
        let float_id = parse_message(br#"{"jsonrpc":"2.0","id":1.5,"method":"a.b"}"#);
        assert!(matches!(float_id, Err(EnvelopeError::Invalid { id: None, answer: true, .. })));
    }
}
