//! The source of every transcript in `transcripts/`: the frames written as JSON, so that the
//! generated files always carry the right `Content-Length`. `UPDATE_TRANSCRIPTS=1 cargo test -p
//! tether-spec --test transcripts` rewrites the files from here.

use std::collections::BTreeMap;

use serde_json::value::to_raw_value;
use tether_spec::interfaces::{counter, kv};
use tether_spec::{
    parse_message, Capabilities, ErrorObject, InitializeResult, Message, NegotiatedInterface, PeerInfo,
    Response, VersionMismatch,
};

use super::transcript::{Block, Dir, Transcript};

mod attachments;
mod progress;
mod streams;

/// A transcript being written.
struct Script {
    name: &'static str,
    plugin: &'static str,
    blocks: Vec<Block>,
    pending: Vec<String>,
}

impl Script {
    fn new(name: &'static str, plugin: &'static str, about: &[&str]) -> Self {
        let mut pending = vec![format!("plugin: {plugin}")];
        pending.extend(about.iter().map(|s| s.to_string()));
        Script { name, plugin, blocks: Vec::new(), pending }
    }

    /// Comment lines for the next block (an empty string writes a bare `#`).
    fn note(&mut self, lines: &[&str]) -> &mut Self {
        self.pending.extend(lines.iter().map(|s| s.to_string()));
        self
    }

    fn push(&mut self, dir: Dir, body: impl Into<Vec<u8>>) -> &mut Self {
        let body = body.into();
        // Every well-formed body is written compactly, members in the order given.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            assert_eq!(
                serde_json::to_vec(&value).unwrap(),
                body,
                "{}: write bodies compactly: {}",
                self.name,
                String::from_utf8_lossy(&body)
            );
        }
        let comments = std::mem::take(&mut self.pending);
        self.blocks.push(Block { comments, dir, body, attachments: Vec::new(), line: 0 });
        self
    }

    /// A frame with attachments (SPEC.md §2.8) in either direction.
    fn push_attached(&mut self, dir: Dir, body: impl Into<Vec<u8>>, attachments: &[&[u8]]) -> &mut Self {
        self.push(dir, body);
        if let Some(block) = self.blocks.last_mut() {
            block.attachments = attachments.iter().map(|a| a.to_vec()).collect();
        }
        self
    }

    fn send_attached(&mut self, body: impl Into<Vec<u8>>, attachments: &[&[u8]]) -> &mut Self {
        self.push_attached(Dir::ToPlugin, body, attachments)
    }

    fn recv_attached(&mut self, body: impl Into<Vec<u8>>, attachments: &[&[u8]]) -> &mut Self {
        self.push_attached(Dir::ToHost, body, attachments)
    }

    fn send(&mut self, body: impl Into<Vec<u8>>) -> &mut Self {
        self.push(Dir::ToPlugin, body)
    }

    fn recv(&mut self, body: impl Into<Vec<u8>>) -> &mut Self {
        self.push(Dir::ToHost, body)
    }

    fn finish(mut self, trailer: &[&str]) -> (&'static str, Transcript) {
        self.pending.extend(trailer.iter().map(|s| s.to_string()));
        (
            self.name,
            Transcript {
                name: self.name.to_owned(),
                plugin: self.plugin.to_owned(),
                blocks: self.blocks,
                trailer: self.pending,
            },
        )
    }
}

fn request(id: &str, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

fn notification(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params}}}"#)
}

fn ok(id: &str, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

fn error(id: &str, error: ErrorObject) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{}}}"#, serde_json::to_string(&error).unwrap())
}

/// The answer the reference implementation gives to a body that is not a valid message.
fn envelope_reply(body: &str) -> String {
    let Err(e) = parse_message(body.as_bytes()) else { panic!("{body} is a valid message") };
    let reply = e.reply().unwrap_or_else(|| panic!("{body} is not answered"));
    String::from_utf8(Message::Response(reply).to_body()).unwrap()
}

const HOST: &str = r#"{"name":"kv_host","version":"0.1.0"}"#;

fn initialize(id: &str, interfaces: &str, log_level: &str) -> String {
    initialize_with(id, interfaces, log_level, "{}")
}

