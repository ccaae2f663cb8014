//! The host against the real `blob` example plugin (`rust-sdk/examples/blob.rs`) as a process:
//! upload, download, count and produce through streams, with attachments negotiated and not.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tether_host::interfaces::blob::{self, CountParams, NameParams, ProduceParams, UploadParams};
use tether_host::interfaces::BlobClient;
use tether_host::stream::ReadStream;
use tether_host::{PluginProcess, Stopped};
use tether_testkit::sdk_example;
use tokio::io::AsyncReadExt as _;

fn hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn round_trips(attachments: bool) {
    let plugin = PluginProcess::builder(sdk_example("blob"))
        .offer::<BlobClient>()
        .attachments(attachments)
        .call_timeout(Duration::from_secs(60))
        .start()
        .await
        .expect("start");
    let caps = &plugin.initialize_result().capabilities;
    assert_eq!(caps.attachments.is_some(), attachments, "the plugin answers what the host announced");
    assert!(caps.streams.is_some());
    let blob = plugin.client::<BlobClient>().expect("client");
    let payload: bytes::Bytes = (0..3_000_000u32).map(|i| (i * 31 % 256) as u8).collect::<Vec<u8>>().into();

    let (data, mut writer) = ReadStream::new();
    let sent = payload.clone();
    let producer = tokio::spawn(async move {
        writer.send(sent).await?;
        writer.finish().await
    });
    let digest = blob.upload(&UploadParams { name: "p".into(), data }).await.expect("upload");
    producer.await.expect("join").expect("the upload's writer");
    assert_eq!((digest.size, digest.sha256), (payload.len() as u64, hex(&payload)));

    let down = blob.download(&NameParams { name: "p".into() }).await.expect("download");
    assert_eq!(down.size, payload.len() as u64);
    let mut back = Vec::new();
    down.data.into_reader().expect("reader").read_to_end(&mut back).await.expect("read");
    assert!(back == payload, "the download gives the uploaded bytes");

    let (data, mut writer) = ReadStream::new();
    let counter = tokio::spawn(async move {
        for _ in 0..5 {
            writer.send(bytes::Bytes::from(vec![9u8; 700_000])).await?;
        }
        writer.finish().await
    });
    let counted = blob.count(&CountParams { data }).await.expect("count");
    counter.await.expect("join").expect("the count's writer");
    assert_eq!((counted.size, counted.sha256), (3_500_000, hex(&vec![9u8; 3_500_000])));

    let produced = blob.produce(&ProduceParams { size: 2_000_003 }).await.expect("produce");
    let mut all = Vec::new();
    produced.data.into_reader().expect("reader").read_to_end(&mut all).await.expect("read");
    assert_eq!(all.len(), 2_000_003);
    assert!(all.iter().enumerate().all(|(i, b)| *b == blob::produced_byte(i as u64)));

    let missing = blob.download(&NameParams { name: "nope".into() }).await.expect_err("missing");
    assert_eq!(missing.remote().map(|e| e.code), Some(1002));
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
}

#[tokio::test]
async fn blob_streams_with_attachments() {
    round_trips(true).await;
}

#[tokio::test]
async fn blob_streams_without_attachments() {
    round_trips(false).await;
}
