//! The JSON Schema (draft 2020-12) of the protocol, generated from this crate's types: the
//! document committed as `schema/tether.schema.json` (see `schema/README.md`).
//!
//! The document validates one message (its root is [`MESSAGE`]); its `$defs` hold every wire
//! type by name, and one entry per method for its params and its result, named by
//! [`params_def`] and [`result_def`] (`params:kv.put`, `result:tether/initialize`, ...), so that
//! a receiver that knows which request a response answers can check its result too.
//!
//! ```
//! let doc = tether_spec::schema::document();
//! assert_eq!(doc["$schema"], "https://json-schema.org/draft/2020-12/schema");
//! assert!(doc["$defs"][tether_spec::schema::params_def("kv.put")].is_object());
//! ```

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::broker::{HandleParams, HandleRef, Invoke, Release, Retain};
use crate::cancel::CancelRequest;
use crate::error::{codes, ErrorObject};
use crate::interfaces::{blob, counter, kv};
use crate::lifecycle::{Capabilities, Initialize, Ping, Shutdown, VersionMismatch};
use crate::log::{Log, SetLogLevel};
use crate::message::{Id, Notification, Request, Response};
use crate::method::{NotificationMethod, RequestMethod};
use crate::stream::{StreamAbort, StreamCredit, StreamData, StreamEnd, StreamRef};

/// The `$defs` name of the schema of one message: the root of the document.
pub const MESSAGE: &str = "Message";

/// The `$schema` of the document.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The `$defs` name of a method's params schema: `params:<method>`.
pub fn params_def(method: &str) -> String {
    format!("params:{method}")
}

/// The `$defs` name of a request method's result schema: `result:<method>`.
pub fn result_def(method: &str) -> String {
    format!("result:{method}")
}

/// A JSON pointer fragment to a `$defs` entry, escaped as RFC 6901 requires (`/` is `~1`).
pub fn def_ref(name: &str) -> String {
    format!("#/$defs/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// How a method is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// A request: params and a result.
    Request,
    /// A notification: params only.
    Notification,
}

/// One method the document describes.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The method's name: the wire name, or `<interface>.<method>` for a method of a handle's
    /// interface (`adder.sum`), which is called through `tether/invoke` by its short name.
    pub method: &'static str,
    /// Request or notification.
    pub kind: MethodKind,
    /// Whether it is called by name in a message's `method` member (false for `adder.sum`).
    pub on_the_wire: bool,
}

/// Every method the document describes, in the order of SPEC.md.
pub fn methods() -> Vec<MethodInfo> {
    let r = |method, on_the_wire| MethodInfo { method, kind: MethodKind::Request, on_the_wire };
    let n = |method| MethodInfo { method, kind: MethodKind::Notification, on_the_wire: true };
    vec![
        r(Initialize::METHOD, true),
        r(Ping::METHOD, true),
        r(Shutdown::METHOD, true),
        r(Invoke::METHOD, true),
        r(Retain::METHOD, true),
        n(Release::METHOD),
        n(CancelRequest::METHOD),
        n(Log::METHOD),
        n(SetLogLevel::METHOD),
        n(StreamData::METHOD),
        n(StreamEnd::METHOD),
        n(StreamCredit::METHOD),
        n(StreamAbort::METHOD),
        n(crate::progress::Progress::METHOD),
        r(kv::Put::METHOD, true),
        r(kv::Get::METHOD, true),
        r(kv::Delete::METHOD, true),
        r(counter::Put::METHOD, true),
        r(counter::Get::METHOD, true),
        r("adder.sum", false),
        r(blob::Upload::METHOD, true),
        r(blob::Download::METHOD, true),
        r(blob::Count::METHOD, true),
        r(blob::Produce::METHOD, true),
    ]
}

struct Builder {
    generator: SchemaGenerator,
    methods: Vec<(String, Value)>,
}

impl Builder {
    fn request<M: RequestMethod>(&mut self, name: &str) {
        let params = self.generator.subschema_for::<M::Params>().to_value();
        let result = self.generator.subschema_for::<M::Result>().to_value();
        self.methods.push((params_def(name), params));
        self.methods.push((result_def(name), result));
    }

