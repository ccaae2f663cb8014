//! The transcripts of `transcripts/`: generated from `support/sessions.rs`, parsed strictly per
//! the README, decoded with the strict codec, checked against the session rules and the JSON
//! Schema, and replayed against an in-memory reference plugin with the README's algorithm.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use support::plugin::{Kind, RefPlugin};
use support::replay::replay;
use support::schema::Schema;
use support::transcript::{self, Dir, Transcript};
use tether_spec::{parse_message, Message, Outcome};

#[test]
fn transcripts_are_generated_from_their_source() {
    let update = std::env::var_os("UPDATE_TRANSCRIPTS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let sources = support::sessions::all();
    for (name, t) in &sources {
        let bytes = transcript::render(t);
        let path = transcript::dir().join(name);
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            if update {
                // Written aside then renamed, so that the other tests never read half a file.
                let tmp = path.with_extension("tether.tmp");
                std::fs::write(&tmp, &bytes).expect("writable transcripts directory");
                std::fs::rename(&tmp, &path).expect("writable transcripts directory");
            } else {
                stale.push(*name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "transcripts differ from spec/tests/support/sessions.rs: {stale:?}; regenerate them with \
         `UPDATE_TRANSCRIPTS=1 cargo test -p tether-spec --test transcripts` and review the diff"
    );
    let files: HashSet<String> = transcript::load_all().into_iter().map(|t| t.name).collect();
    let known: HashSet<String> = sources.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, known, "every transcript file has a source in sessions.rs");
}

#[test]
fn transcripts_parse_strictly_and_round_trip() {
    let all = transcript::load_all();
    assert!(all.len() >= 8);
    for t in &all {
        let bytes = std::fs::read(transcript::dir().join(&t.name)).unwrap();
        assert_eq!(transcript::render(t), bytes, "{}: parse and render round-trip", t.name);
        assert!(!t.blocks.is_empty(), "{}: no frames", t.name);
        assert!(t.blocks.iter().any(|b| b.dir == Dir::ToHost), "{}: the plugin never speaks", t.name);
    }
}

#[test]
fn the_parser_rejects_every_deviation() {
    let good = std::fs::read(transcript::dir().join("kv.tether")).unwrap();
    assert!(transcript::parse("kv.tether", &good).is_ok());
    let text = String::from_utf8(good.clone()).unwrap();
    let first_frame = text.find("Content-Length: ").unwrap();
    let n_end = text[first_frame..].find('\r').unwrap() + first_frame;
    let n: usize = text[first_frame + 16..n_end].parse().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a length one too long",
            text.replacen(&format!("Content-Length: {n}\r"), &format!("Content-Length: {}\r", n + 1), 1)
                .into_bytes(),
        ),
        (
            "a length one too short",
            text.replacen(&format!("Content-Length: {n}\r"), &format!("Content-Length: {}\r", n - 1), 1)
                .into_bytes(),
        ),
        ("a missing \\n after a frame", {
            let end = n_end + 4 + n;
            let mut b = good.clone();
            b.remove(end);
            b
        }),
        ("stray bytes between blocks", {
            let end = n_end + 4 + n + 1;
            let mut b = good.clone();
            b.splice(end..end, b"oops\n".iter().copied());
            b
        }),
        ("a CRLF comment", text.replacen("\n", "\r\n", 1).into_bytes()),
        ("a direction line with a space", text.replacen("-->\n", "--> \n", 1).into_bytes()),
        ("a lowercase header", text.replacen("Content-Length", "content-length", 1).into_bytes()),
        (
            "an extra header",
            text.replacen(
                &format!("{n}\r\n\r\n"),
                &format!("{n}\r\nContent-Type: application/json\r\n\r\n"),
                1,
            )
            .into_bytes(),
        ),
        (
            "a leading zero",
            text.replacen(&format!("Content-Length: {n}\r"), &format!("Content-Length: 0{n}\r"), 1)
                .into_bytes(),
        ),
        ("no plugin line", text.replacen("# plugin: kv\n", "", 1).into_bytes()),
        ("an unknown plugin", text.replacen("# plugin: kv\n", "# plugin: echo\n", 1).into_bytes()),
        ("a truncated file", good[..good.len() - 40].to_vec()),
        ("a comment without \\n at the end", {
            let mut b = good.clone();
            b.extend_from_slice(b"# tail");
            b
        }),
    ];
    for (what, bytes) in cases {
        assert_ne!(bytes, good, "{what}: the mutation changed nothing");
        assert!(transcript::parse("kv.tether", &bytes).is_err(), "the parser accepted {what}");
    }
}

