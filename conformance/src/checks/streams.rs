//! The judge's side of streams (SPEC.md §12): a session opened with `attachments` and `streams`,
//! and a book of every stream in it, which produces chunks within the plugin's credit, consumes
//! and counts the plugin's chunks against the credit the judge granted, and keeps the answers
//! that arrive meanwhile.

use std::collections::BTreeMap;
use std::time::Instant;

use tether_spec::{Capabilities, StreamsCapability};

use super::*;

/// The window the judge grants in the credit and slow-reader checks: small, so that a producer
/// has to wait for credit after a few chunks.
pub(super) const SMALL_WINDOW: u64 = 64 * 1024;

/// A stream the judge consumes.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    /// The bytes received, when kept.
    pub(super) data: Vec<u8>,
    /// Whether to keep them (a large stream is only counted).
    pub(super) keep: bool,
    /// Every byte received.
    pub(super) received: u64,
    /// Credit the producer still has, as the judge counts it.
    pub(super) remaining: u64,
    /// The first chunk larger than the remaining credit (§12.3.3).
    pub(super) over_credit: Option<String>,
    /// `$/stream.end` arrived.
    pub(super) ended: bool,
    /// Data that came after `$/stream.end`.
    pub(super) after_end: u64,
    /// `$/stream.abort` from the plugin.
    pub(super) aborted: Option<ErrorObject>,
    /// The judge aborted it; bytes counted in `received` from then on too.
    pub(super) judge_aborted: bool,
}

/// A stream the judge produces.
#[derive(Debug, Default)]
struct Outgoing {
    credit: u64,
    aborted: Option<ErrorObject>,
}

/// Every stream of a session, and the answers read while driving them.
pub(super) struct Book {
    /// The judge's `initialCredit` (its window on each stream it consumes).
    pub(super) window: u64,
    /// The plugin's `initialCredit`.
    plugin_credit: u64,
    /// Both sides announced `attachments`: chunks go as attachments.
    attachments: bool,
    next_id: u64,
    /// Whether the judge grants credit as it consumes (off: a stalled reader).
    pub(super) granting: bool,
    pub(super) incoming: BTreeMap<u64, Incoming>,
    outgoing: BTreeMap<u64, Outgoing>,
    responses: Vec<Response>,
    /// The ids of the streams the plugin opened, in order (duplicates kept).
    pub(super) plugin_ids: Vec<u64>,
}

/// The judge's capabilities in a stream scenario: `attachments` when `attachments` is true, and
/// `streams` with `window` as its initial credit.
pub(super) fn capabilities(attachments: bool, window: u64) -> Capabilities {
    let mut caps = Capabilities::new();
    if attachments {
        caps.attachments = Capabilities::all().attachments;
    }
    caps.streams = Some(StreamsCapability { initial_credit: Some(window) });
    caps
}

impl Ctx {
    /// Starts a plugin and initializes it announcing `caps`; the plugin must announce `streams`.
    pub(super) async fn open_streams(
        &self,
        caps: Capabilities,
    ) -> Result<(Session, Book), (Failure, Option<Session>)> {
        let mut s = self.open().map_err(|f| (f, None))?;
        let window = caps.streams.as_ref().map_or(0, StreamsCapability::initial_credit);
        let params = crate::driver::init_params_with(&self.offer(), LogLevel::Info, caps);
        let resp = match s.initialize(&params, self.t()).await {
            Ok(r) => r,
            Err(e) => return Err((Failure::from(e), Some(s))),
        };
        let result = match expect_result(&resp, "tether/initialize") {
            Ok(r) => r,
            Err(f) => return Err((f, Some(s))),
        };
        let theirs: Capabilities = result
            .get("capabilities")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let Some(streams) = theirs.streams else {
            let f = Failure::new("the plugin declares blob but did not announce the streams capability")
                .expected("capabilities.streams in the initialize answer when the host offered it")
                .got(show_bytes(result.to_string().as_bytes(), 300))
                .fix("announce {\"streams\": {\"initialCredit\": N}} when the host does: blob needs streams (§9.5, §10.2)");
            return Err((f, Some(s)));
        };
        let book = Book {
            window,
            plugin_credit: streams.initial_credit(),
            attachments: s.attachments_on(),
            next_id: 1,
            granting: true,
            incoming: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            responses: Vec::new(),
            plugin_ids: Vec::new(),
        };
        Ok((s, book))
    }
}

