//! A reference plugin for the replay self-test: synchronous and in memory, written with
//! tether-spec's types only. It implements `kv` versions 1 and 2, `counter` version 1 or `blob`
//! version 1 as SPEC.md §9 says, with attachments (§2.8) and streams with credit (§12) when the
//! host announces them; `feed_frame` takes one frame from the host and returns the frames the
//! plugin writes in answer, in order. Its application reads every chunk as it arrives.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use sha2::{Digest as _, Sha256};
use tether_spec::interfaces::{blob, counter, kv};
use tether_spec::{
    codes, highest_common, parse_message, split_method, stream_error, with_attachment_sink,
    with_attachment_source, CancelParams, CancelRequest, Capabilities, ErrorObject, Id, InitializeParams,
    InitializeResult, Invoke, InvokeParams, Log, LogLevel, LogParams, Message, NegotiatedInterface,
    Notification, NotificationMethod, Outcome, PeerInfo, Progress, ProgressParams, Request, RequestMethod,
    Response, SetLogLevel, SetLogLevelParams, StreamAbort, StreamAbortParams, StreamCredit,
    StreamCreditParams, StreamData, StreamDataParams, StreamEnd, StreamMode, StreamParams, StreamRef,
    VersionMismatch, DEFAULT_INITIAL_CREDIT, MAX_CHUNK, PROTOCOL_VERSION,
};

use super::transcript::WireFrame;

/// Which example plugin to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `kv` 1 and 2.
    Kv,
    /// `counter` 1.
    Counter,
    /// `blob` 1.
    Blob,
}

impl Kind {
    /// From a transcript's `# plugin:` line.
    pub fn from_name(name: &str) -> Kind {
        match name {
            "counter" => Kind::Counter,
            "blob" => Kind::Blob,
            _ => Kind::Kv,
        }
    }

    fn interface(self) -> (&'static str, &'static [u32]) {
        match self {
            Kind::Kv => (kv::NAME, kv::VERSIONS),
            Kind::Counter => (counter::NAME, counter::VERSIONS),
            Kind::Blob => (blob::NAME, blob::VERSIONS),
        }
    }

    fn methods(self, version: u32) -> BTreeMap<String, tether_spec::MethodSchema> {
        match self {
            Kind::Kv => kv::methods(version),
            Kind::Counter => counter::methods(version),
            Kind::Blob => blob::methods(version),
        }
    }
}

/// What the plugin does with a stream it reads.
enum Sink {
    /// `blob.upload`: store under this name.
    Store(String),
    /// `blob.count`: only count.
    Count,
}

/// A stream the host produces and the plugin consumes.
struct Consumer {
    /// The request that carried it, answered when the stream ends.
    request: Id,
    sink: Sink,
    data: Vec<u8>,
    /// Bytes the host may still send before more credit.
    credit: u64,
    /// Bytes consumed since the last grant.
    consumed: u64,
}

/// A stream the plugin produces and the host consumes.
struct Producer {
    data: Vec<u8>,
    sent: usize,
    credit: u64,
}

struct PendingPut {
    key: String,
    invoke: i64,
}

/// The plugin's state.
pub struct RefPlugin {
    kind: Kind,
    /// The negotiated version of the plugin's interface, once initialized.
    session: Option<Option<u32>>,
    log_level: LogLevel,
    shutting_down: bool,
    store: BTreeMap<String, Vec<u8>>,
    counters: BTreeMap<String, i64>,
    next_id: i64,
    /// Puts waiting for their `sum`, by the host's request id.
    puts: BTreeMap<Id, PendingPut>,
    /// Attachments negotiated (from the initialize answer on).
    attachments: bool,
    /// The host's `initialCredit` when streams are negotiated.
    host_credit: Option<u64>,
    blobs: BTreeMap<String, Vec<u8>>,
    consumers: BTreeMap<u64, Consumer>,
    producers: BTreeMap<u64, Producer>,
    /// Every stream id the host opened, to refuse a reused one.
    host_streams: std::collections::BTreeSet<u64>,
    next_stream: u64,
    /// The attachments of the message being built (SPEC.md §2.8).
    sink: Vec<bytes::Bytes>,
    out: Vec<WireFrame>,
}