/// A frame's message, or `None` for a deliberately invalid host frame.
fn message(t: &Transcript, i: usize) -> Option<Message> {
    let b = &t.blocks[i];
    match parse_message(&b.body) {
        Ok(m) => Some(m),
        Err(e) => {
            assert_eq!(
                b.dir,
                Dir::ToPlugin,
                "{}:{}: the plugin wrote an invalid message: {e}",
                t.name,
                b.line
            );
            None
        }
    }
}

fn id_key(id: &tether_spec::Id) -> String {
    serde_json::to_string(id).unwrap()
}

#[test]
fn transcripts_follow_the_session_rules() {
    for t in transcript::load_all() {
        check_session_rules(&t);
    }
}

fn check_session_rules(t: &Transcript) {
    let name = &t.name;
    assert_eq!(t.blocks[0].dir, Dir::ToPlugin, "{name}: the host speaks first");
    // Requests per direction: id -> (method, answered).
    let mut pending: [HashMap<String, String>; 2] = [HashMap::new(), HashMap::new()];
    let mut seen: [HashSet<String>; 2] = [HashSet::new(), HashSet::new()];
    let mut initialized = false;
    let mut last_initialize_failed = false;
    for i in 0..t.blocks.len() {
        let b = &t.blocks[i];
        let at = format!("{name}:{}", b.line);
        let side = (b.dir == Dir::ToHost) as usize;
        let Some(m) = message(t, i) else {
            // A deliberately invalid host frame: the plugin answers it as parse_message says,
            // with an id read from it, or not at all.
            let reply = parse_message(&b.body).err().and_then(|e| e.reply());
            if let Some(reply) = reply {
                let next = t.blocks.get(i + 1).expect("an answer follows");
                assert_eq!(next.dir, Dir::ToHost, "{at}: the invalid frame is answered next");
                let Ok(Message::Response(r)) = parse_message(&next.body) else { panic!("{at}: answer") };
                assert_eq!(r.id, reply.id, "{at}");
                if let (Outcome::Error(got), Outcome::Error(want)) = (&r.outcome, &reply.outcome) {
                    assert_eq!(got.code, want.code, "{at}");
                } else {
                    panic!("{at}: an invalid frame is answered with an error");
                }
                if let Some(id) = reply.id {
                    assert!(seen[0].insert(id_key(&id)), "{at}: id {id} reused");
                    pending[0].insert(id_key(&id), "(invalid)".into());
                }
            }
            continue;
        };
        match m {
            Message::Request(r) => {
                assert!(seen[side].insert(id_key(&r.id)), "{at}: id {} reused in this direction", r.id);
                pending[side].insert(id_key(&r.id), r.method.clone());
                if side == 0 && r.method != "tether/initialize" && !initialized {
                    // Before initialize, a request must be answered -32002 next.
                    let next = &t.blocks[i + 1];
                    let Ok(Message::Response(resp)) = parse_message(&next.body) else { panic!("{at}") };
                    assert!(
                        matches!(resp.outcome, Outcome::Error(ref e) if e.code == -32002),
                        "{at}: a request before initialize is answered -32002"
                    );
                }
                if side == 1 {
                    assert!(initialized, "{at}: the plugin sends requests only in an open session");
                }
            }
            Message::Notification(n) => {
                if side == 1 {
                    assert!(
                        n.method == "$/log" || initialized,
                        "{at}: before its initialize answer the plugin sends only $/log"
                    );
                }
            }
            Message::Response(r) => {
                let Some(id) = r.id else {
                    assert_eq!(side, 1, "{at}: the host answers with a null id only what it cannot read");
                    continue;
                };
                let other = 1 - side;
                match pending[other].remove(&id_key(&id)) {
                    Some(method) => {
                        if method == "tether/initialize" {
                            let ok = matches!(r.outcome, Outcome::Result(_));
                            if ok {
                                assert!(!initialized, "{at}: a second initialize succeeded");
                                initialized = true;
                            }
                            last_initialize_failed = !ok && !initialized;
                        }
                    }
                    None => {
                        // Only the host may answer an id that is not pending: a test of §3.4.
                        assert_eq!(side, 0, "{at}: the plugin answered id {id}, which is not pending");
                        assert!(
                            !seen[1].contains(&id_key(&id)) || t.name == "cancel.tether",
                            "{at}: the host answered id {id} twice"
                        );
                    }
                }
            }
        }
    }
    for (side, p) in pending.iter().enumerate() {
        assert!(p.is_empty(), "{name}: requests never answered (side {side}): {p:?}");
    }
    let first_host = parse_message(&t.blocks[0].body);
    let last_host = t.blocks.iter().rposition(|b| b.dir == Dir::ToPlugin).unwrap();
    let last = t.blocks.len() - 1;
    if last_initialize_failed {
        assert!(!initialized, "{name}");
    } else {
        let Ok(Message::Request(r)) = parse_message(&t.blocks[last_host].body) else { panic!("{name}") };
        assert_eq!(r.method, "tether/shutdown", "{name}: the last host frame is tether/shutdown");
        let Ok(Message::Response(resp)) = parse_message(&t.blocks[last].body) else { panic!("{name}") };
        assert_eq!(resp.id, Some(r.id), "{name}: the last plugin frame answers the shutdown");
        assert_eq!(last, last_host + 1, "{name}");
    }
    if !matches!(&first_host, Ok(Message::Request(r)) if r.method == "tether/initialize") {
        assert_eq!(name, "before-initialize.tether", "{name}: the first frame is tether/initialize");
    }
}

