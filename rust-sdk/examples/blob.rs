//! The `blob` reference plugin (SPEC.md §9.5): named byte strings in memory, moved by streams.
//! Uploads are read as they arrive (credit keeps the host from sending more than the window),
//! downloads and produced bytes are written by a task after the answer is sent.
//!
//! Run by a host with the reference cookie: `TETHER_MAGIC_COOKIE=... blob`.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tether::interfaces::blob::{
    blob_not_found, produced_byte, CountParams, Digest, DownloadResult, NameParams, ProduceParams,
    ProduceResult, UploadParams, MAX_PRODUCE,
};
use tether::interfaces::{Blob, BlobServer};
use tether::stream::{ReadStream, StreamReader};
use tether::Error;

#[derive(Default)]
struct Store(Mutex<HashMap<String, bytes::Bytes>>);

/// Reads a stream to its end, keeping the bytes when `keep`; the size and SHA-256 of what came.
async fn drain(data: ReadStream, keep: bool) -> Result<(Digest, bytes::Bytes), Error> {
    let mut reader: StreamReader = data.into_reader().map_err(|e| Error::from(e.0))?;
    let (mut hash, mut size, mut kept) = (Sha256::new(), 0u64, bytes::BytesMut::new());
    while let Some(chunk) = reader.next().await {
        let chunk = chunk.map_err(|e| Error::from(e.0))?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        if keep {
            kept.extend_from_slice(&chunk);
        }
    }
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((Digest { size, sha256 }, kept.freeze()))
}

impl Blob for Store {
    async fn upload(&self, p: UploadParams) -> Result<Digest, Error> {
        let (digest, bytes) = drain(p.data, true).await?;
        self.0.lock().map_err(Error::internal)?.insert(p.name, bytes);
        Ok(digest)
    }

    async fn download(&self, p: NameParams) -> Result<DownloadResult, Error> {
        let bytes = self.0.lock().map_err(Error::internal)?.get(&p.name).cloned();
        let bytes = bytes.ok_or_else(|| blob_not_found(&p.name))?;
        let (data, mut writer) = ReadStream::new();
        let size = bytes.len() as u64;
        // The chunks share the stored buffer; the writer waits for the message to be sent.
        tokio::spawn(async move {
            if writer.send(bytes).await.is_ok() {
                let _ = writer.finish().await;
            }
        });
        Ok(DownloadResult { size, data })
    }

    async fn count(&self, p: CountParams) -> Result<Digest, Error> {
        Ok(drain(p.data, false).await?.0)
    }

    async fn produce(&self, p: ProduceParams) -> Result<ProduceResult, Error> {
        if p.size > MAX_PRODUCE {
            return Err(Error::invalid_params(format!("size {} is above 2^40", p.size)));
        }
        let (data, mut writer) = ReadStream::new();
        tokio::spawn(async move {
            // One period of the pattern (251 bytes) repeated to 1 MiB, sent as shared slices.
            const BLOCK: u64 = 251 * 4177;
            let block: bytes::Bytes = (0..BLOCK).map(produced_byte).collect::<Vec<u8>>().into();
            let mut left = p.size;
            while left > 0 {
                let n = left.min(BLOCK);
                if writer.send(block.slice(..n as usize)).await.is_err() {
                    return;
                }
                left -= n;
            }
            let _ = writer.finish().await;
        });
        Ok(ProduceResult { data })
    }
}

fn main() {
    tether::Plugin::new("blob-rust", env!("CARGO_PKG_VERSION"))
        .interface(BlobServer::new(Store::default()))
        .serve()
}
