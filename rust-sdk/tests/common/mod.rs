//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]
// Test helpers: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tether::interfaces::Kv;
use tether::spec::interfaces::kv;
use tether::spec::{encode_frame, Empty, Frame, FrameCodec};
use tether::{Error, Options, Peer, Service, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::Decoder;

/// An in-memory kv store.
#[derive(Default)]
pub struct MemKv(pub Mutex<HashMap<String, Vec<u8>>>);

impl Kv for MemKv {
    async fn put(&self, p: kv::PutParams, _cx: tether::RequestContext) -> Result<Empty, Error> {
        self.0.lock().unwrap().insert(p.key, p.value.into_vec());
        Ok(Empty {})
    }
    async fn get(&self, p: kv::KeyParams) -> Result<kv::GetResult, Error> {
        let map = self.0.lock().unwrap();
        let value = map.get(&p.key).ok_or_else(|| kv::key_not_found(&p.key))?;
        Ok(kv::GetResult { value: value.clone().into() })
    }
    async fn delete(&self, p: kv::KeyParams) -> Result<kv::DeleteResult, Error> {
        Ok(kv::DeleteResult { existed: self.0.lock().unwrap().remove(&p.key).is_some() })
    }
}

/// Two connected peers.
pub fn pair(a: impl Service, b: impl Service) -> (Peer, Peer) {
    pair_with(Options::new(), a, Options::new(), b)
}

pub fn pair_with(oa: Options, a: impl Service, ob: Options, b: impl Service) -> (Peer, Peer) {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let pa = Session::start(xr, xw, oa, a).into_peer();
    let pb = Session::start(yr, yw, ob, b).into_peer();
    (pa, pb)
}

/// The raw other end of a connection: write bytes, read frame bodies.
pub struct Wire {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Wire {
    /// A connection serving `service`, and the wire to talk to it.
    pub fn connect(options: Options, service: impl Service) -> (Peer, Wire) {
        let (x, y) = tokio::io::duplex(1 << 16);
        let (xr, xw) = tokio::io::split(x);
        let (yr, yw) = tokio::io::split(y);
        let peer = Session::start(xr, xw, options, service).into_peer();
        (peer, Wire { r: yr, w: yw, codec: FrameCodec::new(), buf: BytesMut::new() })
    }

    pub fn new(r: ReadHalf<DuplexStream>, w: WriteHalf<DuplexStream>) -> Self {
        Wire { r, w, codec: FrameCodec::new(), buf: BytesMut::new() }
    }

    pub async fn send(&mut self, body: &str) {
        let mut frame = BytesMut::new();
        encode_frame(body.as_bytes(), &mut frame);
        self.w.write_all(&frame).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    pub async fn close(&mut self) {
        self.w.shutdown().await.unwrap();
    }

    /// The next frame body, within 5 s.
    pub async fn recv(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.next())
            .await
            .expect("no frame within 5 s")
            .expect("eof")
    }

    /// The next frame body, or `None` at end of input.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                match frame {
                    Frame::Message(b) => return Some(String::from_utf8(b.to_vec()).unwrap()),
                    other => panic!("unexpected frame {other:?}"),
                }
            }
            if self.r.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    /// Whether nothing arrives within `ms` milliseconds.
    pub async fn silent_for(&mut self, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), self.next()).await.is_err()
    }
}

/// Collects connection events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<String>>>);

impl Events {
    pub fn options(&self) -> Options {
        let events = self.0.clone();
        Options::new().on_event(move |e| events.lock().unwrap().push(e.to_string()))
    }
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