/// Runs a scenario body in a fresh session with streams.
macro_rules! stream_scenario {
    ($ctx:ident, $caps:expr, |$s:ident, $b:ident| $body:block) => {{
        let (mut $s, mut $b) = match $ctx.open_streams($caps).await {
            Ok(x) => x,
            Err(e) => return $ctx.fail_open(e).await,
        };
        let r: Result<(), Failure> = async { $body }.await;
        $ctx.close($s, r).await
    }};
}
pub(super) use stream_scenario;

/// The `{"$stream": n, ...}` ids anywhere in a value.
fn streams_in(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Object(map) => {
            if let Some(id) = map.get("$stream").and_then(Value::as_u64) {
                out.push(id);
            }
            map.values().for_each(|v| streams_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| streams_in(v, out)),
        _ => {}
    }
}

fn stream_of(params: &Value) -> Option<u64> {
    params.get("stream").and_then(Value::as_u64)
}

impl Book {
    /// A fresh odd id for a stream the judge opens (§12.1).
    pub(super) fn open_out(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 2;
        self.outgoing.insert(id, Outgoing { credit: self.plugin_credit, aborted: None });
        id
    }

    /// Keeps the bytes of the plugin's stream `id` (instead of only counting them).
    pub(super) fn keep(&mut self, id: u64) {
        if let Some(i) = self.incoming.get_mut(&id) {
            i.keep = true;
        }
    }