fn raw<T: Serialize>(value: &T) -> Box<RawValue> {
    to_raw_value(value).expect("serializable")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl RefPlugin {
    /// A fresh process.
    pub fn new(kind: Kind) -> Self {
        RefPlugin {
            kind,
            session: None,
            log_level: LogLevel::Info,
            shutting_down: false,
            store: BTreeMap::new(),
            counters: BTreeMap::new(),
            next_id: 1,
            puts: BTreeMap::new(),
            attachments: false,
            host_credit: None,
            blobs: BTreeMap::new(),
            consumers: BTreeMap::new(),
            producers: BTreeMap::new(),
            host_streams: std::collections::BTreeSet::new(),
            next_stream: 2,
            sink: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Reads one plain frame body; returns the bodies the plugin writes.
    pub fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>> {
        self.feed_frame(&WireFrame::plain(body.to_vec())).into_iter().map(|f| f.body).collect()
    }

    /// Reads one frame; returns the frames the plugin writes.
    pub fn feed_frame(&mut self, frame: &WireFrame) -> Vec<WireFrame> {
        if !frame.attachments.is_empty() && !self.attachments {
            // Not negotiated: the whole Content-Length is the body, which is not JSON (§2.8.5).
            let error = ErrorObject::new(codes::PARSE_ERROR, "parse error: attachments were not negotiated");
            self.write(Message::Response(Response::error(None, error)));
            return std::mem::take(&mut self.out);
        }
        let attachments: Vec<bytes::Bytes> =
            frame.attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
        // Params deserialize inside the frame's attachment scope (SPEC.md §2.8.2).
        with_attachment_source(&attachments, || match parse_message(&frame.body) {
            Err(e) => {
                if let Some(reply) = e.reply() {
                    self.write(Message::Response(reply));
                }
            }
            Ok(Message::Request(r)) => self.request(r),
            Ok(Message::Notification(n)) => self.notification(n),
            Ok(Message::Response(r)) => self.response(r),
        });
        std::mem::take(&mut self.out)
    }

    /// End of stdin: what the plugin writes before it exits (nothing: it cancels and leaves).
    pub fn eof(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out).into_iter().map(|f| f.body).collect()
    }

    /// Serializes a value for the next message: its `Bytes` become attachments once negotiated.
    fn value<T: Serialize>(&mut self, value: &T) -> Box<RawValue> {
        if self.attachments {
            let mut sink = std::mem::take(&mut self.sink);
            let raw = with_attachment_sink(&mut sink, || raw(value));
            self.sink = sink;
            raw
        } else {
            raw(value)
        }
    }

    fn write(&mut self, message: Message) {
        let attachments = std::mem::take(&mut self.sink).iter().map(|a| a.to_vec()).collect();
        self.out.push(WireFrame { body: message.to_body(), attachments });
    }

    fn answer(&mut self, id: Id, outcome: Result<Box<RawValue>, ErrorObject>) {
        let response = match outcome {
            Ok(result) => Response::ok(id, result),
            Err(error) => Response::error(Some(id), error),
        };
        self.write(Message::Response(response));
    }

    fn notify<N: NotificationMethod>(&mut self, params: &N::Params) {
        let params = self.value(params);
        self.write(Message::Notification(Notification::new(N::METHOD, params)));
    }

    fn request(&mut self, r: Request) {
        let id = r.id.clone();
        let outcome = self.handle(r);
        if let Some(outcome) = outcome {
            self.answer(id, outcome);
        }
        // Data of streams opened by the answer follows it (SPEC.md §12.2).
        self.pump();
    }

    /// `None` when the answer comes later (a put waiting for its sum).
    fn handle(&mut self, r: Request) -> Option<Result<Box<RawValue>, ErrorObject>> {
        let empty = || Ok(raw(&serde_json::Map::new()));
        let Some(version) = self.session else {
            if r.method == "tether/initialize" {
                return Some(self.initialize(&r));
            }
            return Some(Err(ErrorObject::not_initialized()));
        };
        if r.method == "tether/initialize" {
            return Some(Err(ErrorObject::new(
                codes::INVALID_REQUEST,
                "invalid request: the session is already initialized",
            )));
        }
        if self.shutting_down {
            return Some(Err(ErrorObject::shutting_down()));
        }
        match r.method.as_str() {
            "tether/ping" => return Some(empty()),
            "tether/shutdown" => {
                self.shutting_down = true;
                return Some(empty());
            }
            // This plugin serves no handles.
            "tether/invoke" => {
                return Some(
                    params::<InvokeParams>(&r).and_then(|p| Err(ErrorObject::unknown_handle(&p.handle))),
                )
            }
            "tether/retain" => {
                return Some(
                    params::<tether_spec::HandleParams>(&r)
                        .and_then(|p| Err(ErrorObject::unknown_handle(&p.handle))),
                )
            }
            m if m.starts_with("tether/") => {
                return Some(Err(ErrorObject::method_not_found(
                    m,
                    "not a method of Tether protocol version 1",
                )))
            }
            _ => {}
        }
        let (name, versions) = self.kind.interface();
        let Some((interface, short)) = split_method(&r.method) else {
            return Some(Err(ErrorObject::method_not_found(
                &r.method,
                "a method name is <interface>.<method>",
            )));
        };
        if interface != name {
            let reason = format!("this plugin does not implement interface {interface}");
            return Some(Err(ErrorObject::method_not_found(&r.method, reason)));
        }
        let Some(version) = version else {
            let reason = format!("interface {interface} was not negotiated in this session");
            return Some(Err(ErrorObject::method_not_found(&r.method, reason)));
        };
        let methods = self.kind.methods(version);
        if !methods.contains_key(short) {
            let has: Vec<String> = versions
                .iter()
                .filter(|&&v| self.kind.methods(v).contains_key(short))
                .map(u32::to_string)
                .collect();
            let reason = if has.is_empty() {
                format!("interface {interface} has no method {short}")
            } else {
                format!(
                    "{} needs {interface} version {}; this session uses {interface} version {version}",
                    r.method,
                    has.join(" or ")
                )
            };
            return Some(Err(ErrorObject::method_not_found(&r.method, reason)));
        }
        Some(match r.method.as_str() {
            kv::Put::METHOD => params::<kv::PutParams>(&r).map(|p| {
                if self.log_level <= LogLevel::Debug {
                    let fields = serde_json::json!({ "key": p.key, "bytes": p.value.len() });
                    self.notify::<Log>(&LogParams {
                        level: LogLevel::Debug,
                        message: "put".into(),
                        target: Some("kv".into()),
                        fields: fields.as_object().cloned(),
                    });
                }
                // Progress in the steps SPEC.md §9.1 fixes, for a caller that gave a token.
                let len = p.value.len() as u64;
                if let Some(token) = progress_token(&r) {
                    for done in kv::put_progress_steps(len) {
                        let done = Some(done);
                        let params =
                            ProgressParams { token: token.clone(), message: None, done, total: Some(len) };
                        self.notify::<Progress>(&params);
                    }
                }
                self.store.insert(p.key, p.value.into_vec());
                raw(&serde_json::Map::new())
            }),
            kv::Get::METHOD => {
                params::<kv::KeyParams>(&r).and_then(|p| match self.store.get(&p.key).cloned() {
                    Some(v) => Ok(self.value(&kv::GetResult { value: v.into() })),
                    None => Err(kv::key_not_found(&p.key)),
                })
            }
            blob::Upload::METHOD => {
                match params::<blob::UploadParams>(&r).and_then(|p| self.open_read(&p.data).map(|()| p)) {
                    Err(e) => Err(e),
                    Ok(p) => return self.consume(r.id.clone(), p.data.stream, Sink::Store(p.name)),
                }
            }
            blob::Count::METHOD => {
                match params::<blob::CountParams>(&r).and_then(|p| self.open_read(&p.data).map(|()| p)) {
                    Err(e) => Err(e),
                    Ok(p) => return self.consume(r.id.clone(), p.data.stream, Sink::Count),
                }
            }
            blob::Download::METHOD => {
                params::<blob::NameParams>(&r).and_then(|p| match self.blobs.get(&p.name).cloned() {
                    Some(data) => {
                        let size = data.len() as u64;
                        let data = self.produce(data);
                        Ok(self.value(&blob::DownloadResult { size, data }))
                    }
                    None => Err(blob::blob_not_found(&p.name)),
                })
            }
            blob::Produce::METHOD => params::<blob::ProduceParams>(&r).and_then(|p| {
                if p.size > 1 << 20 {
                    // In memory, this test plugin keeps what it produces; the transcripts ask little.
                    return Err(ErrorObject::invalid_params("this test plugin produces at most 1 MiB"));
                }
                let data = (0..p.size).map(blob::produced_byte).collect();
                let data = self.produce(data);
                Ok(self.value(&blob::ProduceResult { data }))
            }),
            kv::Delete::METHOD => params::<kv::KeyParams>(&r)
                .map(|p| raw(&kv::DeleteResult { existed: self.store.remove(&p.key).is_some() })),
            counter::Get::METHOD => params::<counter::GetParams>(&r)
                .map(|p| raw(&counter::GetResult { value: self.counters.get(&p.key).copied().unwrap_or(0) })),
            counter::Put::METHOD => match params::<counter::PutParams>(&r) {
                Err(e) => Err(e),
                Ok(p) => {
                    let invoke = self.next_id;
                    self.next_id += 1;
                    let a = self.counters.get(&p.key).copied().unwrap_or(0);
                    let sum = InvokeParams {
                        handle: p.adder.handle.clone(),
                        method: counter::Sum::METHOD.into(),
                        params: raw(&counter::SumParams { a, b: p.value }),
                    };
                    self.write(Message::Request(Request::new(Id::Int(invoke), Invoke::METHOD, raw(&sum))));
                    self.puts.insert(r.id.clone(), PendingPut { key: p.key, invoke });
                    return None;
                }
            },
            other => Err(ErrorObject::internal(format!("no handler for {other}"))),
        })
    }

    fn initialize(&mut self, r: &Request) -> Result<Box<RawValue>, ErrorObject> {
        let p: InitializeParams = params(r)?;
        let spoken = [PROTOCOL_VERSION];
        let Some(protocol_version) = highest_common(&p.protocol_versions, &spoken) else {
            return Err(VersionMismatch {
                interface: tether_spec::CORE_INTERFACE.into(),
                host: p.protocol_versions.clone(),
                plugin: spoken.to_vec(),
            }
            .to_error());
        };
        let (name, versions) = self.kind.interface();
        let mut interfaces = BTreeMap::new();
        let capabilities = Capabilities::answer_to(&p.capabilities, DEFAULT_INITIAL_CREDIT);
        let mut chosen = None;
        if let Some(offered) = p.interfaces.get(name) {
            let Some(version) = highest_common(offered, versions) else {
                return Err(VersionMismatch {
                    interface: name.into(),
                    host: offered.clone(),
                    plugin: versions.to_vec(),
                }
                .to_error());
            };
            let methods = self.kind.methods(version);
            interfaces.insert(name.to_owned(), NegotiatedInterface { version, methods });
            chosen = Some(version);
        }
        self.session = Some(chosen);
        self.log_level = p.log_level.unwrap_or_default();
        let plugin = match self.kind {
            Kind::Kv => "kv-reference",
            Kind::Counter => "counter-reference",
            Kind::Blob => "blob-reference",
        };
        let result = raw(&InitializeResult {
            protocol_version,
            plugin: PeerInfo::new(plugin, "0.1.0"),
            capabilities: capabilities.clone(),
            interfaces,
        });
        // In use from the next frame the plugin writes on (SPEC.md §2.8.3); this answer is written
        // before `feed_frame` returns, and holds no bytes.
        self.host_credit = capabilities.streams.and(p.capabilities.streams).map(|s| s.initial_credit());
        self.attachments = capabilities.attachments.is_some();
        Ok(result)
    }

    /// Checks a stream the host opened for the plugin to read (SPEC.md §12.1).
    fn open_read(&mut self, stream: &StreamRef) -> Result<(), ErrorObject> {
        if self.host_credit.is_none() {
            return Err(ErrorObject::invalid_params("streams were not negotiated in this session"));
        }
        if stream.stream % 2 == 0 || !self.host_streams.insert(stream.stream) {
            return Err(ErrorObject::invalid_params(format!(
                "stream {} is not a new id of the host (odd, never used)",
                stream.stream
            )));
        }
        if stream.mode != StreamMode::Read {
            return Err(ErrorObject::invalid_params("data must be a stream the plugin reads"));
        }
        Ok(())
    }

    /// Starts reading a stream; the request is answered when it ends.
    fn consume(
        &mut self,
        request: Id,
        stream: u64,
        sink: Sink,
    ) -> Option<Result<Box<RawValue>, ErrorObject>> {
        let consumer =
            Consumer { request, sink, data: Vec::new(), credit: DEFAULT_INITIAL_CREDIT, consumed: 0 };
        self.consumers.insert(stream, consumer);
        None
    }

    /// Opens a stream of `data` for the host to read, and sends what its credit allows once the
    /// answer that carries it is written (`pump` after the answer).
    fn produce(&mut self, data: Vec<u8>) -> StreamRef {
        let id = self.next_stream;
        self.next_stream += 2;
        let credit = self.host_credit.unwrap_or(0);
        self.producers.insert(id, Producer { data, sent: 0, credit });
        StreamRef::read(id)
    }

    /// Sends what credit allows on every stream the plugin produces, and ends finished ones.
    fn pump(&mut self) {
        let ids: Vec<u64> = self.producers.keys().copied().collect();
        for id in ids {
            while let Some(p) = self.producers.get_mut(&id) {
                let left = p.data.len() - p.sent;
                if left == 0 {
                    self.producers.remove(&id);
                    self.notify::<StreamEnd>(&StreamParams { stream: id });
                    break;
                }
                let n = left.min(MAX_CHUNK).min(usize::try_from(p.credit).unwrap_or(usize::MAX));
                if n == 0 {
                    break;
                }
                let chunk = p.data[p.sent..p.sent + n].to_vec();
                p.sent += n;
                p.credit -= n as u64;
                self.notify::<StreamData>(&StreamDataParams { stream: id, data: chunk.into() });
            }
        }
    }

    fn stream_notification(&mut self, method: &str, params: &RawValue) {
        match method {
            StreamData::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamDataParams>(params.get()) else { return };
                let Some(c) = self.consumers.get_mut(&p.stream) else { return };
                let len = p.data.len() as u64;
                if len > c.credit {
                    let error = stream_error(
                        p.stream,
                        format!("{len} bytes of data with {} bytes of credit", c.credit),
                    );
                    let Some(c) = self.consumers.remove(&p.stream) else { return };
                    self.notify::<StreamAbort>(&StreamAbortParams { stream: p.stream, error: error.clone() });
                    self.answer(c.request, Err(error));
                    return;
                }
                c.credit -= len;
                c.data.extend_from_slice(&p.data);
                // The application consumed the chunk at once: grant it back at half the window.
                c.consumed += len;
                if c.consumed >= DEFAULT_INITIAL_CREDIT / 2 {
                    let bytes = std::mem::take(&mut c.consumed);
                    c.credit += bytes;
                    self.notify::<StreamCredit>(&StreamCreditParams { stream: p.stream, bytes });
                }
            }
            StreamEnd::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamParams>(params.get()) else { return };
                let Some(c) = self.consumers.remove(&p.stream) else { return };
                let digest = blob::Digest { size: c.data.len() as u64, sha256: sha256_hex(&c.data) };
                if let Sink::Store(name) = c.sink {
                    self.blobs.insert(name, c.data);
                }
                self.answer(c.request, Ok(raw(&digest)));
            }
            StreamCredit::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamCreditParams>(params.get()) else { return };
                if let Some(producer) = self.producers.get_mut(&p.stream) {
                    producer.credit = producer.credit.saturating_add(p.bytes);
                    self.pump();
                }
            }
            StreamAbort::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamAbortParams>(params.get()) else { return };
                self.producers.remove(&p.stream);
                if let Some(c) = self.consumers.remove(&p.stream) {
                    let error =
                        stream_error(p.stream, format!("the host aborted the stream: {}", p.error.message));
                    self.answer(c.request, Err(error));
                }
            }
            _ => {}
        }
    }

    fn notification(&mut self, n: Notification) {
        if self.session.is_none() {
            return;
        }
        match n.method.as_str() {
            CancelRequest::METHOD => {
                let Ok(p) = serde_json::from_str::<CancelParams>(n.params.get()) else { return };
                if let Some(put) = self.puts.remove(&p.id) {
                    self.notify::<CancelRequest>(&CancelParams { id: Id::Int(put.invoke) });
                    self.answer(p.id.clone(), Err(ErrorObject::cancelled()));
                }
                // A cancelled upload or count: its stream is aborted at both ends without a
                // notification (SPEC.md §12.4.3), and nothing is stored.
                let stream = self.consumers.iter().find(|(_, c)| c.request == p.id).map(|(id, _)| *id);
                if let Some(consumer) = stream.and_then(|id| self.consumers.remove(&id)) {
                    self.answer(consumer.request, Err(ErrorObject::cancelled()));
                }
            }
            SetLogLevel::METHOD => {
                if let Ok(p) = serde_json::from_str::<SetLogLevelParams>(n.params.get()) {
                    self.log_level = p.level;
                }
            }
            m if m.starts_with("$/stream.") && self.host_credit.is_some() => {
                self.stream_notification(m, &n.params)
            }
            _ => {}
        }
    }

    fn response(&mut self, r: Response) {
        let Some(id) = r.id else { return };
        let Some(put_id) = self.puts.iter().find(|(_, p)| Id::Int(p.invoke) == id).map(|(k, _)| k.clone())
        else {
            // A response for an unknown id: ignored (SPEC.md §3.4).
            return;
        };
        let Some(put) = self.puts.remove(&put_id) else { return };
        let outcome = match r.outcome {
            Outcome::Result(result) => match serde_json::from_str::<counter::SumResult>(result.get()) {
                Ok(sum) => {
                    self.counters.insert(put.key, sum.result);
                    Ok(raw(&serde_json::Map::new()))
                }
                Err(e) => Err(ErrorObject::internal(format!("the adder's answer is malformed: {e}"))),
            },
            Outcome::Error(e) => Err(ErrorObject::internal(format!("the adder failed: {e}"))),
        };
        self.answer(put_id, outcome);
    }
}

fn params<T: DeserializeOwned>(r: &Request) -> Result<T, ErrorObject> {
    serde_json::from_str(r.params.get()).map_err(ErrorObject::invalid_params)
}

/// The `_meta.progressToken` of a request's params (SPEC.md §14.1), if any.
fn progress_token(r: &tether_spec::Request) -> Option<Id> {
    #[derive(serde::Deserialize)]
    struct MetaOnly {
        #[serde(rename = "_meta")]
        meta: Option<tether_spec::Meta>,
    }
    serde_json::from_str::<MetaOnly>(r.params.get()).ok()?.meta?.progress_token
}
