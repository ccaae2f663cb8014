//! The connection fuzz target's driver: a peer built on `tether-spec` plays the host against a
//! plugin session of the SDK, over an in-memory duplex, following a program of actions read
//! from the fuzz input, and checks what the issue asks of the connection: no panic, every request
//! answered exactly once with its id, nothing left behind after the close (no pending call, no
//! handle, no stream, no running handler, no task), a bounded write backlog, and only
//! well-formed frames written.
//!
//! The plugin serves the `kv` and `counter` reference services, with the example plugins' own
//! code (`rust-sdk/examples/shared/`), and `lender`, which serves an adder as a handle and passes
//! it to the host in a request (a callback carrying a handle, SPEC.md §6.3), so that invokes,
//! retains and releases reach real handles. The peer also answers the plugin's callbacks (the
//! counter's `sum`, the lender's `host.borrow`) as the program says: correctly, with an error,
//! with a result of the wrong shape, with an unknown or a repeated id, or not at all.
//!
//! Which answers to expect is decided by a **mirror** of the plugin's reader: the peer feeds
//! every byte it writes to a copy of the same lenient codec with the same limit and classifies
//! each frame with `parse_message` (both fuzzed on their own, `spec/fuzz/`): a request expects
//! one answer with its id, a body §3.4 answers expects that answer, an oversized frame whose
//! prefix names a request expects -32004. So garbage, partial frames and raw bodies can be sent
//! anywhere and the count stays exact. The mirror does not follow a negotiation that changes the
//! framing (attachments, streams, another maximum frame size): bytes that would carry such a
//! `tether/initialize` are not sent (the action is skipped).
//!
//! Shared by the fuzz target (`rust-sdk/fuzz/fuzz_targets/connection.rs`) and the stable test
//! `rust-sdk/tests/fuzz_corpus.rs`, which replays the committed corpus and regressions and writes
//! the seeds (from the transcripts of `spec/transcripts/`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::BytesMut;
use futures::FutureExt as _;
use serde_json::{json, Value};
use tether::interfaces::{Adder, AdderServer, CounterServer, KvServer};
use tether::spec::interfaces::counter::{SumParams, SumResult};
use tether::spec::{
    encode_frame, parse_message, AttributedKind, Attribution, Capabilities, Empty, Frame, FrameCodec, Id,
    InitializeParams, Message, PeerInfo, ProgressCapability, TraceContextCapability, MIN_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
};
use tether::{CloseKind, Error, Options, Plugin, RequestContext};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::Decoder as _;

#[path = "../../examples/shared/kv.rs"]
#[allow(dead_code, unreachable_pub)]
mod kv;

#[path = "../../examples/shared/counter.rs"]
#[allow(dead_code, unreachable_pub)]
mod counter;

/// The maximum frame size both sides use: the smallest a host may announce (SPEC.md §2.5), so
/// that an oversized frame costs as little as it can.
pub const MAX_FRAME: usize = MIN_MAX_FRAME_SIZE;

/// The plugin's write backlog bound: small, so that the reader's pause (it stops reading while
/// more than this waits to be written) is reached with small inputs.
pub const BACKLOG_LIMIT: usize = 16 * 1024;

/// The most one answer or notification of these services can weigh in the backlog (the largest
/// is a -32004 or an error naming a long method; values are at most 255 bytes).
const MAX_ANSWER: usize = 8 * 1024;

/// Rounds of the scheduler without new output after which the plugin is taken to be idle.
const QUIET_ROUNDS: usize = 6;

// ---- The plugin's services ----

/// A service whose method calls the host back with a handle in the params, which the host may
/// invoke, retain and release while the call lasts (and after, once retained).
#[tether::interface(name = "lender", versions = [1])]
pub trait Lender {
    /// `lender.lend`: serves an adder as a handle and calls the host's `host.borrow` with it
    /// (the handle is scoped to that call, SPEC.md §6.3); answers once the host has.
    async fn lend(&self, params: Empty, cx: RequestContext) -> Result<Empty, Error>;
}

struct Lend;

impl Lender for Lend {
    async fn lend(&self, _: Empty, cx: RequestContext) -> Result<Empty, Error> {
        let handle = cx.peer().serve_handle(AdderServer::new(Sum));
        cx.peer().call_as::<_, Empty>("host.borrow", &json!({ "adder": handle })).await?;
        Ok(Empty {})
    }
}

struct Sum;

impl Adder for Sum {
    async fn sum(&self, p: SumParams) -> Result<SumResult, Error> {
        let result = p.a.checked_add(p.b).ok_or_else(|| Error::new(1, "overflow"))?;
        Ok(SumResult { result })
    }
}

