//! Attachments (SPEC.md §2.8) and streams (SPEC.md §12) over the in-memory transport seam: a
//! host session (`tether_core::Session`) and a plugin (`tether::Plugin::start`) joined by a
//! `tokio::io::duplex`, or a host session and a raw wire that records every frame.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unreachable_pub, missing_docs)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt as _;
use tether::interfaces::blob::{
    self, CountParams, Digest, DownloadResult, NameParams, ProduceParams, UploadParams,
};
use tether::interfaces::{Blob, BlobClient, BlobServer, KvClient, KvServer};
use tether::spec::interfaces::kv;
use tether::spec::{codes, Capabilities, Initialize, InitializeParams, PeerInfo, StreamsCapability};
use tether::stream::ReadStream;
use tether::{CallError, Error, Options, Peer, Router, Session};
use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(20);

/// A blob plugin for the tests: `upload` stores, `count` counts; `gate`, when set, holds every
/// `count` before it reads (so that its stream backs up), and `started` says it began.
#[derive(Default)]
struct TestBlob {
    store: Mutex<HashMap<String, bytes::Bytes>>,
    gate: Option<Arc<Notify>>,
    started: Arc<Notify>,
    /// What each `produce` writer's last send or finish gave: the error code when it failed.
    produced: Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Sender<Option<i64>>>>>,
}

async fn read_all(data: ReadStream) -> Result<bytes::Bytes, Error> {
    let mut reader = data.into_reader().map_err(|e| Error::from(e.0))?;
    let mut all = BytesMut::new();
    while let Some(chunk) = reader.next().await {
        all.extend_from_slice(&chunk.map_err(|e| Error::from(e.0))?);
    }
    Ok(all.freeze())
}

impl Blob for TestBlob {
    async fn upload(&self, p: UploadParams) -> Result<Digest, Error> {
        let all = read_all(p.data).await?;
        let size = all.len() as u64;
        self.store.lock().unwrap().insert(p.name, all);
        Ok(Digest { size, sha256: String::new() })
    }
    async fn download(&self, p: NameParams) -> Result<DownloadResult, Error> {
        let bytes =
            self.store.lock().unwrap().get(&p.name).cloned().ok_or_else(|| blob::blob_not_found(&p.name))?;
        let (data, mut w) = ReadStream::new();
        let size = bytes.len() as u64;
        tokio::spawn(async move {
            if w.send(bytes).await.is_ok() {
                let _ = w.finish().await;
            }
        });
        Ok(DownloadResult { size, data })
    }
    async fn count(&self, p: CountParams) -> Result<Digest, Error> {
        self.started.notify_one();
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        let all = read_all(p.data).await?;
        Ok(Digest { size: all.len() as u64, sha256: String::new() })
    }
    async fn produce(&self, p: ProduceParams) -> Result<blob::ProduceResult, Error> {
        let (data, mut w) = ReadStream::new();
        let report = self.produced.lock().await.take();
        tokio::spawn(async move {
            let block: bytes::Bytes = (0..p.size).map(blob::produced_byte).collect::<Vec<u8>>().into();
            let outcome = match w.send(block).await {
                Ok(()) => w.finish().await,
                Err(e) => Err(e),
            };
            if let Some(report) = report {
                let _ = report.send(outcome.err().map(|e| e.0.code));
            }
        });
        Ok(blob::ProduceResult { data })
    }
}

fn init_params(caps: Capabilities) -> InitializeParams {
    InitializeParams {
        protocol_versions: vec![1],
        interfaces: [
            ("blob".to_owned(), vec![1]),
            ("kv".to_owned(), vec![1, 2]),
            ("gen".to_owned(), vec![1]),
        ]
        .into(),
        host: PeerInfo::new("test-host", "0"),
        capabilities: caps,
        max_frame_size: 32 << 20,
        log_level: None,
    }
}

/// A host session joined to a plugin serving `blob` and `kv`, initialized with `caps`.
async fn host_and_plugin(blob: TestBlob, caps: Capabilities) -> (Peer, Capabilities) {
    let (host, caps, _) = host_plugin_peers(blob, caps).await;
    (host, caps)
}

