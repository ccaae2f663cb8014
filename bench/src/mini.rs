//! A minimal Tether host written for this benchmark on top of `tether-spec` only: one reader
//! task, one writer task that coalesces queued frames into one `write`, a map of pending ids,
//! and an `adder` that answers every `tether/invoke`. It checks nothing that a real host must
//! check (schemas, handle lifetimes, versions, logs), so it is not a host: it is the floor of
//! what JSON-RPC framing over tokio pipes costs, printed beside `tether-host` so that the
//! share of the cost that belongs to the host and SDK machinery is visible.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _};
use bytes::BytesMut;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::interfaces::{counter, kv};
use tether_spec::{
    encode_frame, parse_message, ErrorObject, Frame, FrameCodec, HandleRef, Id, InitializeParams,
    InvokeParams, Message, Outcome, PeerInfo, Request, Response, PROTOCOL_VERSION, REFERENCE_COOKIE_KEY,
    REFERENCE_COOKIE_VALUE,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder as _;

type Reply = Result<Box<RawValue>, ErrorObject>;
type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>>;

/// A connection to one plugin.
#[derive(Clone)]
pub struct MiniClient {
    out: mpsc::UnboundedSender<Option<BytesMut>>,
    pending: Pending,
    next: Arc<AtomicI64>,
}

/// The plugin process behind a [`MiniClient`].
pub struct MiniPlugin {
    /// The connection.
    pub client: MiniClient,
    child: Child,
}

fn frame_of(message: &Message) -> BytesMut {
    let body = message.to_body();
    let mut buf = BytesMut::with_capacity(body.len() + 32);
    encode_frame(&body, &mut buf);
    buf
}

impl MiniPlugin {
    /// Spawns `program args` with the reference cookie and initializes a session offering
    /// `interface` (all its versions).
    pub async fn start(
        program: &Path,
        args: &[String],
        interface: &str,
        versions: &[u32],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .env(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (out, mut rx) = mpsc::unbounded_channel::<Option<BytesMut>>();
        let pending: Pending = Arc::default();

        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            // `None` closes stdin.
            'outer: while let Some(Some(frame)) = rx.recv().await {
                buf.unsplit(frame);
                let mut close = false;
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Some(more) => buf.unsplit(more),
                        None => close = true,
                    }
                }
                if stdin.write_all(&buf).await.is_err() || close {
                    break 'outer;
                }
                buf.clear();
            }
        });

        let reader_pending = pending.clone();
        let reader_out = out.clone();
        tokio::spawn(async move {
            let mut codec = FrameCodec::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(Frame::Message(body))) => dispatch(&body, &reader_pending, &reader_out),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                buf.reserve(64 * 1024);
                match stdout.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Fail whatever is still pending.
            if let Ok(mut p) = reader_pending.lock() {
                p.clear();
            }
        });

        let client = MiniClient { out, pending, next: Arc::new(AtomicI64::new(1)) };
        let params = InitializeParams {
            protocol_versions: vec![PROTOCOL_VERSION],
            interfaces: [(interface.to_owned(), versions.to_vec())].into_iter().collect(),
            host: PeerInfo::new("tether-bench-mini", env!("CARGO_PKG_VERSION")),
            capabilities: Default::default(),
            max_frame_size: 64 << 20,
            log_level: None,
        };
        client.call("tether/initialize", &params).await.context("tether/initialize")?;
        Ok(MiniPlugin { client, child })
    }

    /// `tether/shutdown`, then end of stdin, then the exit.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.client.call("tether/shutdown", &serde_json::json!({})).await?;
        let _ = self.client.out.send(None);
        drop(self.client);
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("plugin exited with {status}");
        }
        Ok(())
    }

    /// The plugin's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn dispatch(body: &[u8], pending: &Pending, out: &mpsc::UnboundedSender<Option<BytesMut>>) {
    match parse_message(body) {
        Ok(Message::Response(Response { id: Some(Id::Int(id)), outcome, .. })) => {
            let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(w) = waiter {
                let _ = w.send(match outcome {
                    Outcome::Result(r) => Ok(r),
                    Outcome::Error(e) => Err(e),
                });
            }
        }
        Ok(Message::Request(req)) if req.method == "tether/invoke" => {
            let answer = serde_json::from_str::<InvokeParams>(req.params.get())
                .ok()
                .and_then(|p| serde_json::from_str::<counter::SumParams>(p.params.get()).ok())
                .and_then(|s| {
                    serde_json::value::to_raw_value(&counter::SumResult { result: s.a + s.b }).ok()
                });
            let response = match answer {
                Some(r) => Response::ok(req.id, r),
                None => Response::error(Some(req.id), ErrorObject::new(-32602, "bad sum")),
            };
            let _ = out.send(Some(frame_of(&Message::Response(response))));
        }
        _ => {}
    }
}