fn initialize_with(id: &str, interfaces: &str, log_level: &str, capabilities: &str) -> String {
    request(
        id,
        "tether/initialize",
        &format!(
            r#"{{"protocolVersions":[1],"interfaces":{interfaces},"host":{HOST},"capabilities":{capabilities},"maxFrameSize":33554432,"logLevel":"{log_level}"}}"#
        ),
    )
}

fn initialized(id: &str, plugin: &str, interfaces: &[(&str, u32)]) -> String {
    initialized_with(id, plugin, interfaces, Capabilities::new())
}

fn initialized_with(
    id: &str,
    plugin: &str,
    interfaces: &[(&str, u32)],
    capabilities: Capabilities,
) -> String {
    let result = InitializeResult {
        protocol_version: 1,
        plugin: PeerInfo::new(plugin, "0.1.0"),
        capabilities,
        interfaces: interfaces
            .iter()
            .map(|&(name, version)| {
                let methods = match name {
                    "kv" => kv::methods(version),
                    "blob" => tether_spec::interfaces::blob::methods(version),
                    _ => counter::methods(version),
                };
                (name.to_owned(), NegotiatedInterface { version, methods })
            })
            .collect::<BTreeMap<_, _>>(),
    };
    let id: serde_json::Value = serde_json::from_str(id).unwrap();
    let id = serde_json::from_value(id).unwrap();
    String::from_utf8(Message::Response(Response::ok(id, to_raw_value(&result).unwrap())).to_body()).unwrap()
}

fn log_debug(message: &str, key: &str, bytes: usize) -> String {
    notification(
        "$/log",
        &format!(
            r#"{{"level":"debug","message":"{message}","target":"kv","fields":{{"key":"{key}","bytes":{bytes}}}}}"#
        ),
    )
}

fn method_not_found(id: &str, method: &str, reason: &str) -> String {
    error(id, ErrorObject::method_not_found(method, reason))
}