/// As [`host_and_plugin`], with the plugin's peer too.
async fn host_plugin_peers(blob: TestBlob, caps: Capabilities) -> (Peer, Capabilities, Peer) {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let plugin = tether::Plugin::new("test-blob", "0")
        .interface(BlobServer::new(blob))
        .interface(KvServer::new(common::MemKv::default()))
        .interface(GenServer::new(Filler));
    let plugin = plugin.start(yr, yw).into_peer();
    let host = Session::start(xr, xw, Options::new(), Router::new()).into_peer();
    let answer = host.call::<Initialize>(&init_params(caps)).timeout(LONG).await.unwrap();
    (host, answer.capabilities, plugin)
}

/// The error a failed stream operation carries.
fn code_of(e: &tether::stream::StreamError) -> i64 {
    e.0.code
}

#[tokio::test]
async fn bytes_travel_as_attachments_when_both_announce_them() {
    let (host, plugin_caps) = host_and_plugin(TestBlob::default(), Capabilities::all()).await;
    assert!(plugin_caps.attachments.is_some() && plugin_caps.streams.is_some());
    let kv = KvClient::new(host.clone());
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 256) as u8).collect();
    kv.put(&kv::PutParams { key: "k".into(), value: value.clone().into() }).timeout(LONG).await.unwrap();
    let got = kv.get(&kv::KeyParams { key: "k".into() }).timeout(LONG).await.unwrap();
    assert_eq!(got.value.0, value);
}

#[tokio::test]
async fn without_attachments_bytes_are_base64_and_the_plugin_does_not_announce_them() {
    let caps = Capabilities { attachments: None, ..Capabilities::all() };
    let (host, plugin_caps) = host_and_plugin(TestBlob::default(), caps).await;
    assert!(plugin_caps.attachments.is_none(), "a plugin announces only what the host announced");
    let kv = KvClient::new(host);
    kv.put(&kv::PutParams { key: "k".into(), value: b"abc".to_vec().into() }).timeout(LONG).await.unwrap();
    let got = kv.get(&kv::KeyParams { key: "k".into() }).timeout(LONG).await.unwrap();
    assert_eq!(&got.value[..], b"abc");
}

#[tokio::test]
async fn upload_then_download_and_produce() {
    let (host, _) = host_and_plugin(TestBlob::default(), Capabilities::all()).await;
    let blob = BlobClient::new(host);
    let payload: bytes::Bytes = (0..5_000_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>().into();
    let (data, mut writer) = ReadStream::new();
    let sent = payload.clone();
    let producer = tokio::spawn(async move {
        writer.send(sent).await?;
        writer.finish().await
    });
    let digest = blob.upload(&UploadParams { name: "a".into(), data }).timeout(LONG).await.unwrap();
    producer.await.unwrap().unwrap();
    assert_eq!(digest.size, payload.len() as u64);
    let down = blob.download(&NameParams { name: "a".into() }).timeout(LONG).await.unwrap();
    assert_eq!(down.size, payload.len() as u64);
    let mut back = Vec::new();
    down.data.into_reader().unwrap().read_to_end(&mut back).await.unwrap();
    assert_eq!(back, payload);
    let produced = blob.produce(&ProduceParams { size: 3_000_000 }).timeout(LONG).await.unwrap();
    let mut all = Vec::new();
    produced.data.into_reader().unwrap().read_to_end(&mut all).await.unwrap();
    assert_eq!(all.len(), 3_000_000);
    assert!(all.iter().enumerate().all(|(i, b)| *b == blob::produced_byte(i as u64)));
    let missing = blob.download(&NameParams { name: "nope".into() }).timeout(LONG).await.unwrap_err();
    assert_eq!(missing.remote().map(|e| e.code), Some(codes::BLOB_NOT_FOUND));
}

#[tokio::test]
async fn attachments_alone_are_negotiated_without_streams() {
    let caps = Capabilities { streams: None, ..Capabilities::all() };
    let (host, plugin_caps) = host_and_plugin(TestBlob::default(), caps).await;
    assert!(plugin_caps.attachments.is_some() && plugin_caps.streams.is_none());
    let kv = KvClient::new(host.clone());
    kv.put(&kv::PutParams { key: "k".into(), value: b"world".to_vec().into() }).timeout(LONG).await.unwrap();
    let got = kv.get(&kv::KeyParams { key: "k".into() }).timeout(LONG).await.unwrap();
    assert_eq!(&got.value[..], b"world");
    // Without `streams`, a stream field cannot be sent.
    let (data, _writer) = ReadStream::new();
    let err = BlobClient::new(host).count(&CountParams { data }).timeout(LONG).await.unwrap_err();
    assert!(matches!(err, CallError::Serialize(ref m) if m.contains("not negotiated")), "{err}");
}

#[tokio::test]
async fn a_bad_attachment_reference_in_a_request_is_invalid_params() {
    let service =
        tether::Plugin::new("t", "0").interface(KvServer::new(common::MemKv::default())).into_service();
    let (_plugin, mut wire) = common::Wire::connect(Options::new(), service);
    let init =
        serde_json::to_string(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize",
        "params": init_params(Capabilities::all())}))
        .unwrap();
    wire.send(&init).await;
    assert!(wire.recv().await.contains(r#""attachments":{}"#));
    let body = br#"{"jsonrpc":"2.0","id":2,"method":"kv.put","params":{"key":"k","value":{"$bytes":1}}}"#;
    let mut frame = BytesMut::new();
    tether::spec::encode_attached_frame_head(body, &[bytes::Bytes::from_static(b"abc")], &mut frame);
    frame.extend_from_slice(b"abc");
    wire.send_bytes(&frame).await;
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["error"]["code"], codes::INVALID_PARAMS, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("1 attachments"), "{answer}");
}

