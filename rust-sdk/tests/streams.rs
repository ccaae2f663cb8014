//! Attachments (SPEC.md §2.8) and streams (SPEC.md §12) over the in-memory transport seam: a
//! host session (`tether_core::Session`) and a plugin (`tether::Plugin::start`) joined by a
//! `tokio::io::duplex`, or a host session and a raw wire that records every frame.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
use tether::spec::{
    codes, Capabilities, Frame, FrameCodec, Initialize, InitializeParams, PeerInfo, StreamsCapability,
};
use tether::stream::{ReadStream, StreamWriter};
use tether::{CallError, Error, Options, Peer, Router, Session};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;
use tokio_util::codec::Decoder as _;

const LONG: Duration = Duration::from_secs(20);

/// A blob plugin for the tests: `upload` stores, `count` counts; `gate`, when set, holds every
/// `count` before it reads (so that its stream backs up), and `started` says it began.
#[derive(Default)]
struct TestBlob {
    store: Mutex<HashMap<String, bytes::Bytes>>,
    gate: Option<Arc<Notify>>,
    started: Arc<Notify>,
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
        tokio::spawn(async move {
            let block: bytes::Bytes = (0..p.size).map(blob::produced_byte).collect::<Vec<u8>>().into();
            if w.send(block).await.is_ok() {
                let _ = w.finish().await;
            }
        });
        Ok(blob::ProduceResult { data })
    }
}

fn init_params(caps: Capabilities) -> InitializeParams {
    InitializeParams {
        protocol_versions: vec![1],
        interfaces: [("blob".to_owned(), vec![1]), ("kv".to_owned(), vec![1, 2])].into(),
        host: PeerInfo::new("test-host", "0"),
        capabilities: caps,
        max_frame_size: 32 << 20,
        log_level: None,
    }
}

/// A host session joined to a plugin serving `blob` and `kv`, initialized with `caps`.
async fn host_and_plugin(blob: TestBlob, caps: Capabilities) -> (Peer, Capabilities) {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let plugin = tether::Plugin::new("test-blob", "0")
        .interface(BlobServer::new(blob))
        .interface(KvServer::new(common::MemKv::default()));
    let _ = plugin.start(yr, yw).into_peer();
    let host = Session::start(xr, xw, Options::new(), Router::new()).into_peer();
    let answer = host.call::<Initialize>(&init_params(caps)).timeout(LONG).await.unwrap();
    (host, answer.capabilities)
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