    fn notification<N: NotificationMethod>(&mut self) {
        let params = self.generator.subschema_for::<N::Params>().to_value();
        self.methods.push((params_def(N::METHOD), params));
    }

    fn def<T: JsonSchema>(&mut self) {
        self.generator.subschema_for::<T>();
    }
}

/// Builds the whole document. It is deterministic: the committed file is this value written
/// with two-space indentation and a final newline (see [`document_text`]).
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12();
    let mut b = Builder { generator: settings.into_generator(), methods: Vec::new() };
    b.def::<Request>();
    b.def::<Notification>();
    b.def::<Response>();
    b.def::<Id>();
    b.def::<ErrorObject>();
    b.def::<HandleRef>();
    b.def::<VersionMismatch>();
    b.def::<kv::KeyNotFound>();
    b.def::<blob::BlobNotFound>();
    b.def::<StreamRef>();
    b.def::<Capabilities>();
    b.request::<Initialize>(Initialize::METHOD);
    b.request::<Ping>(Ping::METHOD);
    b.request::<Shutdown>(Shutdown::METHOD);
    b.request::<Invoke>(Invoke::METHOD);
    b.request::<Retain>(Retain::METHOD);
    b.notification::<Release>();
    b.notification::<CancelRequest>();
    b.notification::<Log>();
    b.notification::<SetLogLevel>();
    b.notification::<StreamData>();
    b.notification::<StreamEnd>();
    b.notification::<StreamCredit>();
    b.notification::<StreamAbort>();
    b.notification::<crate::progress::Progress>();
    b.def::<crate::meta::Meta>();
    b.request::<kv::Put>(kv::Put::METHOD);
    b.request::<kv::Get>(kv::Get::METHOD);
    b.request::<kv::Delete>(kv::Delete::METHOD);
    b.request::<counter::Put>(counter::Put::METHOD);
    b.request::<counter::Get>(counter::Get::METHOD);
    b.request::<counter::Sum>("adder.sum");
    b.request::<blob::Upload>(blob::Upload::METHOD);
    b.request::<blob::Download>(blob::Download::METHOD);
    b.request::<blob::Count>(blob::Count::METHOD);
    b.request::<blob::Produce>(blob::Produce::METHOD);
    let Builder { mut generator, methods } = b;
    let mut defs: Map<String, Value> = std::mem::take(generator.definitions_mut());
    refine_envelopes(&mut defs);
    let wire: Vec<MethodInfo> = methods_on_the_wire();
    defs.insert(MESSAGE.to_owned(), message_schema(&wire));
    for (name, schema) in methods {
        defs.insert(name, schema);
    }
    // `HandleParams` is the data of -32003; make sure it is named even if no method used it.
    if !defs.contains_key("HandleParams") {
        let schema = SchemaSettings::draft2020_12().into_generator().root_schema_for::<HandleParams>();
        defs.insert("HandleParams".into(), schema.to_value());
    }
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "$schema": DIALECT,
        "title": "Tether protocol, version 1",
        "description": "One JSON-RPC 2.0 message of the Tether protocol (SPEC.md §3), with the params of every method SPEC.md defines checked against that method's schema. `$defs` names every wire type, and `params:<method>` / `result:<method>` give each method's params and result (generated from the Rust crate tether-spec; do not edit by hand).",
        "$ref": def_ref(MESSAGE),
        "$defs": Value::Object(sorted.into_iter().collect()),
    })
}

fn methods_on_the_wire() -> Vec<MethodInfo> {
    methods().into_iter().filter(|m| m.on_the_wire).collect()
}