#[tokio::test]
async fn a_producer_never_sends_more_than_the_credit_it_was_granted() {
    let service =
        tether::Plugin::new("t", "0").interface(BlobServer::new(TestBlob::default())).into_service();
    let (_plugin, mut wire) = common::Wire::connect(Options::new(), service);
    // Streams with a window of 1000 bytes and no attachments, so that chunks are readable JSON.
    let caps = Capabilities {
        attachments: None,
        streams: Some(StreamsCapability { initial_credit: Some(1000) }),
        ..Capabilities::new()
    };
    let init =
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params": init_params(caps)});
    wire.send(&init.to_string()).await;
    wire.recv().await;
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"blob.produce","params":{"size":10000}}"#).await;
    let (mut granted, mut received, mut chunks) = (1000u64, 0u64, Vec::new());
    let mut stream = None;
    loop {
        let frame: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
        match frame["method"].as_str() {
            None => stream = frame["result"]["data"]["$stream"].as_u64(),
            Some("$/stream.data") => {
                let data = frame["params"]["data"].as_str().unwrap();
                let n = base64_len(data);
                received += n;
                chunks.push(n);
                assert!(received <= granted, "received {received} bytes with {granted} granted: {chunks:?}");
                if received == granted {
                    let id = stream.expect("the answer comes before the data");
                    wire.send(&format!(
                        r#"{{"jsonrpc":"2.0","method":"$/stream.credit","params":{{"stream":{id},"bytes":700}}}}"#
                    ))
                    .await;
                    granted += 700;
                }
            }
            Some("$/stream.end") => break,
            Some(other) => panic!("unexpected {other}: {frame}"),
        }
    }
    assert_eq!(received, 10000);
    assert!(chunks.len() >= 10, "the window forced at least ten chunks: {chunks:?}");
}

fn base64_len(s: &str) -> u64 {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3 - pad) as u64
}