    /// Reads one message and applies it to the book; `Err` when none came before `deadline`.
    async fn step(&mut self, s: &mut Session, deadline: Instant, what: &str) -> Result<(), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = s.recv(left).await.map_err(|e| recv_failure(s, what, e))?;
        match msg {
            Message::Response(r) => {
                if let Outcome::Result(raw) = &r.outcome {
                    let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                    let mut ids = Vec::new();
                    streams_in(&v, &mut ids);
                    for id in ids {
                        self.plugin_ids.push(id);
                        let remaining = self.window;
                        self.incoming.insert(id, Incoming { remaining, ..Incoming::default() });
                    }
                }
                self.responses.push(r);
            }
            Message::Notification(n) => {
                let p: Value = serde_json::from_str(n.params.get()).unwrap_or(Value::Null);
                let Some(id) = stream_of(&p) else { return Ok(()) };
                match n.method.as_str() {
                    "$/stream.data" => {
                        let text = p.get("data").and_then(Value::as_str).unwrap_or_default();
                        let data = STANDARD.decode(text).map_err(|e| {
                            Failure::new(format!(
                                "$/stream.data of stream {id} has data that is not bytes: {e}"
                            ))
                            .got(show_bytes(text.as_bytes(), 120))
                            .fix("send chunks as padded base64 or as an attachment (§12.2, §5.3)")
                        })?;
                        self.on_data(s, id, &data).await?;
                    }
                    "$/stream.end" => {
                        if let Some(i) = self.incoming.get_mut(&id) {
                            i.ended = true;
                        }
                    }
                    "$/stream.abort" => {
                        let e: Option<ErrorObject> =
                            p.get("error").and_then(|e| serde_json::from_value(e.clone()).ok());
                        let e = e.unwrap_or_else(|| tether_spec::stream_error(id, "(no error object)"));
                        if let Some(i) = self.incoming.get_mut(&id) {
                            i.aborted = Some(e.clone());
                        }
                        if let Some(o) = self.outgoing.get_mut(&id) {
                            o.aborted = Some(e);
                        }
                    }
                    "$/stream.credit" => {
                        if let Some(o) = self.outgoing.get_mut(&id) {
                            o.credit =
                                o.credit.saturating_add(p.get("bytes").and_then(Value::as_u64).unwrap_or(0));
                        }
                    }
                    _ => {}
                }
            }
            // A request of the plugin (an invoke): nothing in these checks hands out a handle.
            Message::Request(_) => {}
        }
        Ok(())
    }

    async fn on_data(&mut self, s: &mut Session, id: u64, data: &[u8]) -> Result<(), Failure> {
        let Some(i) = self.incoming.get_mut(&id) else { return Ok(()) };
        let n = data.len() as u64;
        if i.ended {
            i.after_end += n;
            return Ok(());
        }
        if n > i.remaining && i.over_credit.is_none() && !i.judge_aborted {
            i.over_credit = Some(format!(
                "a chunk of {n} bytes on stream {id} with {} bytes of credit left ({} bytes received before it, window {})",
                i.remaining, i.received, self.window
            ));
        }
        i.remaining = i.remaining.saturating_sub(n);
        i.received += n;
        if i.keep && !i.judge_aborted {
            i.data.extend_from_slice(data);
        }
        // Grant as the data is consumed (§12.3.5): top the window up once half of it is used.
        if self.granting && !i.judge_aborted && i.remaining < self.window / 2 {
            let grant = self.window - i.remaining;
            i.remaining = self.window;
            s.notify("$/stream.credit", json!({"stream": id, "bytes": grant})).await?;
        }
        Ok(())
    }

    /// Grants again after a stall: tops stream `id`'s window up at once.
    pub(super) async fn resume(&mut self, s: &mut Session, id: u64) -> Result<(), Failure> {
        self.granting = true;
        if let Some(i) = self.incoming.get_mut(&id) {
            let grant = self.window - i.remaining.min(self.window);
            if grant > 0 {
                i.remaining = self.window;
                s.notify("$/stream.credit", json!({"stream": id, "bytes": grant})).await?;
            }
        }
        Ok(())
    }

    /// Aborts stream `id` (the judge's own or the plugin's) with -32006 (§12.4).
    pub(super) async fn abort(&mut self, s: &mut Session, id: u64) -> Result<(), Failure> {
        if let Some(i) = self.incoming.get_mut(&id) {
            i.judge_aborted = true;
        }
        if let Some(o) = self.outgoing.get_mut(&id) {
            o.aborted = Some(tether_spec::stream_error(id, "the judge aborted the stream"));
        }
        let error = tether_spec::stream_error(id, "the judge aborted the stream");
        s.notify("$/stream.abort", json!({"stream": id, "error": error})).await?;
        Ok(())
    }

    /// Sends one chunk of the judge's stream `id`, as an attachment when negotiated.
    async fn send_chunk(&mut self, s: &mut Session, id: u64, chunk: &[u8]) -> Result<(), Failure> {
        if self.attachments {
            let params = json!({"stream": id, "data": {"$bytes": 0}});
            let msg = Message::Notification(tether_spec::Notification::new(
                "$/stream.data",
                crate::driver::raw(&params),
            ));
            s.send_attached(&msg, &[bytes::Bytes::copy_from_slice(chunk)]).await?;
        } else {
            s.notify("$/stream.data", json!({"stream": id, "data": b64(chunk)})).await?;
        }
        Ok(())
    }

    /// Sends `data` on the judge's stream `id` in chunks of at most `chunk` bytes, never more
    /// than the plugin's credit (waiting for `$/stream.credit`), then `$/stream.end` unless
    /// `end` is false. Stops early, without failing, when the plugin aborts the stream.
    pub(super) async fn produce(
        &mut self,
        s: &mut Session,
        id: u64,
        data: &[u8],
        chunk: usize,
        end: bool,
        t: Duration,
    ) -> Result<(), Failure> {
        let mut sent = 0;
        let deadline = Instant::now() + t;
        while sent < data.len() {
            let (credit, aborted) =
                self.outgoing.get(&id).map_or((0, true), |o| (o.credit, o.aborted.is_some()));
            if aborted {
                return Ok(());
            }
            if credit == 0 {
                self.step(s, deadline, &format!("$/stream.credit for stream {id}")).await.map_err(|f| {
                    f.expected(format!(
                        "$/stream.credit for stream {id} after the judge sent {sent} of {} bytes",
                        data.len()
                    ))
                    .fix("grant credit as the handler reads the stream (§12.3.2, §12.3.5)")
                })?;
                continue;
            }
            let n = chunk.min(data.len() - sent).min(usize::try_from(credit).unwrap_or(usize::MAX));
            self.send_chunk(s, id, &data[sent..sent + n]).await?;
            if let Some(o) = self.outgoing.get_mut(&id) {
                o.credit -= n as u64;
            }
            sent += n;
        }
        if end {
            s.notify("$/stream.end", json!({"stream": id})).await?;
        }
        Ok(())
    }

    /// Waits for the answer to `id`, driving streams meanwhile.
    pub(super) async fn response(
        &mut self,
        s: &mut Session,
        id: &Id,
        what: &str,
        t: Duration,
    ) -> Result<Response, Failure> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(at) = self.responses.iter().position(|r| r.id.as_ref() == Some(id)) {
                return Ok(self.responses.remove(at));
            }
            self.step(s, deadline, what).await?;
        }
    }

    /// Sends a request and waits for its answer, driving streams meanwhile.
    pub(super) async fn call(
        &mut self,
        s: &mut Session,
        method: &str,
        params: Value,
        t: Duration,
    ) -> Result<Response, Failure> {
        let id = s.request(method, params).await?;
        self.response(s, &id, method, t).await
    }

    /// Reads until `done` holds for stream `id` (or the plugin aborted it).
    pub(super) async fn read_until(
        &mut self,
        s: &mut Session,
        id: u64,
        t: Duration,
        what: &str,
        done: impl Fn(&Incoming) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + t;
        loop {
            let Some(i) = self.incoming.get(&id) else {
                return Err(Failure::new(format!("stream {id} is not one the plugin opened")));
            };
            if let Some(e) = &i.aborted {
                return Err(Failure::new(format!(
                    "the plugin aborted stream {id} after {} bytes: {} {}",
                    i.received, e.code, e.message
                ))
                .expected(what.to_owned())
                .fix("send the whole stream, then $/stream.end (§12.2)"));
            }
            if done(i) {
                return Ok(());
            }
            let received = i.received;
            self.step(s, deadline, what).await.map_err(|f| Failure {
                summary: format!("{} (stream {id}: {received} bytes received)", f.summary),
                ..f
            })?;
        }
    }

    /// Waits until the producer of stream `id` has stopped for want of credit: it used the whole
    /// credit, or a ping round trip brought no data (a producer MAY wait for more credit before
    /// it uses what is left, §12.3.3), or the stream ended.
    pub(super) async fn wait_stall(&mut self, s: &mut Session, id: u64, t: Duration) -> Result<(), Failure> {
        self.read_until(s, id, t, &format!("data on stream {id}"), |i| i.received > 0 || i.ended).await?;
        loop {
            let Some(i) = self.incoming.get(&id) else { return Ok(()) };
            if i.ended || i.remaining == 0 || i.over_credit.is_some() {
                return Ok(());
            }
            let before = i.received;
            self.call(s, "tether/ping", json!({}), t).await?;
            if self.incoming.get(&id).is_some_and(|i| i.received == before) {
                return Ok(());
            }
        }
    }

    /// Reads stream `id` to `$/stream.end`, which must come after exactly `size` bytes: `t` for
    /// the bytes, then `end_t` for the end (a plugin may write the end on another thread, later
    /// than answers to other requests, so only a time-out tells that it never comes).
    pub(super) async fn read_to_end(
        &mut self,
        s: &mut Session,
        id: u64,
        size: u64,
        t: Duration,
        end_t: Duration,
    ) -> Result<(), Failure> {
        let what = format!("all {size} bytes of stream {id}, then $/stream.end");
        self.read_until(s, id, t, &what, |i| i.ended || i.received >= size).await?;
        let fix = "send exactly the stream's bytes, then $/stream.end, and nothing after it (§12.2, §9.5)";
        // Its own failure (a time-out) is told below with what was received.
        let _ = self.read_until(s, id, end_t, &what, |i| i.ended || i.received > size).await;
        let Some(i) = self.incoming.get(&id) else { return Ok(()) };
        if !i.ended && i.received == size {
            return Err(Failure::new(format!(
                "no $/stream.end on stream {id} within {} ms of its last byte ({size} bytes)",
                end_t.as_millis()
            ))
            .expected(what)
            .got(format!("{} bytes, then nothing for {} ms", i.received, end_t.as_millis()))
            .fix(fix));
        }
        if i.received != size {
            return Err(Failure::new(format!("stream {id} carried {} bytes, expected {size}", i.received))
                .expected(what)
                .fix(fix));
        }
        // Data written after the end shows before the answer to a request sent after it.
        self.call(s, "tether/ping", json!({}), t).await?;
        let after = self.incoming.get(&id).map_or(0, |i| i.after_end);
        if after > 0 {
            return Err(Failure::new(format!("{after} bytes of data on stream {id} after its $/stream.end"))
                .expected(what)
                .fix(fix));
        }
        Ok(())
    }
}

/// The first stream id in a result (`data` of `blob.download` and `blob.produce`).
pub(super) fn result_stream(r: &Response, what: &str) -> Result<(Value, u64), Failure> {
    let v = expect_result(r, what)?;
    let id = v.pointer("/data/$stream").and_then(Value::as_u64).ok_or_else(|| {
        Failure::new(format!("the {what} result has no stream in `data`"))
            .expected("{\"data\": {\"$stream\": <even id>, \"mode\": \"read\"}, ...}")
            .got(show_response(r))
            .fix("answer with the stream in `data` (§9.5, §12.1)")
    })?;
    Ok((v, id))
}

/// Lowercase hex of the SHA-256 of `data`.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