fn kv_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "kv.tether",
        "kv",
        &[
            "A complete kv session: the host offers kv versions 1 and 2 and the plugin chooses 2;",
            "puts, gets, an overwrite, a missing key, an empty value, deletes, a ping, shutdown.",
            "Values are base64 (SPEC.md §5.3). The session's log level is info, so kv.put sends no",
            "$/log (see logs.tether).",
        ],
    );
    s.note(&["", "The host's first message: tether/initialize (SPEC.md §4.2)."])
        .send(initialize("1", r#"{"kv":[1,2]}"#, "info"))
        .note(&[
            "The plugin chooses core version 1 and kv version 2, the highest both speak (§4.3), and",
            "lists the methods of kv version 2 with their JSON Schemas (§4.4). A replayer compares",
            "only protocolVersion, the interfaces, their versions and method names.",
        ])
        .recv(initialized("1", "kv-reference", &[("kv", 2)]))
        .note(&["", "Store \"world\" under \"hello\"."])
        .send(request("2", "kv.put", r#"{"key":"hello","value":"d29ybGQ="}"#))
        .recv(ok("2", "{}"))
        .send(request("3", "kv.get", r#"{"key":"hello"}"#))
        .recv(ok("3", r#"{"value":"d29ybGQ="}"#))
        .note(&["", "kv.put replaces the previous value: \"there\"."])
        .send(request("4", "kv.put", r#"{"key":"hello","value":"dGhlcmU="}"#))
        .recv(ok("4", "{}"))
        .send(request("5", "kv.get", r#"{"key":"hello"}"#))
        .recv(ok("5", r#"{"value":"dGhlcmU="}"#))
        .note(&[
            "",
            "A key that was never put: error 1001 (key not found) with data.key (§9.1). Replayers",
            "compare the code and data, not the message.",
        ])
        .send(request("6", "kv.get", r#"{"key":"missing"}"#))
        .recv(error("6", kv::key_not_found("missing")))
        .note(&["", "An empty value is a value: its base64 is the empty string."])
        .send(request("7", "kv.put", r#"{"key":"empty","value":""}"#))
        .recv(ok("7", "{}"))
        .send(request("8", "kv.get", r#"{"key":"empty"}"#))
        .recv(ok("8", r#"{"value":""}"#))
        .note(&[
            "",
            "A key outside ASCII and bytes that are not text (00 ff 10): Content-Length counts the",
            "body's UTF-8 bytes, not its characters.",
        ])
        .send(request("9", "kv.put", r#"{"key":"grüße","value":"AP8Q"}"#))
        .recv(ok("9", "{}"))
        .send(request("10", "kv.get", r#"{"key":"grüße"}"#))
        .recv(ok("10", r#"{"value":"AP8Q"}"#))
        .note(&["", "kv.delete exists in version 2 (§9.2): the key held a value..."])
        .send(request("11", "kv.delete", r#"{"key":"hello"}"#))
        .recv(ok("11", r#"{"existed":true}"#))
        .note(&["...and now it does not."])
        .send(request("12", "kv.delete", r#"{"key":"hello"}"#))
        .recv(ok("12", r#"{"existed":false}"#))
        .send(request("13", "kv.get", r#"{"key":"hello"}"#))
        .recv(error("13", kv::key_not_found("hello")))
        .note(&["", "A liveness check (§4.5)."])
        .send(request("14", "tether/ping", "{}"))
        .recv(ok("14", "{}"))
        .note(&["", "The host ends the session (§4.6), then closes the plugin's stdin."])
        .send(request("15", "tether/shutdown", "{}"))
        .recv(ok("15", "{}"));
    s.finish(&["", "End of input: the plugin exits with status 0 (§1.6)."])
}

fn kv_v1_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "kv-v1.tether",
        "kv",
        &[
            "A host that speaks only kv version 1: the plugin chooses 1, and kv.delete (version 2)",
            "does not exist in this session (§4.3, §9.2).",
        ],
    );
    s.note(&["", "The host offers kv [1] only."])
        .send(initialize("1", r#"{"kv":[1]}"#, "info"))
        .note(&["Version 1 has put and get, not delete."])
        .recv(initialized("1", "kv-reference", &[("kv", 1)]))
        .send(request("2", "kv.put", r#"{"key":"a","value":"MQ=="}"#))
        .recv(ok("2", "{}"))
        .note(&[
            "",
            "kv.delete is answered with -32601 (method not found); data says which version the method",
            "needs. Replayers compare the code only: the data of -32601 is free-form.",
        ])
        .send(request("3", "kv.delete", r#"{"key":"a"}"#))
        .recv(method_not_found(
            "3",
            "kv.delete",
            "kv.delete needs kv version 2; this session uses kv version 1",
        ))
        .note(&["", "The key is still there."])
        .send(request("4", "kv.get", r#"{"key":"a"}"#))
        .recv(ok("4", r#"{"value":"MQ=="}"#))
        .note(&[""])
        .send(request("5", "tether/shutdown", "{}"))
        .recv(ok("5", "{}"));
    s.finish(&[])
}

fn handle(id: &str) -> String {
    format!(r#"{{"$handle":"{id}","interface":"adder"}}"#)
}

fn counter_put(id: &str, key: &str, value: i64, handle_id: &str) -> String {
    request(id, "counter.put", &format!(r#"{{"key":"{key}","value":{value},"adder":{}}}"#, handle(handle_id)))
}

fn invoke_sum(id: &str, handle_id: &str, a: i64, b: i64) -> String {
    request(
        id,
        "tether/invoke",
        &format!(r#"{{"handle":"{handle_id}","method":"sum","params":{{"a":{a},"b":{b}}}}}"#),
    )
}

fn counter_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "counter.tether",
        "counter",
        &[
            "The broker callback (SPEC.md §6, §9.3): the host passes the plugin a handle to an adder it",
            "serves; the plugin's counter.put calls sum on it through tether/invoke, and stores what",
            "the host answered.",
        ],
    );
    s.note(&[""])
        .send(initialize("1", r#"{"counter":[1]}"#, "info"))
        .recv(initialized("1", "counter-reference", &[("counter", 1)]))
        .note(&["", "A key never put counts 0."])
        .send(request("2", "counter.get", r#"{"key":"visits"}"#))
        .recv(ok("2", r#"{"value":0}"#))
        .note(&[
            "",
            "counter.put carries a handle (§6.1): an object with exactly $handle and interface. The",
            "handle lives until the plugin's answer to this request (§6.3).",
        ])
        .send(counter_put("3", "visits", 5, "h1"))
        .note(&[
            "While handling the put, the plugin invokes sum on the handle (§6.2) with a = the stored",
            "value and b = the value to add. This is the plugin's own request: its id (1) is the",
            "plugin's choice, and a replayer binds it to whatever id the plugin used (README rule 4).",
        ])
        .recv(invoke_sum("1", "h1", 0, 5))
        .note(&["The host's adder answers with the result, as a response to the invoke..."])
        .send(ok("1", r#"{"result":5}"#))
        .note(&["...and the plugin stores it and answers the put."])
        .recv(ok("3", "{}"))
        .send(request("4", "counter.get", r#"{"key":"visits"}"#))
        .recv(ok("4", r#"{"value":5}"#))
        .note(&["", "A second put, with a new handle: sum is called with the stored 5."])
        .send(counter_put("5", "visits", 3, "h2"))
        .recv(invoke_sum("2", "h2", 5, 3))
        .send(ok("2", r#"{"result":8}"#))
        .recv(ok("5", "{}"))
        .send(request("6", "counter.get", r#"{"key":"visits"}"#))
        .recv(ok("6", r#"{"value":8}"#))
        .note(&[""])
        .send(request("7", "tether/shutdown", "{}"))
        .recv(ok("7", "{}"));
    s.finish(&[])
}

fn cancel_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "cancel.tether",
        "counter",
        &[
            "Cancellation (SPEC.md §7) across a callback: the host holds the plugin's sum, then cancels",
            "the counter.put. The plugin cancels its own pending invoke (§7.2) and answers the put",
            "with -32800; the host's late answer to the invoke is ignored (§7.3, §3.4).",
        ],
    );
    s.note(&[""])
        .send(initialize("1", r#"{"counter":[1]}"#, "info"))
        .recv(initialized("1", "counter-reference", &[("counter", 1)]))
        .note(&[""])
        .send(counter_put("2", "slow", 1, "h1"))
        .note(&["The plugin invokes sum; the host does not answer it yet."])
        .recv(invoke_sum("1", "h1", 0, 1))
        .note(&["", "The host gives up on the put."])
        .send(notification("$/cancelRequest", r#"{"id":2}"#))
        .note(&[
            "The plugin cancels what the put started: $/cancelRequest for its invoke (params.id is the",
            "plugin's invoke id, bound by README rule 4), without waiting for an answer to it...",
        ])
        .recv(notification("$/cancelRequest", r#"{"id":1}"#))
        .note(&[
            "...and answers the put with -32800 (request cancelled). These two frames may come in",
            "either order.",
        ])
        .recv(error("2", ErrorObject::cancelled()))
        .note(&[
            "",
            "The host's adder answers the invoke late: the plugin no longer waits for it, so this is a",
            "response for an unknown id, which the plugin ignores without ending the session.",
        ])
        .send(ok("1", r#"{"result":1}"#))
        .note(&["", "The session is alive..."])
        .send(request("3", "tether/ping", "{}"))
        .recv(ok("3", "{}"))
        .note(&["...and the cancelled put stored nothing."])
        .send(request("4", "counter.get", r#"{"key":"slow"}"#))
        .recv(ok("4", r#"{"value":0}"#))
        .note(&[""])
        .send(request("5", "tether/shutdown", "{}"))
        .recv(ok("5", "{}"));
    s.finish(&[])
}

fn version_mismatch_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "version-mismatch.tether",
        "kv",
        &[
            "No common interface version (SPEC.md §4.3): the host speaks kv 9 only, the plugin kv 1",
            "and 2. The initialize fails with -32001, whose data names both sides' versions.",
        ],
    );
    s.note(&[""]).send(initialize("1", r#"{"kv":[9]}"#, "info")).recv(error(
        "1",
        VersionMismatch { interface: "kv".into(), host: vec![9], plugin: vec![1, 2] }.to_error(),
    ));
    s.finish(&[
        "",
        "The session stays uninitialized. The host gives up: it closes the plugin's stdin without a",
        "shutdown, and the plugin exits with status 0 (§1.6).",
    ])
}

fn before_initialize_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "before-initialize.tether",
        "kv",
        &["What happens before and after tether/initialize (SPEC.md §4.1)."],
    );
    s.note(&["", "A request before initialize is answered with -32002 (not initialized)."])
        .send(request("1", "kv.get", r#"{"key":"a"}"#))
        .recv(error("1", ErrorObject::not_initialized()))
        .note(&["", "A notification before initialize is ignored (not answered)."])
        .send(notification("$/setLogLevel", r#"{"level":"debug"}"#))
        .note(&["", "Initialize still works. This one has no logLevel: the session's level is info (§8.1)..."])
        .send(request(
            "2",
            "tether/initialize",
            &format!(r#"{{"protocolVersions":[1],"interfaces":{{"kv":[1,2]}},"host":{HOST},"capabilities":{{}},"maxFrameSize":33554432}}"#),
        ))
        .recv(initialized("2", "kv-reference", &[("kv", 2)]))
        .note(&["", "...once: a second initialize is answered with -32600 (invalid request)..."])
        .send(initialize("3", r#"{"kv":[1,2]}"#, "info"))
        .recv(error("3", ErrorObject::new(-32600, "invalid request: the session is already initialized")))
        .note(&[
            "...and the session is unchanged: its log level is info (the $/setLogLevel debug sent",
            "before initialize was ignored), so this put sends no $/log.",
        ])
        .send(request("4", "kv.put", r#"{"key":"a","value":"MQ=="}"#))
        .recv(ok("4", "{}"))
        .note(&[""])
        .send(request("5", "tether/shutdown", "{}"))
        .recv(ok("5", "{}"));
    s.finish(&[])
}

fn errors_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "errors.tether",
        "kv",
        &[
            "Errors in the envelope and in calls (SPEC.md §3, §5): every one is answered (or not) as",
            "the spec says, and none of them ends the session.",
        ],
    );
    let parse_error = r#"{"jsonrpc":"2.0","id":2,"method":"tether/ping""#;
    let batch = r#"[{"jsonrpc":"2.0","id":4,"method":"tether/ping","params":{}}]"#;
    let null_id = r#"{"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}"#;
    let bad_version = r#"{"jsonrpc":"1.0","id":14,"method":"tether/ping","params":{}}"#;
    let bad_notification = r#"{"jsonrpc":"2.0","method":7,"params":{}}"#;
    s.note(&[""])
        .send(initialize("1", r#"{"kv":[1,2]}"#, "info"))
        .recv(initialized("1", "kv-reference", &[("kv", 2)]))
        .note(&["", "A body that is not JSON (cut short): -32700 (parse error) with a null id (§3.4)..."])
        .send(parse_error)
        .recv(envelope_reply(parse_error))
        .note(&["...and the session goes on."])
        .send(request("3", "tether/ping", "{}"))
        .recv(ok("3", "{}"))
        .note(&[
            "",
            "A batch: one -32600 (invalid request) with a null id; its elements are not processed (§3.3).",
        ])
        .send(batch)
        .recv(envelope_reply(batch))
        .note(&["", "A method of no interface: -32601 (method not found)."])
        .send(request("5", "kv.frobnicate", r#"{"key":"a"}"#))
        .recv(method_not_found("5", "kv.frobnicate", "interface kv has no method frobnicate"))
        .note(&["", "An unknown tether/ request: -32601 too (§3.6)."])
        .send(request("6", "tether/frobnicate", "{}"))
        .recv(method_not_found("6", "tether/frobnicate", "not a method of Tether protocol version 1"))
        .note(&["", "A method of an interface that was not negotiated: -32601 (§5.1)."])
        .send(request("7", "counter.get", r#"{"key":"a"}"#))
        .recv(method_not_found("7", "counter.get", "this plugin does not implement interface counter"))
        .note(&[
            "",
            "Params that do not match the method: -32602 (invalid params), here a value that is not",
            "padded base64 (§5.3)...",
        ])
        .send(request("8", "kv.put", r#"{"key":"a","value":"not base64!"}"#))
        .recv(error("8", ErrorObject::invalid_params("value: not valid padded base64")))
        .note(&["...and here a missing member (§5.2)."])
        .send(request("9", "kv.put", r#"{"key":"a"}"#))
        .recv(error("9", ErrorObject::invalid_params("missing field `value`")))
        .note(&["", "Notifications are never answered (§3.5): an unknown one is ignored..."])
        .send(notification("$/progress", r#"{"token":"t","value":50}"#))
        .note(&["...and so is a malformed one without an id (§3.4): the plugin reports it locally."])
        .send(bad_notification)
        .note(&["The next answer is the ping's: nothing was sent for the two notifications."])
        .send(request("10", "tether/ping", "{}"))
        .recv(ok("10", "{}"))
        .note(&["", "A string id is echoed exactly, as a string (§3.2)..."])
        .send(request(r#""req-11""#, "kv.get", r#"{"key":"nothing"}"#))
        .recv(error(r#""req-11""#, kv::key_not_found("nothing")))
        .note(&["...even one that looks like a number: \"12\" is not 12."])
        .send(request(r#""12""#, "tether/ping", "{}"))
        .recv(ok(r#""12""#, "{}"))
        .note(&["", "A request with a null id: -32600, with a null id (§3.2)."])
        .send(null_id)
        .recv(envelope_reply(null_id))
        .note(&["", "A message with the wrong jsonrpc version: -32600, with the id it carried (§3.4)."])
        .send(bad_version)
        .recv(envelope_reply(bad_version))
        .note(&["", "A response to a request the plugin never sent: ignored, the session goes on (§3.4)."])
        .send(ok("99", "{}"))
        .send(request("15", "tether/ping", "{}"))
        .recv(ok("15", "{}"))
        .note(&[""])
        .send(request("16", "tether/shutdown", "{}"))
        .recv(ok("16", "{}"));
    s.finish(&[])
}

fn logs_session() -> (&'static str, Transcript) {
    let mut s = Script::new(
        "logs.tether",
        "kv",
        &[
            "Log forwarding (SPEC.md §8.1, §9.1): at log level debug every kv.put sends one $/log at",
            "level debug whose fields hold the key; after $/setLogLevel info it sends none.",
        ],
    );
    s.note(&["", "The host asks for debug logs in initialize."])
        .send(initialize("1", r#"{"kv":[1,2]}"#, "debug"))
        .recv(initialized("1", "kv-reference", &[("kv", 2)]))
        .note(&["", "A put at level debug..."])
        .send(request("2", "kv.put", r#"{"key":"alpha","value":"MQ=="}"#))
        .note(&[
            "...sends a $/log and the answer, in either order. Replayers compare the level, that there",
            "is a message, and fields.key; the message text, target and other fields are free.",
        ])
        .recv(log_debug("put", "alpha", 1))
        .recv(ok("2", "{}"))
        .note(&["", "The host raises the level to info (§8.2)..."])
        .send(notification("$/setLogLevel", r#"{"level":"info"}"#))
        .note(&["...and the next put sends no $/log."])
        .send(request("3", "kv.put", r#"{"key":"beta","value":"Mg=="}"#))
        .recv(ok("3", "{}"))
        .send(request("4", "kv.get", r#"{"key":"alpha"}"#))
        .recv(ok("4", r#"{"value":"MQ=="}"#))
        .note(&[""])
        .send(request("5", "tether/shutdown", "{}"))
        .recv(ok("5", "{}"));
    s.finish(&[])
}

/// Every transcript, by file name.
pub fn all() -> Vec<(&'static str, Transcript)> {
    vec![
        kv_session(),
        kv_v1_session(),
        counter_session(),
        cancel_session(),
        version_mismatch_session(),
        before_initialize_session(),
        errors_session(),
        logs_session(),
        attachments::session(),
        streams::session(),
        progress::session(),
    ]
}