#[tokio::test]
async fn dropping_the_reader_aborts_the_stream_for_the_writer() {
    let test_blob = TestBlob::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *test_blob.produced.lock().await = Some(tx);
    let (host, _, _plugin) = host_plugin_peers(test_blob, Capabilities::all()).await;
    let blob = BlobClient::new(host.clone());
    let produced = blob.produce(&ProduceParams { size: 100 << 20 }).timeout(LONG).await.unwrap();
    let mut reader = produced.data.into_reader().unwrap();
    let first = reader.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(reader);
    let code = tokio::time::timeout(LONG, rx).await.expect("the producer gives up").unwrap();
    assert_eq!(code, Some(codes::STREAM_ERROR), "the plugin's writer fails with -32006");
    // The other way: dropping the host's writer fails the plugin's reader.
    let (data, mut writer) = ReadStream::new();
    let upload = tokio::spawn({
        let blob = BlobClient::new(host.clone());
        async move { blob.count(&CountParams { data }).timeout(LONG).await }
    });
    writer.send(bytes::Bytes::from_static(b"some")).await.unwrap();
    drop(writer);
    let err = upload.await.unwrap().unwrap_err();
    assert_eq!(err.remote().map(|e| e.code), Some(codes::STREAM_ERROR), "{err}");
    assert!(err.to_string().contains("dropped"), "{err}");
}

#[tokio::test]
async fn a_producer_abort_fails_the_reading_handler() {
    let (host, _, _plugin) = host_plugin_peers(TestBlob::default(), Capabilities::all()).await;
    let router_less = BlobClient::new(host.clone());
    let (data, mut writer) = ReadStream::new();
    let call = tokio::spawn(async move {
        router_less.upload(&UploadParams { name: "x".into(), data }).timeout(LONG).await
    });
    // Abort from the producer side mid-way: the plugin's upload fails with -32006 and stores nothing.
    writer.send(bytes::Bytes::from_static(b"part")).await.unwrap();
    writer.abort(tether::spec::stream_error(0, "the source failed"));
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.remote().map(|e| e.code), Some(codes::STREAM_ERROR));
    assert!(err.to_string().contains("the source failed"), "{err}");
}

#[tokio::test]
async fn cancelling_a_call_aborts_its_streams() {
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let blob = TestBlob { gate: Some(gate.clone()), started: started.clone(), ..TestBlob::default() };
    let (host, _, _plugin) = host_plugin_peers(blob, Capabilities::all()).await;
    let client = BlobClient::new(host.clone());
    let (data, mut writer) = ReadStream::new();
    let call = tokio::spawn(async move { client.count(&CountParams { data }).await });
    started.notified().await;
    call.abort();
    let err = tokio::time::timeout(LONG, async {
        loop {
            if let Err(e) = writer.send(bytes::Bytes::from(vec![0u8; 64 * 1024])).await {
                return e;
            }
        }
    })
    .await
    .expect("the writer fails once the call is cancelled");
    assert_eq!(code_of(&err), codes::REQUEST_CANCELLED, "{err}");
}

#[tokio::test]
async fn the_end_of_the_session_fails_every_open_stream() {
    let (host, _, plugin) = host_plugin_peers(TestBlob::default(), Capabilities::all()).await;
    let produced = BlobClient::new(host.clone())
        .produce(&ProduceParams { size: 100 << 20 })
        .timeout(LONG)
        .await
        .unwrap();
    let mut reader = produced.data.into_reader().unwrap();
    reader.chunk().await.unwrap().unwrap();
    plugin.close("the plugin went away");
    let err = tokio::time::timeout(LONG, async {
        loop {
            match reader.chunk().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => panic!("the stream ended normally"),
            }
        }
    })
    .await
    .expect("the reader fails when the session ends");
    assert_eq!(code_of(&err), codes::STREAM_ERROR);
    assert!(err.to_string().contains("session ended"), "{err}");
}

#[tokio::test]
async fn a_stream_nobody_reads_does_not_stall_other_calls() {
    let (host, _, _plugin) = host_plugin_peers(TestBlob::default(), Capabilities::all()).await;
    // 64 MiB produced and never read: the plugin stops at the 1 MiB window.
    let produced =
        BlobClient::new(host.clone()).produce(&ProduceParams { size: 64 << 20 }).timeout(LONG).await.unwrap();
    for _ in 0..20 {
        host.call::<tether::spec::Ping>(&tether::spec::Empty {}).timeout(LONG).await.unwrap();
    }
    let kv = KvClient::new(host.clone());
    kv.put(&kv::PutParams { key: "k".into(), value: vec![1u8; 4 << 20].into() }).timeout(LONG).await.unwrap();
    // And the stream is still there to be read, in order.
    let mut reader = produced.data.into_reader().unwrap();
    let first = reader.chunk().await.unwrap().unwrap();
    assert_eq!(first[..3], [0, 1, 2]);
}