impl MiniClient {
    /// Sends a request and waits for its answer.
    pub async fn call<P: Serialize>(&self, method: &str, params: &P) -> anyhow::Result<Box<RawValue>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let params = serde_json::value::to_raw_value(params)?;
        let frame = frame_of(&Message::Request(Request::new(Id::Int(id), method, params)));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| anyhow!("poisoned"))?.insert(id, tx);
        self.out.send(Some(frame)).map_err(|_| anyhow!("connection closed"))?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(anyhow!("{method}: error {}: {}", e.code, e.message)),
            Err(_) => Err(anyhow!("{method}: connection closed")),
        }
    }

    /// `kv.put`.
    pub async fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let params = kv::PutParams { key: key.to_owned(), value: value.into() };
        self.call("kv.put", &params).await.map(drop)
    }

    /// `kv.get`: the value's length.
    pub async fn get(&self, key: &str) -> anyhow::Result<usize> {
        let r = self.call("kv.get", &kv::KeyParams { key: key.to_owned() }).await?;
        let r: kv::GetResult = serde_json::from_str(r.get())?;
        Ok(r.value.len())
    }

    /// `counter.put` with an `adder` handle that this client answers.
    pub async fn counter_put(&self, key: &str, value: i64) -> anyhow::Result<()> {
        let params =
            counter::PutParams { key: key.to_owned(), value, adder: HandleRef::new("h1", counter::ADDER) };
        self.call("counter.put", &params).await.map(drop)
    }
}

/// The minimal client as a benchmark backend (no checksum option: it is asked for and ignored).
pub struct MiniBackend;

impl crate::scenario::KvConn for MiniClient {
    fn put(&self, key: &str, value: &[u8]) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let this = self.clone();
        let key = key.to_owned();
        let params = kv::PutParams { key, value: value.into() };
        async move { this.call("kv.put", &params).await.map(drop) }
    }

    fn get(&self, key: &str) -> impl std::future::Future<Output = anyhow::Result<usize>> + Send {
        let this = self.clone();
        let key = key.to_owned();
        async move { MiniClient::get(&this, &key).await }
    }
}

/// A `counter` connection of the minimal client.
#[derive(Clone)]
pub struct MiniCounter(pub MiniClient);

impl crate::scenario::CounterConn for MiniCounter {
    fn put(&self, key: &str, value: i64) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let this = self.0.clone();
        let key = key.to_owned();
        async move { this.counter_put(&key, value).await }
    }
}

impl crate::scenario::Backend for MiniBackend {
    type Kv = MiniClient;
    type Counter = MiniCounter;
    type PluginProcess = MiniPlugin;

    async fn start_kv(
        &self,
        cmd: &crate::scenario::PluginCmd,
        _checksum: bool,
    ) -> anyhow::Result<(MiniClient, MiniPlugin)> {
        let p = MiniPlugin::start(&cmd.program, &cmd.args, kv::NAME, kv::VERSIONS).await?;
        Ok((p.client.clone(), p))
    }

    async fn start_counter(
        &self,
        cmd: &crate::scenario::PluginCmd,
    ) -> anyhow::Result<(MiniCounter, MiniPlugin)> {
        let p = MiniPlugin::start(&cmd.program, &cmd.args, counter::NAME, counter::VERSIONS).await?;
        Ok((MiniCounter(p.client.clone()), p))
    }

    fn pid(&self, plugin: &MiniPlugin) -> Option<u32> {
        plugin.pid()
    }

    async fn stop(&self, plugin: MiniPlugin) -> anyhow::Result<()> {
        plugin.shutdown().await
    }
}
