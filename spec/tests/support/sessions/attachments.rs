//! The source of `attachments.tether`: a kv session with attachments negotiated (SPEC.md §2.8).

use tether_spec::{AttachmentsCapability, Capabilities, ErrorObject};

use super::{error, initialize_with, initialized_with, ok, request, Script};

pub(super) fn session() -> (&'static str, super::Transcript) {
    let mut s = Script::new(
        "attachments.tether",
        "kv",
        &[
            "kv with attachments (SPEC.md §2.8): bytes travel raw after the JSON body, referenced as",
            "{\"$bytes\": i}. A frame with attachments has the header `Tether-Attachments: n0,n1,...`",
            "right after Content-Length, which counts the JSON and every attachment. The attachments",
            "here are printable so that the file stays readable; on the wire they are any bytes.",
        ],
    );
    let caps = Capabilities { attachments: Some(AttachmentsCapability {}), ..Capabilities::new() };
    s.note(&["", "The host announces the capability `attachments`..."])
        .send(initialize_with("1", r#"{"kv":[1,2]}"#, "info", r#"{"attachments":{}}"#))
        .note(&[
            "...and the plugin announces it too: from here on both sides may send attachments",
            "(the plugin from the frame after this answer, §2.8.3). Replayers do not compare the",
            "plugin's capabilities.",
        ])
        .recv(initialized_with("1", "kv-reference", &[("kv", 2)], caps))
        .note(&[
            "",
            "The value \"world\" as attachment 0: Content-Length (93) is the JSON's 88 bytes and 5 more.",
        ])
        .send_attached(request("2", "kv.put", r#"{"key":"hello","value":{"$bytes":0}}"#), &[b"world"])
        .recv(ok("2", "{}"))
        .note(&[
            "",
            "The plugin writes every bytes value as an attachment once negotiated. Replayers resolve",
            "attachments before comparing, so a base64 answer would match too (transcripts/README.md).",
        ])
        .send(request("3", "kv.get", r#"{"key":"hello"}"#))
        .recv_attached(ok("3", r#"{"value":{"$bytes":0}}"#), &[b"world"])
        .note(&["", "Base64 stays valid at all times (§2.8.3)."])
        .send(request("4", "kv.put", r#"{"key":"b64","value":"YmFzZTY0"}"#))
        .recv(ok("4", "{}"))
        .send(request("5", "kv.get", r#"{"key":"b64"}"#))
        .recv_attached(ok("5", r#"{"value":{"$bytes":0}}"#), &[b"base64"])
        .note(&[
            "",
            "Attachment bytes are never read as frames, even when they look like one: only",
            "Content-Length says where the next frame begins.",
        ])
        .send_attached(
            request("6", "kv.put", r#"{"key":"tricky","value":{"$bytes":0}}"#),
            &[b"Content-Length: 2\r\n\r\n{}"],
        )
        .recv(ok("6", "{}"))
        .send(request("7", "kv.get", r#"{"key":"tricky"}"#))
        .recv_attached(ok("7", r#"{"value":{"$bytes":0}}"#), &[b"Content-Length: 2\r\n\r\n{}"])
        .note(&["", "An empty attachment is an empty value."])
        .send_attached(request("8", "kv.put", r#"{"key":"empty","value":{"$bytes":0}}"#), &[b""])
        .recv(ok("8", "{}"))
        .send(request("9", "kv.get", r#"{"key":"empty"}"#))
        .recv_attached(ok("9", r#"{"value":{"$bytes":0}}"#), &[b""])
        .note(&["", "An attachment nobody references is ignored (§2.8.2): the value is attachment 1."])
        .send_attached(
            request("10", "kv.put", r#"{"key":"two","value":{"$bytes":1}}"#),
            &[b"ignored", b"second"],
        )
        .recv(ok("10", "{}"))
        .send(request("11", "kv.get", r#"{"key":"two"}"#))
        .recv_attached(ok("11", r#"{"value":{"$bytes":0}}"#), &[b"second"])
        .note(&["", "A reference to an attachment the frame does not have is invalid params (-32602)."])
        .send_attached(request("12", "kv.put", r#"{"key":"bad","value":{"$bytes":1}}"#), &[b"only one"])
        .recv(error(
            "12",
            ErrorObject::invalid_params("value: {\"$bytes\": 1} but the frame has 1 attachments"),
        ))
        .note(&["", "The host ends the session (§4.6)."])
        .send(request("13", "tether/shutdown", "{}"))
        .recv(ok("13", "{}"));
    s.finish(&[])
}