#[tokio::test]
async fn an_untyped_caller_gets_attachments_as_base64() {
    let (host, _) = host_and_plugin(TestBlob::default(), Capabilities::all()).await;
    KvClient::new(host.clone())
        .put(&kv::PutParams { key: "k".into(), value: b"hello".to_vec().into() })
        .await
        .unwrap();
    let raw: serde_json::Value =
        host.call_as("kv.get", &serde_json::json!({ "key": "k" })).timeout(LONG).await.unwrap();
    assert_eq!(raw["value"], "aGVsbG8=");
}

#[tokio::test]
async fn a_malformed_attachment_header_is_a_parse_error() {
    let service =
        tether::Plugin::new("t", "0").interface(KvServer::new(common::MemKv::default())).into_service();
    let (_plugin, mut wire) = common::Wire::connect(Options::new(), service);
    let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params": init_params(Capabilities::all())});
    wire.send(&init.to_string()).await;
    wire.recv().await;
    // The attachments add up to more than Content-Length (SPEC.md §2.8.5).
    wire.send_bytes(b"Content-Length: 10\r\nTether-Attachments: 20\r\n\r\n0123456789").await;
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(answer["id"], serde_json::Value::Null);
    assert_eq!(answer["error"]["code"], codes::PARSE_ERROR, "{answer}");
    // The session goes on.
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"tether/ping","params":{}}"#).await;
    assert!(wire.recv().await.contains(r#""id":2,"result""#));
}

#[tokio::test]
async fn a_stream_in_the_answer_to_an_abandoned_call_is_aborted() {
    let (host, mut wire) = common::Wire::connect(Options::new(), Router::new());
    // The wire plays the plugin: answer initialize with streams, then the host's call late.
    let host2 = host.clone();
    let init = tokio::spawn(async move { host2.call::<Initialize>(&init_params(Capabilities::all())).await });
    let req: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    let id = &req["id"];
    wire.send(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":1,"plugin":{{"name":"w","version":"0"}},"capabilities":{{"streams":{{}}}},"interfaces":{{}}}}}}"#
    ))
    .await;
    init.await.unwrap().unwrap();
    let call =
        BlobClient::new(host.clone()).produce(&ProduceParams { size: 1 }).timeout(Duration::from_millis(50));
    assert!(matches!(call.await, Err(CallError::Timeout(_))));
    let req: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(req["method"], "blob.produce");
    let cancel: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(cancel["method"], "$/cancelRequest");
    let id = &req["id"];
    wire.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"data":{{"$stream":2,"mode":"read"}}}}}}"#))
        .await;
    let abort: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(abort["method"], "$/stream.abort", "{abort}");
    assert_eq!(abort["params"]["stream"], 2);
    assert_eq!(abort["params"]["error"]["code"], codes::STREAM_ERROR);
}

#[tokio::test]
async fn notifications_about_unknown_streams_are_ignored() {
    let service =
        tether::Plugin::new("t", "0").interface(BlobServer::new(TestBlob::default())).into_service();
    let (_plugin, mut wire) = common::Wire::connect(Options::new(), service);
    let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params": init_params(Capabilities::all())});
    wire.send(&init.to_string()).await;
    wire.recv().await;
    for body in [
        r#"{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":99,"data":"aGk="}}"#,
        r#"{"jsonrpc":"2.0","method":"$/stream.end","params":{"stream":99}}"#,
        r#"{"jsonrpc":"2.0","method":"$/stream.credit","params":{"stream":98,"bytes":10}}"#,
        r#"{"jsonrpc":"2.0","method":"$/stream.abort","params":{"stream":97,"error":{"code":-32006,"message":"x"}}}"#,
    ] {
        wire.send(body).await;
    }
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"tether/ping","params":{}}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#, "nothing else is written");
}