/// The document as it is committed: pretty-printed, with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// Adds what the derived envelope schemas cannot say: which members each kind must not have,
/// and the data of the protocol's error codes whose data Appendix A fixes.
fn refine_envelopes(defs: &mut Map<String, Value>) {
    if let Some(Value::Object(method)) = defs.get_mut("MethodSchema") {
        // SPEC.md §4.4: a plugin gives a schema of type object for each.
        let object_schema = |what: &str| {
            json!({
                "type": "object",
                "properties": { "type": { "const": "object" } },
                "required": ["type"],
                "description": format!("JSON Schema (draft 2020-12) of the {what} object: a schema of type object (SPEC.md §4.4).")
            })
        };
        method.insert(
            "properties".into(),
            json!({ "params": object_schema("params"), "result": object_schema("result") }),
        );
    }
    let forbid = |members: &[&str]| {
        let any: Vec<Value> = members.iter().map(|m| json!({ "required": [m] })).collect();
        json!({ "anyOf": any })
    };
    if let Some(Value::Object(request)) = defs.get_mut("Request") {
        request.insert("not".into(), forbid(&["result", "error"]));
    }
    if let Some(Value::Object(notification)) = defs.get_mut("Notification") {
        notification.insert("not".into(), forbid(&["id", "result", "error"]));
    }
    if let Some(Value::Object(response)) = defs.get_mut("Response") {
        response.insert("not".into(), forbid(&["method", "params"]));
        // The id is always written; it is null only as `then` below allows.
        response.insert("required".into(), json!(["jsonrpc", "id"]));
        response.insert("if".into(), json!({ "properties": { "id": { "type": "null" } } }));
        response.insert(
            "then".into(),
            json!({
                "description": "A null id only answers a body whose id could not be read, always with an error.",
                "required": ["error"]
            }),
        );
    }
    // After the response's id was made required above.
    for schema in defs.values_mut() {
        strip_optional_nulls(schema);
    }
    if let Some(Value::Object(error)) = defs.get_mut("ErrorObject") {
        let data = |code: i64, schema: Value| {
            json!({
                "if": { "properties": { "code": { "const": code } }, "required": ["code"] },
                "then": { "properties": { "data": schema }, "required": ["data"] }
            })
        };
        error.insert(
            "allOf".into(),
            json!([
                data(codes::UNSUPPORTED_VERSION, json!({ "$ref": def_ref("VersionMismatch") })),
                data(codes::UNKNOWN_HANDLE, json!({ "$ref": def_ref("HandleParams") })),
                data(
                    codes::FRAME_TOO_LARGE,
                    json!({
                        "type": "object",
                        "properties": {
                            "size": { "type": "integer", "minimum": 0, "description": "The declared body length." },
                            "max": { "type": "integer", "minimum": 0, "description": "The maximum frame size in force." }
                        },
                        "required": ["size", "max"]
                    })
                ),
            ]),
        );
    }
}

/// One message: a request, a notification or a response, with the params of each known method
/// checked against its schema.
fn message_schema(methods: &[MethodInfo]) -> Value {
    let checks: Vec<Value> = methods
        .iter()
        .map(|m| {
            json!({
                "if": { "properties": { "method": { "const": m.method } }, "required": ["method"] },
                "then": { "properties": { "params": { "$ref": def_ref(&params_def(m.method)) } } }
            })
        })
        .collect();
    json!({
        "description": "One Tether message (SPEC.md §3.1): the body of one frame.",
        "oneOf": [
            { "$ref": def_ref("Request") },
            { "$ref": def_ref("Notification") },
            { "$ref": def_ref("Response") }
        ],
        "allOf": checks
    })
}

/// A member that is optional in Rust (`Option<T>`, skipped when `None`) is written either with a
/// value or not at all, never as `null`: its schema is `T`'s. Required members keep their `null`
/// (a response's `id`).
fn strip_optional_nulls(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let required: Vec<String> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if required.contains(name) {
                continue;
            }
            let Value::Object(p) = property else { continue };
            if let Some(Value::Array(types)) = p.get("type") {
                let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                if kept.len() == 1 {
                    p.insert("type".into(), kept[0].clone());
                }
            }
            let any_of = p.get("anyOf").and_then(Value::as_array).cloned().unwrap_or_default();
            let is_null = |v: &Value| v == &json!({ "type": "null" });
            if any_of.len() == 2 && any_of.iter().any(is_null) {
                p.remove("anyOf");
                if let Some(Value::Object(inner)) = any_of.into_iter().find(|v| !is_null(v)) {
                    for (k, v) in inner {
                        p.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
}