fn plugin() -> Plugin {
    Plugin::new("fuzz-plugin", "0.0.0")
        .interface(KvServer::new(kv::Store::Memory(Default::default())))
        .interface(CounterServer::new(counter::Counters::default()))
        .interface(LenderServer::new(Lend))
        .forward_logs(false)
        .options(Options::new().max_frame_size(MAX_FRAME).max_write_backlog(BACKLOG_LIMIT).on_event(|_| {}))
}

// ---- The program ----

/// One step of the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `tether/initialize` with id 0: bit 0 progress, bit 1 trace context, bits 2-3 which
    /// versions of `kv` (both, 1, none, a version the plugin lacks), bit 4 an unknown
    /// capability, bit 5 no `lender`.
    Initialize { flags: u8 },
    /// `kv.put` of `len` bytes, asking for progress with the request's id as token or not.
    KvPut { id: u8, key: u8, len: u8, progress: bool },
    /// `kv.get`.
    KvGet { id: u8, key: u8 },
    /// `kv.delete`.
    KvDelete { id: u8, key: u8 },
    /// `counter.put` with an adder handle of the peer (`h<handle % 4>`; from 200 on, a malformed
    /// handle reference).
    CounterPut { id: u8, key: u8, value: u8, handle: u8 },
    /// `counter.get`.
    CounterGet { id: u8, key: u8 },
    /// `lender.lend`: the plugin calls back with a handle.
    Lend { id: u8 },
    /// `tether/invoke` on a handle the plugin lent (below 128: one of them) or a bogus one;
    /// `variant` picks valid or broken params.
    Invoke { id: u8, handle: u8, variant: u8 },
    /// `tether/retain`.
    Retain { id: u8, handle: u8 },
    /// `$/release`.
    Release { handle: u8 },
    /// `$/cancelRequest` naming `target` (as an id).
    Cancel { target: u8 },
    /// Another request: ping, shutdown, unknown methods, invalid params (see [`call_body`]).
    Call { id: u8, variant: u8 },
    /// A notification (see [`notify_body`]).
    Notify { variant: u8 },
    /// An answer to a callback of the plugin (see [`Peer::answer`]).
    Answer { pick: u8, kind: u8 },
    /// Bytes as they are.
    Garbage(Vec<u8>),
    /// A frame around a body as it is (a `tether/initialize` in it is replaced by the peer's).
    Frame(Vec<u8>),
    /// A header and the first bytes of a body of `len` more: what follows completes it.
    Partial { len: u8 },
    /// A `kv.put` one byte over the maximum frame size (once per input: it costs a megabyte).
    Oversized { id: u8 },
    /// Answer every callback and wait until every request is answered.
    Settle,
    /// Stop here: close the plugin's input.
    Close,
}

const OPS: u8 = 20;

/// Reads fuzz bytes; past the end, zeros.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(u16::from_le_bytes([self.byte(), self.byte()]));
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }
}

/// The program of a fuzz input: byte 0 picks the duplex's capacity, then actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The capacity of the in-memory pipe each way (small ones split frames across reads).
    pub pipe: usize,
    /// The steps.
    pub actions: Vec<Action>,
}

const PIPES: [usize; 4] = [64 * 1024, 61, 512, 4096];

impl Program {
    /// Reads a program from fuzz bytes (any bytes are a program).
    pub fn decode(data: &[u8]) -> Program {
        let mut c = Cursor(data);
        let pipe = PIPES[usize::from(c.byte() & 3)];
        let mut actions = Vec::new();
        while !c.0.is_empty() {
            let op = c.byte() % OPS;
            let action = match op {
                0 => Action::Initialize { flags: c.byte() },
                1 => {
                    Action::KvPut { id: c.byte(), key: c.byte(), len: c.byte(), progress: c.byte() & 1 == 1 }
                }
                2 => Action::KvGet { id: c.byte(), key: c.byte() },
                3 => Action::KvDelete { id: c.byte(), key: c.byte() },
                4 => Action::CounterPut { id: c.byte(), key: c.byte(), value: c.byte(), handle: c.byte() },
                5 => Action::CounterGet { id: c.byte(), key: c.byte() },
                6 => Action::Lend { id: c.byte() },
                7 => Action::Invoke { id: c.byte(), handle: c.byte(), variant: c.byte() },
                8 => Action::Retain { id: c.byte(), handle: c.byte() },
                9 => Action::Release { handle: c.byte() },
                10 => Action::Cancel { target: c.byte() },
                11 => Action::Call { id: c.byte(), variant: c.byte() },
                12 => Action::Notify { variant: c.byte() },
                13 => Action::Answer { pick: c.byte(), kind: c.byte() },
                14 => Action::Garbage(c.bytes()),
                15 => Action::Frame(c.bytes()),
                16 => Action::Partial { len: c.byte() },
                17 => Action::Oversized { id: c.byte() },
                18 => Action::Settle,
                _ => Action::Close,
            };
            actions.push(action);
        }
        Program { pipe, actions }
    }