/// A test interface whose params carry a stream the plugin writes (mode "write").
#[tether::interface(name = "gen", versions = [1])]
pub trait Gen {
    /// Writes `size` bytes (byte `i` is `i mod 251`) into `out`.
    async fn fill(&self, params: FillParams) -> Result<tether::spec::Empty, Error>;
}

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FillParams {
    size: u64,
    out: tether::stream::WriteStream,
}

struct Filler;

impl Gen for Filler {
    async fn fill(&self, p: FillParams) -> Result<tether::spec::Empty, Error> {
        let mut out = p.out.into_writer().map_err(|e| Error::from(e.0))?;
        let data: Vec<u8> = (0..p.size).map(blob::produced_byte).collect();
        out.send(data.into()).await.map_err(|e| Error::from(e.0))?;
        out.finish().await.map_err(|e| Error::from(e.0))?;
        Ok(tether::spec::Empty {})
    }
}

#[tokio::test]
async fn a_stream_the_receiver_writes_comes_back_to_the_opener() {
    let (host, _) = host_and_plugin(TestBlob::default(), Capabilities::all()).await;
    let (out, mut reader) = tether::stream::WriteStream::new();
    let call = GenClient::new(host).fill(&FillParams { size: 3_000_000, out }).timeout(LONG);
    let mut all = Vec::new();
    let (answer, read) = tokio::join!(call, reader.read_to_end(&mut all));
    answer.unwrap();
    read.unwrap();
    assert_eq!(all.len(), 3_000_000);
    assert!(all.iter().enumerate().all(|(i, b)| *b == blob::produced_byte(i as u64)));
}

#[tokio::test]
async fn data_beyond_the_granted_credit_aborts_the_stream() {
    // The handler waits before reading, so that no credit is granted back meanwhile.
    let gate = Arc::new(Notify::new());
    let blob = TestBlob { gate: Some(gate.clone()), ..TestBlob::default() };
    let service = tether::Plugin::new("t", "0").interface(BlobServer::new(blob)).into_service();
    let (_plugin, mut wire) = common::Wire::connect(Options::new(), service);
    let caps = Capabilities { attachments: None, ..Capabilities::all() };
    let init =
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params": init_params(caps)});
    wire.send(&init.to_string()).await;
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    let window = answer["result"]["capabilities"]["streams"]["initialCredit"].as_u64().unwrap();
    wire.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"blob.count","params":{"data":{"$stream":1,"mode":"read"}}}"#,
    )
    .await;
    // The whole window, then one byte more than was granted.
    let chunk = |n: usize| {
        let params = tether::spec::StreamDataParams { stream: 1, data: vec![7u8; n].into() };
        serde_json::json!({"jsonrpc":"2.0","method":"$/stream.data","params": params}).to_string()
    };
    wire.send(&chunk(window as usize)).await;
    wire.send(&chunk(1)).await;
    let abort: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(abort["method"], "$/stream.abort", "{abort}");
    assert_eq!(abort["params"]["stream"], 1);
    assert_eq!(abort["params"]["error"]["code"], codes::STREAM_ERROR);
    // The handler, let go, finds its stream failed.
    gate.notify_one();
    let answer: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["error"]["code"], codes::STREAM_ERROR, "{answer}");
}

#[tokio::test]
async fn a_plugin_announces_the_credit_it_was_given() {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let _plugin = tether::Plugin::new("t", "0")
        .interface(BlobServer::new(TestBlob::default()))
        .stream_credit(4096)
        .start(yr, yw);
    let host = Session::start(xr, xw, Options::new(), Router::new()).into_peer();
    let answer = host.call::<Initialize>(&init_params(Capabilities::all())).timeout(LONG).await.unwrap();
    assert_eq!(answer.capabilities.streams.and_then(|s| s.initial_credit), Some(4096));
    // An upload larger than the window still goes through, granted back as it is read.
    let (data, mut writer) = ReadStream::new();
    let write = async move {
        writer.send(bytes::Bytes::from(vec![3u8; 100_000])).await?;
        writer.finish().await
    };
    let (digest, written) =
        tokio::join!(BlobClient::new(host).count(&CountParams { data }).timeout(LONG), write);
    written.unwrap();
    assert_eq!(digest.unwrap().size, 100_000);
}
