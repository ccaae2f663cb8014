//! The source of `streams.tether`: the `blob` interface (SPEC.md §9.5) moving bytes through
//! streams with credit (§12); attachments are not negotiated here, so chunks are base64.

use tether_spec::interfaces::blob;
use tether_spec::{codes, stream_error, Capabilities, ErrorObject, StreamDataParams, StreamsCapability};

use super::{error, initialize_with, initialized_with, notification, ok, request, Script};

fn data(stream: u64, bytes: &[u8]) -> String {
    let params = StreamDataParams { stream, data: bytes.to_vec().into() };
    notification("$/stream.data", &serde_json::to_string(&params).unwrap())
}

fn end(stream: u64) -> String {
    notification("$/stream.end", &format!(r#"{{"stream":{stream}}}"#))
}

pub(super) fn session() -> (&'static str, super::Transcript) {
    let mut s = Script::new(
        "streams.tether",
        "blob",
        &[
            "blob with streams (SPEC.md §9.5, §12): uploads, a download, a count, produced bytes,",
            "an aborted upload and a reused stream id. The host opens odd stream ids, the plugin even",
            "ones; replayers bind the plugin's ids as they bind its request ids. Every stream here",
            "fits the default initial credit (1048576 bytes), so no $/stream.credit is needed.",
        ],
    );
    let caps = Capabilities {
        streams: Some(StreamsCapability { initial_credit: Some(tether_spec::DEFAULT_INITIAL_CREDIT) }),
        ..Capabilities::new()
    };
    s.note(&["", "The host announces `streams` with the default credit (no initialCredit member)."])
        .send(initialize_with("1", r#"{"blob":[1]}"#, "info", r#"{"streams":{}}"#))
        .note(&["The plugin announces `streams` too, and the credit it grants on streams it reads."])
        .recv(initialized_with("1", "blob-reference", &[("blob", 1)], caps))
        .note(&[
            "",
            "An upload: the params carry stream 1, which the plugin reads (mode read). The host sends",
            "the data at once, without waiting for an answer (§12.2), then the end.",
        ])
        .send(request("2", "blob.upload", r#"{"name":"greeting","data":{"$stream":1,"mode":"read"}}"#))
        .send(data(1, b"hello, "))
        .send(data(1, b"world"))
        .send(end(1))
        .note(&["The plugin answers once the stream ended: the size and the SHA-256 of the bytes."])
        .recv(ok(
            "2",
            r#"{"size":12,"sha256":"09ca7e4eaa6e8ae9c7d261167129184883644d07dfba7cbfbc4c8a2e08360d5b"}"#,
        ))
        .note(&[
            "",
            "A download: the answer carries stream 2, opened by the plugin, and the data follows it.",
            "Replayers compare the data of a stream as one concatenation, in any chunking.",
        ])
        .send(request("3", "blob.download", r#"{"name":"greeting"}"#))
        .recv(ok("3", r#"{"size":12,"data":{"$stream":2,"mode":"read"}}"#))
        .recv(data(2, b"hello, world"))
        .recv(end(2))
        .note(&["", "A name that was never uploaded: error 1002 with data.name."])
        .send(request("4", "blob.download", r#"{"name":"missing"}"#))
        .recv(error("4", blob::blob_not_found("missing")))
        .note(&["", "blob.count reads a stream without storing it; an empty chunk is allowed."])
        .send(request("5", "blob.count", r#"{"data":{"$stream":3,"mode":"read"}}"#))
        .send(data(3, b""))
        .send(data(3, b"abc"))
        .send(end(3))
        .recv(ok(
            "5",
            r#"{"size":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#,
        ))
        .note(&["", "blob.produce: 300 bytes, byte i being i mod 251, on the plugin's next stream."])
        .send(request("6", "blob.produce", r#"{"size":300}"#))
        .recv(ok("6", r#"{"data":{"$stream":4,"mode":"read"}}"#))
        .recv(data(4, &(0..300u64).map(blob::produced_byte).collect::<Vec<u8>>()))
        .recv(end(4))
        .note(&[
            "",
            "An upload the host aborts mid-way (§12.4): the plugin stores nothing and answers -32006.",
        ])
        .send(request("7", "blob.upload", r#"{"name":"partial","data":{"$stream":5,"mode":"read"}}"#))
        .send(data(5, b"part"))
        .send(notification(
            "$/stream.abort",
            r#"{"stream":5,"error":{"code":-32006,"message":"the host's source failed"}}"#,
        ))
        .recv(error("7", stream_error(5, "the host aborted the stream: the host's source failed")))
        .send(request("8", "blob.download", r#"{"name":"partial"}"#))
        .recv(error("8", blob::blob_not_found("partial")))
        .note(&["", "An empty upload: the stream ends before any data."])
        .send(request("9", "blob.upload", r#"{"name":"empty","data":{"$stream":7,"mode":"read"}}"#))
        .send(end(7))
        .recv(ok(
            "9",
            r#"{"size":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
        ))
        .note(&["", "A stream id that is not new is invalid params (§12.1)."])
        .send(request("10", "blob.count", r#"{"data":{"$stream":1,"mode":"read"}}"#))
        .recv(error(
            "10",
            ErrorObject::new(codes::INVALID_PARAMS, "invalid params: stream 1 is not a new id of the host"),
        ))
        .note(&["", "The host ends the session (§4.6)."])
        .send(request("11", "tether/shutdown", "{}"))
        .recv(ok("11", "{}"));
    s.finish(&[])
}