    /// Writes a program as fuzz bytes: the inverse of [`Program::decode`] (used for the seeds).
    pub fn encode(&self) -> Vec<u8> {
        let pipe = PIPES.iter().position(|&p| p == self.pipe).unwrap_or(0);
        let mut out = vec![pipe as u8];
        for action in &self.actions {
            let (op, args): (u8, Vec<u8>) = match action {
                Action::Initialize { flags } => (0, vec![*flags]),
                Action::KvPut { id, key, len, progress } => (1, vec![*id, *key, *len, u8::from(*progress)]),
                Action::KvGet { id, key } => (2, vec![*id, *key]),
                Action::KvDelete { id, key } => (3, vec![*id, *key]),
                Action::CounterPut { id, key, value, handle } => (4, vec![*id, *key, *value, *handle]),
                Action::CounterGet { id, key } => (5, vec![*id, *key]),
                Action::Lend { id } => (6, vec![*id]),
                Action::Invoke { id, handle, variant } => (7, vec![*id, *handle, *variant]),
                Action::Retain { id, handle } => (8, vec![*id, *handle]),
                Action::Release { handle } => (9, vec![*handle]),
                Action::Cancel { target } => (10, vec![*target]),
                Action::Call { id, variant } => (11, vec![*id, *variant]),
                Action::Notify { variant } => (12, vec![*variant]),
                Action::Answer { pick, kind } => (13, vec![*pick, *kind]),
                Action::Garbage(bytes) | Action::Frame(bytes) => {
                    let op = if matches!(action, Action::Garbage(_)) { 14 } else { 15 };
                    let len = bytes.len().min(usize::from(u16::MAX));
                    let mut args = (len as u16).to_le_bytes().to_vec();
                    args.extend_from_slice(&bytes[..len]);
                    (op, args)
                }
                Action::Partial { len } => (16, vec![*len]),
                Action::Oversized { id } => (17, vec![*id]),
                Action::Settle => (18, Vec::new()),
                Action::Close => (19, Vec::new()),
            };
            out.push(op);
            out.extend(args);
        }
        out
    }
}

/// The id a byte stands for: small integers and a few strings, so that ids repeat, collide and
/// can be named by a cancel.
fn id_of(b: u8) -> Id {
    match b {
        0..=199 => Id::Int(i64::from(b % 24)),
        200..=249 => Id::Str(format!("s{}", b % 4)),
        250 => Id::Int(i64::MAX),
        251 => Id::Int(i64::MIN),
        252 => Id::Int(-1),
        _ => Id::Str(String::new()),
    }
}

fn id_json(id: &Id) -> Value {
    match id {
        Id::Int(n) => json!(n),
        Id::Str(s) => json!(s),
    }
}

fn request(id: &Id, method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id_json(id), "method": method, "params": params}).to_string().into_bytes()
}

fn notification(method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string().into_bytes()
}

fn key(b: u8) -> String {
    match b % 8 {
        7 => "\u{e9}\\\"\u{0}".to_owned(),
        n => format!("k{n}"),
    }
}

/// The peer's `tether/initialize` (the mirror can follow it: no attachments, no streams, the
/// maximum frame size both sides start with).
fn initialize_params(flags: u8) -> Value {
    let mut interfaces = std::collections::BTreeMap::new();
    match (flags >> 2) & 3 {
        0 => interfaces.insert("kv".to_owned(), vec![1, 2]),
        1 => interfaces.insert("kv".to_owned(), vec![1]),
        2 => None,
        _ => interfaces.insert("kv".to_owned(), vec![7]),
    };
    interfaces.insert("counter".to_owned(), vec![1]);
    if flags & 32 == 0 {
        interfaces.insert("lender".to_owned(), vec![1]);
    }
    let mut capabilities = Capabilities::new();
    if flags & 1 != 0 {
        capabilities.progress = Some(ProgressCapability::default());
    }
    if flags & 2 != 0 {
        capabilities.trace_context = Some(TraceContextCapability::default());
    }
    if flags & 16 != 0 {
        capabilities.other.insert("someday".to_owned(), json!({"x": 1}));
    }
    let params = InitializeParams {
        protocol_versions: vec![PROTOCOL_VERSION],
        interfaces,
        host: PeerInfo::new("fuzz-host", "0.0.0"),
        capabilities,
        max_frame_size: MAX_FRAME as u64,
        log_level: None,
    };
    serde_json::to_value(&params).unwrap_or_default()
}