#[test]
fn transcripts_replay_against_the_reference_plugin() {
    for t in transcript::load_all() {
        let mut plugin = RefPlugin::new(Kind::from_name(&t.plugin));
        replay(&t, &mut plugin).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_replayer_catches_a_wrong_plugin() {
    let all = transcript::load_all();
    let kv = all.iter().find(|t| t.name == "kv.tether").unwrap();
    // The counter plugin cannot play the kv session.
    assert!(replay(kv, &mut RefPlugin::new(Kind::Counter)).is_err());
    // A transcript with a wrong expectation fails.
    let mut wrong = kv.clone();
    let i = wrong
        .blocks
        .iter()
        .position(|b| String::from_utf8_lossy(&b.body).contains(r#""existed":true"#))
        .unwrap();
    wrong.blocks[i].body =
        String::from_utf8_lossy(&wrong.blocks[i].body).replace("true", "false").into_bytes();
    assert!(replay(&wrong, &mut RefPlugin::new(Kind::Kv)).is_err());
    // A missing expectation fails: the extra frame is read by the next group.
    let logs = all.iter().find(|t| t.name == "logs.tether").unwrap();
    let mut fewer = logs.clone();
    fewer.blocks.retain(|b| !String::from_utf8_lossy(&b.body).contains("$/log"));
    assert!(replay(&fewer, &mut RefPlugin::new(Kind::Kv)).is_err());
    // Ignored parts really are ignored: another message text still matches.
    let mut other_text = kv.clone();
    for b in &mut other_text.blocks {
        let s = String::from_utf8_lossy(&b.body).replace("key not found: missing", "no such key");
        b.body = s.into_bytes();
    }
    assert!(replay(&other_text, &mut RefPlugin::new(Kind::Kv)).is_ok());
}

fn body_text(b: &transcript::Block) -> String {
    String::from_utf8_lossy(&b.body).into_owned()
}

#[test]
fn the_replayer_resolves_attachments_before_comparing() {
    // Rule (a): an expected attachment written as base64 instead still matches the plugin's
    // attachment frame; a different byte does not.
    let base64 = edited("attachments.tether", |t| {
        let b = t
            .blocks
            .iter_mut()
            .find(|b| b.dir == Dir::ToHost && b.attachments == [b"world".to_vec()])
            .unwrap();
        b.body = body_text(b).replace(r#"{"$bytes":0}"#, r#""d29ybGQ=""#).into_bytes();
        b.attachments.clear();
    });
    replay(&base64, &mut RefPlugin::new(Kind::Kv)).unwrap();
    let wrong = edited("attachments.tether", |t| {
        let b = t
            .blocks
            .iter_mut()
            .find(|b| b.dir == Dir::ToHost && b.attachments == [b"world".to_vec()])
            .unwrap();
        b.attachments = vec![b"World".to_vec()];
    });
    assert!(replay(&wrong, &mut RefPlugin::new(Kind::Kv)).is_err());
}

#[test]
fn the_replayer_binds_stream_ids_and_concatenates_data() {
    let stream2 = |b: &transcript::Block| b.dir == Dir::ToHost && body_text(b).contains(r#""stream":2"#);
    // Rule (b): the transcript's plugin stream id 2 written as 8 still binds to the plugin's 2.
    let renamed = edited("streams.tether", |t| {
        for b in t.blocks.iter_mut().filter(|b| b.dir == Dir::ToHost) {
            b.body = body_text(b)
                .replace(r#""$stream":2,"#, r#""$stream":8,"#)
                .replace(r#""stream":2"#, r#""stream":8"#)
                .into_bytes();
        }
    });
    replay(&renamed, &mut RefPlugin::new(Kind::Blob)).unwrap();
    // An odd id where the plugin must choose an even one does not match.
    let odd = edited("streams.tether", |t| replace_body(t, r#""$stream":2,"#, r#""$stream":9,"#));
    assert!(replay(&odd, &mut RefPlugin::new(Kind::Blob)).is_err());
    // Rule (d): the same bytes in other chunks match...
    let rechunked = edited("streams.tether", |t| {
        let i = t.blocks.iter().position(|b| stream2(b) && body_text(b).contains("stream.data")).unwrap();
        let mut second = t.blocks[i].clone();
        t.blocks[i].body = body_text(&t.blocks[i]).replace("aGVsbG8sIHdvcmxk", "aGVsbG8=").into_bytes();
        second.body = body_text(&second).replace("aGVsbG8sIHdvcmxk", "LCB3b3JsZA==").into_bytes();
        second.comments.clear();
        t.blocks.insert(i + 1, second);
    });
    replay(&rechunked, &mut RefPlugin::new(Kind::Blob)).unwrap();
    // ...and other bytes do not.
    let wrong = edited("streams.tether", |t| replace_body(t, "aGVsbG8sIHdvcmxk", "aGVsbG8sIHdvcmxE"));
    assert!(replay(&wrong, &mut RefPlugin::new(Kind::Blob)).is_err());
    // Rule (c): the plugin's credit is never an expectation, wherever the transcript shows one.
    let with_credit = edited("streams.tether", |t| {
        let i = t.blocks.iter().position(stream2).unwrap();
        let mut credit = t.blocks[i].clone();
        credit.comments.clear();
        credit.body =
            br#"{"jsonrpc":"2.0","method":"$/stream.credit","params":{"stream":1,"bytes":5}}"#.to_vec();
        t.blocks.insert(i, credit);
    });
    replay(&with_credit, &mut RefPlugin::new(Kind::Blob)).unwrap();
}

/// [`typed`] inside the attachment scope of the block's frame (SPEC.md §2.8.2).
fn typed_in(b: &transcript::Block, method: &str, what: &str, value: &Value) -> Option<Result<(), String>> {
    let attachments: Vec<bytes::Bytes> =
        b.attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
    tether_spec::with_attachment_source(&attachments, || typed(method, what, value))
}

#[test]
fn attachments_appear_only_after_both_sides_announced_them() {
    let mut checked = 0;
    for t in transcript::load_all() {
        let mut host_announced = false;
        let mut negotiated = false;
        for b in &t.blocks {
            let at = format!("{}:{}", t.name, b.line);
            assert!(b.attachments.is_empty() || negotiated, "{at}: an attachment frame before negotiation");
            checked += usize::from(!b.attachments.is_empty());
            let v: Value = serde_json::from_slice(&b.body).unwrap_or_default();
            if v["method"] == "tether/initialize" {
                host_announced = v.pointer("/params/capabilities/attachments").is_some();
            }
            if b.dir == Dir::ToHost && v.pointer("/result/protocolVersion").is_some() {
                negotiated = host_announced && v.pointer("/result/capabilities/attachments").is_some();
            }
        }
    }
    assert!(checked > 0, "no transcript shows an attachment frame");
}

/// Whether params or a result deserialize into the method's Rust type; `None` for a method
/// this crate does not type.
fn typed(method: &str, what: &str, value: &Value) -> Option<Result<(), String>> {
    use tether_spec::interfaces::{blob, counter, kv};
    use tether_spec::{CancelRequest, Log, NotificationMethod, Release, RequestMethod, SetLogLevel};
    use tether_spec::{Initialize, Invoke, Ping, Retain, Shutdown};
    use tether_spec::{StreamAbort, StreamCredit, StreamData, StreamEnd};
    fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Option<Result<(), String>> {
        Some(serde_json::from_value::<T>(v.clone()).map(|_| ()).map_err(|e| e.to_string()))
    }
    macro_rules! request {
        ($($m:ty),*) => {$(
            if method == <$m>::METHOD {
                return if what == "params" { check::<<$m as RequestMethod>::Params>(value) } else { check::<<$m as RequestMethod>::Result>(value) };
            }
        )*};
    }
    macro_rules! notification {
        ($($m:ty),*) => {$(
            if method == <$m>::METHOD { return check::<<$m as NotificationMethod>::Params>(value); }
        )*};
    }
    request!(
        Initialize,
        Ping,
        Shutdown,
        Invoke,
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
    notification!(Release, CancelRequest, Log, SetLogLevel, StreamData, StreamEnd, StreamCredit, StreamAbort);
    if method == "adder.sum" {
        return if what == "params" {
            check::<counter::SumParams>(value)
        } else {
            check::<counter::SumResult>(value)
        };
    }
    None
}

#[test]
fn every_frame_validates_against_the_schema_and_the_types() {
    let schema = Schema::load();
    for t in transcript::load_all() {
        check_frames(&schema, &t);
    }
}

fn check_frames(schema: &Schema, t: &Transcript) {
    // Which requests are answered -32602: their params are meant to be invalid.
    let mut invalid_params: HashSet<(usize, String)> = HashSet::new();
    for b in &t.blocks {
        if let Ok(Message::Response(r)) = parse_message(&b.body) {
            if let (Some(id), Outcome::Error(e)) = (&r.id, &r.outcome) {
                if e.code == -32602 {
                    invalid_params.insert((1 - (b.dir == Dir::ToHost) as usize, id_key(id)));
                }
            }
        }
    }
    // Requests by direction: id -> the method whose result answers it.
    let mut requests: [HashMap<String, String>; 2] = [HashMap::new(), HashMap::new()];
    let mut handles: HashMap<String, String> = HashMap::new();
    for (i, b) in t.blocks.iter().enumerate() {
        let at = format!("{}:{}", t.name, b.line);
        let side = (b.dir == Dir::ToHost) as usize;
        let value: Option<Value> = serde_json::from_slice(&b.body).ok();
        let Some(m) = message(t, i) else {
            if let Some(v) = value {
                assert!(schema.message(&v).is_err(), "{at}: the schema accepts an invalid message");
            }
            continue;
        };
        let v = value.expect("a message is JSON");
        let expect_bad = match &m {
            Message::Request(r) => invalid_params.contains(&(side, id_key(&r.id))),
            _ => false,
        };
        if !expect_bad {
            schema.message(&v).unwrap_or_else(|e| panic!("{at}: {e}"));
        }
        match m {
            Message::Request(r) => {
                let params = &v["params"];
                let mut method = r.method.clone();
                if r.method == "counter.put" {
                    if let (Some(h), Some(i)) =
                        (params.pointer("/adder/$handle"), params.pointer("/adder/interface"))
                    {
                        handles.insert(h.as_str().unwrap().into(), i.as_str().unwrap().into());
                    }
                }
                if r.method == "tether/invoke" {
                    // The inner call, against the handle interface's method.
                    let interface = &handles[params["handle"].as_str().unwrap()];
                    method = format!("{interface}.{}", params["method"].as_str().unwrap());
                    assert!(schema.knows(&method), "{at}: {method}");
                    schema.params(&method, &params["params"]).unwrap_or_else(|e| panic!("{at}: {e}"));
                    assert!(
                        matches!(typed_in(b, &method, "params", &params["params"]), Some(Ok(()))),
                        "{at}"
                    );
                }
                match typed_in(b, &r.method, "params", params) {
                    // A stream id that is not new is invalid by the session's history, not by the
                    // schema (SPEC.md §12.1).
                    Some(Ok(())) => assert!(
                        !expect_bad || params.to_string().contains("\"$stream\""),
                        "{at}: params answered -32602 are valid"
                    ),
                    Some(Err(e)) => assert!(expect_bad, "{at}: {e}"),
                    None => assert!(!schema.knows(&r.method), "{at}: an untyped method in the schema"),
                }
                if !expect_bad {
                    schema.params(&r.method, params).unwrap_or_else(|e| panic!("{at}: {e}"));
                }
                requests[side].insert(id_key(&r.id), method);
            }
            Message::Notification(n) => {
                schema.params(&n.method, &v["params"]).unwrap_or_else(|e| panic!("{at}: {e}"));
                assert!(!matches!(typed_in(b, &n.method, "params", &v["params"]), Some(Err(_))), "{at}");
            }
            Message::Response(r) => {
                let Some(id) = r.id else { continue };
                let Some(method) = requests[1 - side].get(&id_key(&id)) else { continue };
                if let Outcome::Result(_) = r.outcome {
                    let result = &v["result"];
                    schema.result(method, result).unwrap_or_else(|e| panic!("{at}: {method}: {e}"));
                    assert!(!matches!(typed_in(b, method, "result", result), Some(Err(_))), "{at}: {method}");
                    if method == "tether/initialize" {
                        for (name, i) in result["interfaces"].as_object().unwrap() {
                            for (short, m) in i["methods"].as_object().unwrap() {
                                for part in ["params", "result"] {
                                    assert!(
                                        jsonschema::draft202012::meta::is_valid(&m[part]),
                                        "{at}: the {part} schema of {name}.{short} is not a 2020-12 schema"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether a check panics on a transcript.
fn rejects(check: impl FnOnce() + std::panic::UnwindSafe) -> bool {
    // The panic's message goes to the captured output of this test; the hook is left alone,
    // since it is shared with the tests running beside this one.
    std::panic::catch_unwind(check).is_err()
}

fn edited(name: &str, edit: impl Fn(&mut Transcript)) -> Transcript {
    let mut t = transcript::load_all().into_iter().find(|t| t.name == name).unwrap();
    edit(&mut t);
    t
}

fn replace_body(t: &mut Transcript, from: &str, to: &str) {
    let b = t.blocks.iter_mut().find(|b| String::from_utf8_lossy(&b.body).contains(from)).unwrap();
    b.body = String::from_utf8_lossy(&b.body).replacen(from, to, 1).into_bytes();
}

#[test]
fn the_checks_catch_broken_transcripts() {
    // Session rules.
    let broken = [
        edited("kv.tether", |t| {
            t.blocks.pop();
        }),
        edited("kv.tether", |t| replace_body(t, r#""id":3,"method""#, r#""id":2,"method""#)),
        edited("kv.tether", |t| replace_body(t, r#""id":5,"result""#, r#""id":55,"result""#)),
        edited("kv.tether", |t| t.blocks.swap(2, 3)),
        edited("counter.tether", |t| {
            replace_body(
                t,
                r#"{"jsonrpc":"2.0","id":1,"result":{"result":5}}"#,
                r#"{"jsonrpc":"2.0","id":7,"result":{"result":5}}"#,
            )
        }),
        edited("before-initialize.tether", |t| replace_body(t, r#""code":-32002"#, r#""code":-32600"#)),
    ];
    for (n, t) in broken.into_iter().enumerate() {
        assert!(rejects(move || check_session_rules(&t)), "broken transcript {n} passed the session rules");
    }
    // Schema and types.
    let schema = std::sync::Arc::new(Schema::load());
    let broken = [
        edited("kv.tether", |t| replace_body(t, r#"{"value":"d29ybGQ="}"#, r#"{"value":42}"#)),
        edited("kv.tether", |t| replace_body(t, r#"{"existed":true}"#, r#"{"existed":"yes"}"#)),
        edited("counter.tether", |t| replace_body(t, r#""params":{"a":0,"b":5}"#, r#""params":{"a":0}"#)),
        edited("logs.tether", |t| {
            replace_body(t, r#""level":"debug","message""#, r#""level":"verbose","message""#)
        }),
        edited("kv.tether", |t| replace_body(t, r#""protocolVersion":1"#, r#""protocolVersion":"1""#)),
    ];
    for (n, t) in broken.into_iter().enumerate() {
        let schema = schema.clone();
        assert!(
            rejects(std::panic::AssertUnwindSafe(move || check_frames(&schema, &t))),
            "broken transcript {n} passed the schema"
        );
    }
}

#[test]
fn the_reference_plugin_respects_credit_both_ways() {
    let mut p = RefPlugin::new(Kind::Blob);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"interfaces":{"blob":[1]},"host":{"name":"h","version":"0"},"capabilities":{"streams":{"initialCredit":5}},"maxFrameSize":33554432}}"#;
    assert_eq!(p.feed(init.as_bytes()).len(), 1);
    let texts =
        |frames: Vec<Vec<u8>>| frames.into_iter().map(|f| String::from_utf8(f).unwrap()).collect::<Vec<_>>();
    let chunk_len = |f: &str| {
        let v: Value = serde_json::from_str(f).unwrap();
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["params"]["data"].as_str().unwrap(),
        )
        .unwrap()
        .len()
    };
    // A producer never sends more than the host granted: 5 bytes, then 4 after a grant of 4.
    let out = texts(p.feed(br#"{"jsonrpc":"2.0","id":2,"method":"blob.produce","params":{"size":12}}"#));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(chunk_len(&out[1]), 5);
    let credit = |n: u64| {
        format!(r#"{{"jsonrpc":"2.0","method":"$/stream.credit","params":{{"stream":2,"bytes":{n}}}}}"#)
    };
    let out = texts(p.feed(credit(4).as_bytes()));
    assert_eq!(out.iter().map(|f| chunk_len(f)).collect::<Vec<_>>(), vec![4]);
    let out = texts(p.feed(credit(100).as_bytes()));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(chunk_len(&out[0]), 3);
    assert!(out[1].contains("$/stream.end"));
    // A consumer grants what its application consumed once that is half its window.
    assert!(texts(p.feed(
        br#"{"jsonrpc":"2.0","id":4,"method":"blob.count","params":{"data":{"$stream":3,"mode":"read"}}}"#
    ))
    .is_empty());
    let piece = tether_spec::StreamDataParams { stream: 3, data: vec![1u8; 300_000].into() };
    let piece = format!(
        r#"{{"jsonrpc":"2.0","method":"$/stream.data","params":{}}}"#,
        serde_json::to_string(&piece).unwrap()
    );
    assert!(texts(p.feed(piece.as_bytes())).is_empty());
    let out = texts(p.feed(piece.as_bytes()));
    assert_eq!(
        out,
        vec![r#"{"jsonrpc":"2.0","method":"$/stream.credit","params":{"stream":3,"bytes":600000}}"#]
    );
    // Cancelling an upload answers -32800 and drops its stream: later data is ignored.
    assert!(texts(p.feed(br#"{"jsonrpc":"2.0","id":5,"method":"blob.upload","params":{"name":"n","data":{"$stream":5,"mode":"read"}}}"#)).is_empty());
    let out = texts(p.feed(br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}}"#));
    assert!(out.len() == 1 && out[0].contains("-32800"), "{out:?}");
    assert!(texts(p.feed(br#"{"jsonrpc":"2.0","method":"$/stream.end","params":{"stream":5}}"#)).is_empty());
    // A consumer aborts a stream that sends more than its window (1048576 bytes) with -32006.
    let out = texts(p.feed(
        br#"{"jsonrpc":"2.0","id":3,"method":"blob.count","params":{"data":{"$stream":1,"mode":"read"}}}"#,
    ));
    assert!(out.is_empty());
    let big = tether_spec::StreamDataParams { stream: 1, data: vec![7u8; 1_048_577].into() };
    let frame = format!(
        r#"{{"jsonrpc":"2.0","method":"$/stream.data","params":{}}}"#,
        serde_json::to_string(&big).unwrap()
    );
    let out = texts(p.feed(frame.as_bytes()));
    assert!(out[0].contains("$/stream.abort") && out[0].contains("-32006"), "{out:?}");
    assert!(out[1].contains(r#""id":3"#) && out[1].contains("-32006"), "{out:?}");
}