/// Whether a `tether/initialize` frame would change how the plugin reads frames, which the
/// mirror does not follow.
fn changes_framing(body: &[u8]) -> bool {
    let Ok(Message::Request(r)) = parse_message(body) else { return false };
    if r.method != "tether/initialize" {
        return false;
    }
    serde_json::from_str::<InitializeParams>(r.params.get()).is_ok_and(|p| {
        p.capabilities.attachments.is_some()
            || p.capabilities.streams.is_some()
            || p.max_frame_size != MAX_FRAME as u64
    })
}

/// Requests other than the services' own.
fn call_body(id: &Id, variant: u8) -> Vec<u8> {
    match variant % 9 {
        0 => request(id, "tether/ping", json!({})),
        1 => request(id, "tether/shutdown", json!({})),
        2 => request(id, "kv.nope", json!({})),
        3 => request(id, "nope", json!({})),
        4 => request(id, "kv.get", json!({"key": 5})),
        5 => request(id, "blob.upload", json!({})),
        6 => {
            format!(r#"{{"jsonrpc":"2.0","id":{},"method":"kv.get","params":[1]}}"#, id_json(id)).into_bytes()
        }
        7 => request(id, "tether/retain", json!({})),
        _ => request(id, "$/cancelRequest", json!({"id": 1})),
    }
}

/// Notifications of every kind the plugin may receive.
fn notify_body(variant: u8) -> Vec<u8> {
    match variant % 7 {
        0 => notification("x.y", json!({})),
        1 => notification("$/setLogLevel", json!({"level": "debug"})),
        2 => notification("$/progress", json!({"token": 1, "done": 1})),
        3 => notification("$/stream.data", json!({"stream": 2, "data": "AA=="})),
        4 => notification("$/cancelRequest", json!({"id": "s1"})),
        5 => notification("$/release", json!({"handle": 7})),
        _ => notification("$/stream.abort", json!({"stream": 1, "error": {"code": 1, "message": "m"}})),
    }
}

// ---- The peer ----

/// A request the plugin sent.
struct Callback {
    id: i64,
    method: String,
    params: Value,
    /// Whether the plugin has been sent an answer to it (as the mirror reads the bytes).
    answered: bool,
}

/// What the peer knows and expects.
#[derive(Default)]
struct Model {
    /// Answers the plugin owes, by id; and those it wrote.
    expected: HashMap<Id, usize>,
    answered: HashMap<Id, usize>,
    /// The same for answers with `"id": null`.
    expected_null: usize,
    answered_null: usize,
    /// The progress tokens of requests not answered yet: (request id, token).
    tokens: Vec<(Id, Id)>,
    /// The plugin's requests, in order.
    callbacks: Vec<Callback>,
    /// The handles the plugin lent.
    lent: Vec<String>,
    /// The mirror read a truncated frame at the end of input.
    truncated: bool,
}

impl Model {
    fn outstanding(&self) -> usize {
        let by_id: usize = self
            .expected
            .iter()
            .map(|(id, n)| n.saturating_sub(self.answered.get(id).copied().unwrap_or(0)))
            .sum();
        by_id + self.expected_null.saturating_sub(self.answered_null)
    }

    fn unanswered_callbacks(&self) -> Vec<usize> {
        (0..self.callbacks.len()).filter(|&i| !self.callbacks[i].answered).collect()
    }

    /// A frame as the plugin reads it: what it will have to answer.
    fn mirror(&mut self, frame: Frame) {
        match frame {
            Frame::Message(body) => match parse_message(&body) {
                Ok(Message::Request(r)) => {
                    let token = serde_json::from_str::<Value>(r.params.get())
                        .ok()
                        .and_then(|p| p.get("_meta")?.get("progressToken").cloned())
                        .and_then(|t| serde_json::from_value::<Id>(t).ok());
                    if let Some(token) = token {
                        self.tokens.push((r.id.clone(), token));
                    }
                    *self.expected.entry(r.id).or_default() += 1;
                }
                Ok(Message::Response(r)) => self.callback_answered(r.id.as_ref()),
                Ok(Message::Notification(_)) => {}
                Err(e) => match e.reply().map(|reply| reply.id) {
                    Some(Some(id)) => *self.expected.entry(id).or_default() += 1,
                    Some(None) => self.expected_null += 1,
                    None => {}
                },
            },
            Frame::Oversized(o) => match o.attribution() {
                Some(Attribution { id, kind: AttributedKind::Request }) => {
                    *self.expected.entry(id).or_default() += 1;
                }
                Some(Attribution { id, kind: AttributedKind::Response | AttributedKind::Unknown }) => {
                    self.callback_answered(Some(&id));
                }
                None => {}
            },
            Frame::Garbage { .. } => {}
            Frame::Truncated(_) => self.truncated = true,
            Frame::Attached(_) | Frame::BadAttachments { .. } => {
                panic!("the mirror read an attachment frame, but attachments were never negotiated")
            }
        }
    }

    fn callback_answered(&mut self, id: Option<&Id>) {
        if let Some(Id::Int(n)) = id {
            if let Some(c) = self.callbacks.iter_mut().find(|c| c.id == *n) {
                c.answered = true;
            }
        }
    }

    /// A message the plugin wrote.
    fn output(&mut self, body: &[u8]) {
        let message = parse_message(body).unwrap_or_else(|e| {
            panic!("the plugin wrote an invalid message ({e}): {}", String::from_utf8_lossy(body))
        });
        match message {
            Message::Response(r) => match &r.id {
                Some(id) => {
                    let n = self.answered.entry(id.clone()).or_default();
                    *n += 1;
                    let expected = self.expected.get(id).copied().unwrap_or(0);
                    assert!(
                        *n <= expected,
                        "answer {n} to id {id}, which was sent {expected} times: {}",
                        String::from_utf8_lossy(body)
                    );
                    if let Some(i) = self.tokens.iter().position(|(rid, _)| rid == id) {
                        self.tokens.remove(i);
                    }
                }
                None => {
                    self.answered_null += 1;
                    assert!(
                        self.answered_null <= self.expected_null,
                        "more answers with a null id than bodies that call for one: {}",
                        String::from_utf8_lossy(body)
                    );
                }
            },
            Message::Request(r) => {
                let Id::Int(id) = r.id else { panic!("the plugin used a string id: {}", r.id) };
                assert!(
                    self.callbacks.iter().all(|c| c.id != id),
                    "the plugin reused request id {id} (method {})",
                    r.method
                );
                let params: Value = serde_json::from_str(r.params.get()).unwrap_or_default();
                if r.method == "host.borrow" {
                    if let Some(h) =
                        params.get("adder").and_then(|a| a.get("$handle")).and_then(Value::as_str)
                    {
                        self.lent.push(h.to_owned());
                    }
                }
                self.callbacks.push(Callback { id, method: r.method, params, answered: false });
            }
            Message::Notification(n) => match n.method.as_str() {
                "$/progress" => {
                    let token = serde_json::from_str::<Value>(n.params.get())
                        .ok()
                        .and_then(|p| serde_json::from_value::<Id>(p.get("token")?.clone()).ok());
                    assert!(
                        token.as_ref().is_some_and(|t| self.tokens.iter().any(|(_, k)| k == t)),
                        "progress for no request waiting for its answer: {}",
                        String::from_utf8_lossy(body)
                    );
                }
                "$/cancelRequest" => {
                    let id = serde_json::from_str::<Value>(n.params.get())
                        .ok()
                        .and_then(|p| p.get("id")?.as_i64());
                    assert!(
                        id.is_some_and(|id| self.callbacks.iter().any(|c| c.id == id)),
                        "the plugin cancelled a request it never sent: {}",
                        String::from_utf8_lossy(body)
                    );
                }
                "$/log" => {}
                other => panic!("the plugin sent an unexpected notification {other}"),
            },
        }
    }
}

/// The correct answer to a callback.
fn correct_answer(c: &Callback) -> Value {
    if c.method == "tether/invoke" {
        let a = c.params.pointer("/params/a").and_then(Value::as_i64).unwrap_or(0);
        let b = c.params.pointer("/params/b").and_then(Value::as_i64).unwrap_or(0);
        return match a.checked_add(b) {
            Some(sum) => json!({"jsonrpc": "2.0", "id": c.id, "result": {"result": sum}}),
            None => json!({"jsonrpc": "2.0", "id": c.id, "error": {"code": 1, "message": "overflow"}}),
        };
    }
    json!({"jsonrpc": "2.0", "id": c.id, "result": {}})
}

struct Peer {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    /// The plugin's output not decoded yet, and the strict codec that reads it.
    inbuf: BytesMut,
    reader: FrameCodec,
    eof: bool,
    /// The mirror of the plugin's reader and the bytes it has not decoded yet.
    mirror: FrameCodec,
    mirror_buf: BytesMut,
    model: Model,
    plugin: tether::Peer,
    oversized_sent: bool,
}

impl Peer {
    /// Sends bytes, unless the mirror finds they would change the framing; reads the plugin's
    /// output meanwhile (it may stop reading until its answers are read).
    async fn send(&mut self, bytes: &[u8]) {
        let mut trial = self.mirror.clone();
        let mut buf = self.mirror_buf.clone();
        buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = trial.decode(&mut buf) {
            if let Frame::Message(body) = &frame {
                if changes_framing(body) {
                    return;
                }
            }
            frames.push(frame);
        }
        (self.mirror, self.mirror_buf) = (trial, buf);
        for frame in frames {
            self.model.mirror(frame);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            tokio::select! {
                biased;
                written = self.w.write(rest) => {
                    let n = written.unwrap_or_else(|e| panic!("the plugin stopped reading its input: {e}"));
                    rest = &rest[n..];
                }
                read = self.r.read_buf(&mut self.inbuf) => self.on_read(read),
            }
        }
        self.pump().await;
    }

    async fn send_frame(&mut self, body: &[u8]) {
        let mut framed = BytesMut::new();
        encode_frame(body, &mut framed);
        self.send(&framed).await;
    }

    fn on_read(&mut self, read: std::io::Result<usize>) {
        match read {
            Ok(0) => {
                assert!(!self.eof || self.inbuf.is_empty(), "bytes after the end of output");
                self.eof = true;
            }
            Ok(_) => {}
            Err(e) => panic!("reading the plugin's output failed: {e}"),
        }
        loop {
            match self.reader.decode(&mut self.inbuf) {
                Ok(Some(Frame::Message(body))) => self.model.output(&body),
                Ok(Some(other)) => panic!("the plugin wrote {other:?}"),
                Ok(None) => break,
                Err(e) => panic!("the plugin wrote a malformed frame: {e}"),
            }
        }
    }

    /// Reads what is there without waiting.
    fn read_ready(&mut self) -> bool {
        let mut any = false;
        while !self.eof {
            match self.r.read_buf(&mut self.inbuf).now_or_never() {
                Some(read) => {
                    any = true;
                    self.on_read(read);
                }
                None => break,
            }
        }
        any
    }

    /// Lets the plugin run until it has nothing more to say, reading its output; checks that
    /// its write backlog stays bounded.
    async fn pump(&mut self) {
        let mut quiet = 0;
        while quiet < QUIET_ROUNDS {
            tokio::task::yield_now().await;
            quiet = if self.read_ready() { 0 } else { quiet + 1 };
            let d = self.plugin.diagnostics();
            // The reader stops while more than the limit waits; past it, only the answers of
            // requests already read (and their progress) can still be queued.
            let bound =
                BACKLOG_LIMIT + MAX_ANSWER * (self.model.outstanding() + self.model.callbacks.len() + 2);
            assert!(d.backlog <= bound, "a write backlog of {} bytes, above {bound}: {d:?}", d.backlog);
        }
    }

    /// Answers a callback of the plugin as `kind` says.
    async fn answer(&mut self, pick: u8, kind: u8) {
        let open = self.model.unanswered_callbacks();
        let body = match (open.get(usize::from(pick) % open.len().max(1)), kind % 6) {
            (Some(&i), 0) => correct_answer(&self.model.callbacks[i]),
            (Some(&i), 1) => json!({"jsonrpc": "2.0", "id": self.model.callbacks[i].id,
                "error": {"code": -32800, "message": "no", "data": [1]}}),
            (Some(&i), 2) => json!({"jsonrpc": "2.0", "id": self.model.callbacks[i].id, "result": "x"}),
            (Some(&i), 3) => {
                json!({"jsonrpc": "2.0", "id": format!("{}", self.model.callbacks[i].id), "result": {}})
            }
            (_, 4) => match self.model.callbacks.iter().find(|c| c.answered) {
                // A second answer to a call already answered.
                Some(c) => correct_answer(c),
                None => json!({"jsonrpc": "2.0", "id": 999, "result": {}}),
            },
            _ => json!({"jsonrpc": "2.0", "id": 1000 + i64::from(pick), "result": {}}),
        };
        self.send_frame(body.to_string().as_bytes()).await;
    }

    /// Answers every callback and waits until every request is answered; a request that stays
    /// unanswered while the plugin waits for nothing is a lost answer.
    async fn settle(&mut self) {
        for _ in 0..64 {
            while let Some(&i) = self.model.unanswered_callbacks().first() {
                let body = correct_answer(&self.model.callbacks[i]).to_string();
                self.send_frame(body.as_bytes()).await;
            }
            self.pump().await;
            if self.model.outstanding() == 0 && self.model.unanswered_callbacks().is_empty() {
                let d = self.plugin.diagnostics();
                assert_eq!(
                    (d.pending, d.incoming, d.polling),
                    (0, 0, 0),
                    "settled, the plugin still holds {d:?}"
                );
                return;
            }
        }
        let missing: Vec<_> = self
            .model
            .expected
            .iter()
            .filter(|(id, n)| self.model.answered.get(*id).copied().unwrap_or(0) < **n)
            .map(|(id, _)| id.to_string())
            .collect();
        panic!(
            "requests never answered although the peer answered every callback: ids {missing:?}, null-id answers {}/{}; the plugin holds {:?}",
            self.model.answered_null,
            self.model.expected_null,
            self.plugin.diagnostics()
        );
    }

    fn handle_ref(&self, b: u8) -> String {
        match self.model.lent.get(usize::from(b)) {
            Some(h) if b < 128 => h.clone(),
            _ if b < 128 && !self.model.lent.is_empty() => {
                self.model.lent[usize::from(b) % self.model.lent.len()].clone()
            }
            _ => format!("h{}", b % 8),
        }
    }

    async fn act(&mut self, action: &Action) {
        match action {
            Action::Initialize { flags } => {
                self.send_frame(&request(&Id::Int(0), "tether/initialize", initialize_params(*flags))).await;
            }
            Action::KvPut { id, key: k, len, progress } => {
                let id = id_of(*id);
                let value: Vec<u8> = (0..*len).collect();
                let mut params = json!({"key": key(*k), "value": tether::spec::Bytes::from(value)});
                if *progress {
                    params["_meta"] = json!({"progressToken": id_json(&id)});
                }
                self.send_frame(&request(&id, "kv.put", params)).await;
            }
            Action::KvGet { id, key: k } => {
                self.send_frame(&request(&id_of(*id), "kv.get", json!({"key": key(*k)}))).await;
            }
            Action::KvDelete { id, key: k } => {
                self.send_frame(&request(&id_of(*id), "kv.delete", json!({"key": key(*k)}))).await;
            }
            Action::CounterPut { id, key: k, value, handle } => {
                let value = match value {
                    255 => i64::MAX,
                    254 => i64::MIN,
                    v => i64::from(*v as i8),
                };
                let adder = match handle {
                    200..=255 => json!({"$handle": 5, "interface": "adder"}),
                    h => json!({"$handle": format!("h{}", h % 4), "interface": "adder"}),
                };
                let params = json!({"key": key(*k), "value": value, "adder": adder});
                self.send_frame(&request(&id_of(*id), "counter.put", params)).await;
            }
            Action::CounterGet { id, key: k } => {
                self.send_frame(&request(&id_of(*id), "counter.get", json!({"key": key(*k)}))).await;
            }
            Action::Lend { id } => self.send_frame(&request(&id_of(*id), "lender.lend", json!({}))).await,
            Action::Invoke { id, handle, variant } => {
                let handle = self.handle_ref(*handle);
                let params = match variant % 5 {
                    0 => json!({"handle": handle, "method": "sum", "params": {"a": 2, "b": 3}}),
                    1 => json!({"handle": handle, "method": "sum", "params": {"a": i64::MAX, "b": 1}}),
                    2 => json!({"handle": handle, "method": "sum", "params": {"a": "x"}}),
                    3 => json!({"handle": handle, "method": "mul", "params": {}}),
                    _ => json!({"method": "sum"}),
                };
                self.send_frame(&request(&id_of(*id), "tether/invoke", params)).await;
            }
            Action::Retain { id, handle } => {
                let handle = self.handle_ref(*handle);
                self.send_frame(&request(&id_of(*id), "tether/retain", json!({"handle": handle}))).await;
            }
            Action::Release { handle } => {
                let handle = self.handle_ref(*handle);
                self.send_frame(&notification("$/release", json!({"handle": handle}))).await;
            }
            Action::Cancel { target } => {
                let params = json!({"id": id_json(&id_of(*target))});
                self.send_frame(&notification("$/cancelRequest", params)).await;
            }
            Action::Call { id, variant } => self.send_frame(&call_body(&id_of(*id), *variant)).await,
            Action::Notify { variant } => self.send_frame(&notify_body(*variant)).await,
            Action::Answer { pick, kind } => self.answer(*pick, *kind).await,
            Action::Garbage(bytes) => self.send(bytes).await,
            Action::Frame(body) => {
                let body = match parse_message(body) {
                    Ok(Message::Request(r)) if r.method == "tether/initialize" => {
                        request(&r.id, &r.method, initialize_params(0))
                    }
                    _ => body.clone(),
                };
                self.send_frame(&body).await;
            }
            Action::Partial { len } => {
                let head = br#"{"jsonrpc":"2.0","id":"#;
                let header = format!("Content-Length: {}\r\n\r\n", head.len() + usize::from(*len));
                self.send(&[header.as_bytes(), head].concat()).await;
            }
            Action::Oversized { id } => {
                if self.oversized_sent {
                    return;
                }
                self.oversized_sent = true;
                let mut body = request(&id_of(*id), "kv.put", json!({"key": "big", "value": ""}));
                let tail = body.split_off(body.len() - 3);
                body.resize(MAX_FRAME + 1 - tail.len(), b'A');
                body.extend_from_slice(&tail);
                self.send_frame(&body).await;
            }
            Action::Settle => self.settle().await,
            Action::Close => {}
        }
    }
}

/// The runtime every input runs on: built once, current-thread, with time paused (the clock
/// jumps to the next timer whenever nothing else can run, so a grace period costs nothing).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap_or_else(|e| panic!("cannot build the runtime: {e}"))
    })
}

/// Runs one fuzz input and checks every invariant; panics (the fuzzer's crash) on a violation.
pub fn check(data: &[u8]) {
    // One input at a time on the shared runtime (the stable test runs tests on several threads),
    // so that the count of live tasks is this input's.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    runtime().block_on(run(Program::decode(data)));
}

/// Runs a program against a fresh plugin session. A session that hangs (nothing can run and
/// the end never comes) fails after an hour of the paused clock, which costs no real time.
pub async fn run(program: Program) {
    let hang = std::time::Duration::from_secs(3600);
    if tokio::time::timeout(hang, run_checked(program)).await.is_err() {
        panic!("the session hung: nothing could run and the program had not ended");
    }
}

async fn run_checked(program: Program) {
    let (ours, theirs) = tokio::io::duplex(program.pipe);
    let (pr, pw) = tokio::io::split(theirs);
    let session = plugin().start(pr, pw);
    let (r, w) = tokio::io::split(ours);
    let mut peer = Peer {
        r,
        w,
        inbuf: BytesMut::new(),
        reader: FrameCodec::builder().strict().max_frame_size(MAX_FRAME).build(),
        eof: false,
        mirror: FrameCodec::builder().max_frame_size(MAX_FRAME).build(),
        mirror_buf: BytesMut::new(),
        model: Model::default(),
        plugin: session.peer().clone(),
        oversized_sent: false,
    };
    for action in &program.actions {
        if *action == Action::Close {
            break;
        }
        peer.act(action).await;
        assert!(!peer.eof, "the plugin ended its output before its input ended");
    }
    // The end of input: the plugin reads what is left, cancels what runs, answers and closes.
    while let Ok(Some(frame)) = peer.mirror.decode_eof(&mut peer.mirror_buf) {
        peer.model.mirror(frame);
    }
    peer.w.shutdown().await.unwrap_or_else(|e| panic!("cannot close the plugin's input: {e}"));
    while !peer.eof {
        let read = peer.r.read_buf(&mut peer.inbuf).await;
        peer.on_read(read);
    }
    assert!(peer.inbuf.is_empty(), "the plugin's output ended inside a frame");
    let plugin = peer.plugin.clone();
    let reason = session.join().await;
    let kind = if peer.model.truncated { CloseKind::Truncated } else { CloseKind::EndOfInput };
    assert_eq!(reason.kind, kind, "the session ended for another reason: {reason}");
    let m = &peer.model;
    for (id, n) in &m.expected {
        let got = m.answered.get(id).copied().unwrap_or(0);
        assert_eq!(got, *n, "id {id}: {n} requests, {got} answers");
    }
    assert_eq!(m.answered_null, m.expected_null, "answers with a null id");
    let d = plugin.diagnostics();
    assert_eq!(
        (d.pending, d.incoming, d.polling, d.handles, d.streams, d.backlog),
        (0, 0, 0, 0, 0, 0),
        "the closed session still holds {d:?}"
    );
    let freed = plugin.downgrade();
    drop(plugin);
    drop(peer);
    // Every task of the session has ended (reader, writer, handlers).
    for _ in 0..QUIET_ROUNDS {
        tokio::task::yield_now().await;
    }
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert_eq!(alive, 0, "{alive} tasks still alive after the session ended");
    // Nothing keeps the ended session: with its tasks gone and our peers dropped, its memory is
    // freed (a reference cycle through the session's own service would keep it forever).
    assert!(freed.upgrade().is_none(), "the ended session was not freed: something still holds it");
}
