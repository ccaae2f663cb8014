//! One fuzz session: a fresh plugin, initialized; bursts of inputs written as they are; and after
//! each burst the health checks: the plugin is alive, answers `tether/ping` (and, when it
//! implements `kv`, a `kv.put` and the `kv.get` that reads it back), every answer to a tracked
//! input is what the spec requires, and every byte it wrote was a frame holding a valid message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tether_spec::format::show_bytes;
use tether_spec::{ErrorObject, Id, LogLevel, Message, Outcome, Response};

use super::mutate::{declared_lengths, Expect, Item};
use crate::driver::{init_params, CookieMode, PluginSpec, RecvError, Session};

/// How a fuzz session starts: the plugin, what the judge offers, and the waits.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The plugin to start.
    pub(crate) spec: PluginSpec,
    /// The interfaces and versions offered in `tether/initialize`.
    pub(crate) offer: Vec<(String, Vec<u32>)>,
    /// The `maxFrameSize` announced (the spec's minimum, so that oversized frames stay cheap).
    pub(crate) max_frame: usize,
    /// The time allowed for each answer.
    pub(crate) timeout: Duration,
}

/// How a plugin failed, to compare a minimizer's trial with the original failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// It exited, or closed its stdout, or stopped reading its stdin.
    Exited,
    /// It did not answer a health check in time.
    Silent,
    /// It wrote bytes that are not a frame in the writer form of §2.2.
    NotAFrame,
    /// It wrote a frame whose body is not a valid message of the Tether profile.
    BadMessage,
    /// It answered, but not as the spec requires.
    WrongAnswer,
}

impl FaultKind {
    /// Its name in reports and replay files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Exited => "exited",
            FaultKind::Silent => "silent",
            FaultKind::NotAFrame => "not-a-frame",
            FaultKind::BadMessage => "bad-message",
            FaultKind::WrongAnswer => "wrong-answer",
        }
    }
}

/// A failure after a burst.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    /// Its kind.
    pub(crate) kind: FaultKind,
    /// What happened, in one or two lines.
    pub(crate) detail: String,
    /// The last lines of the plugin's stderr.
    pub(crate) stderr: String,
}

/// A running plugin under fuzz.
pub(crate) struct Plugin {
    s: Session,
    kv: bool,
    round: u64,
    violations_seen: usize,
    bad_seen: usize,
    timeout: Duration,
}

impl Plugin {
    /// Starts the plugin and initializes it; an error says why it could not be.
    pub(crate) async fn start(setup: &Setup) -> Result<Plugin, String> {
        let mut s = Session::start(&setup.spec, CookieMode::Set, false).map_err(|e| e.to_string())?;
        let offer: Vec<(&str, Vec<u32>)> = setup.offer.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let mut params = init_params(&offer, LogLevel::Info);
        params.max_frame_size = setup.max_frame as u64;
        let resp = s.initialize(&params, setup.timeout).await.map_err(|e| e.to_string())?;
        let result = match resp.outcome {
            Outcome::Result(r) => serde_json::from_str::<Value>(r.get()).unwrap_or(Value::Null),
            Outcome::Error(e) => {
                return Err(format!("tether/initialize answered error {}: {}", e.code, e.message))
            }
        };
        let kv = result.pointer("/interfaces/kv").is_some();
        Ok(Plugin { s, kv, round: 0, violations_seen: 0, bad_seen: 0, timeout: setup.timeout })
    }

    /// Writes the items, then the tail, then runs the health checks.
    pub(crate) async fn burst(&mut self, items: &[Item], max_frame: usize) -> Result<(), Fault> {
        self.round += 1;
        let mut expects: HashMap<String, Expect> = HashMap::new();
        for item in items {
            if let Some((id, e)) = &item.expect {
                expects.insert(id.clone(), e.clone());
            }
            if let Err(e) = self.s.send_wire(&item.wire).await {
                return Err(self.exited(&format!("while the judge wrote the burst: {e}")).await);
            }
        }
        if let Some(tail) = tail(items, max_frame) {
            if let Err(e) = self.s.send_wire(&tail).await {
                return Err(self.exited(&format!("while the judge wrote the burst: {e}")).await);
            }
        }
        self.health(&mut expects).await
    }

    async fn health(&mut self, expects: &mut HashMap<String, Expect>) -> Result<(), Fault> {
        let round = self.round;
        let ping = Id::Str(format!("judge-health-{round}-ping"));
        self.send_request(ping.clone(), "tether/ping", json!({})).await?;
        let r = self.wait(&ping, expects, "tether/ping").await?;
        if !matches!(r.outcome, Outcome::Result(_)) {
            return Err(self.wrong(&format!("tether/ping after the burst was answered {}", shown(&r))));
        }
        if self.kv {
            let key = format!("judge-health-{round}");
            let value = STANDARD.encode(format!("health check {round}: \u{1}\u{2}\u{ff}"));
            let put = Id::Str(format!("judge-health-{round}-put"));
            self.send_request(put.clone(), "kv.put", json!({"key": key, "value": value})).await?;
            let r = self.wait(&put, expects, "kv.put").await?;
            if !matches!(r.outcome, Outcome::Result(_)) {
                return Err(self.wrong(&format!("kv.put after the burst was answered {}", shown(&r))));
            }
            let get = Id::Str(format!("judge-health-{round}-get"));
            self.send_request(get.clone(), "kv.get", json!({"key": key})).await?;
            let r = self.wait(&get, expects, "kv.get").await?;
            let got = match &r.outcome {
                Outcome::Result(raw) => serde_json::from_str::<Value>(raw.get())
                    .ok()
                    .and_then(|v| v.get("value").and_then(Value::as_str).map(str::to_owned)),
                Outcome::Error(_) => None,
            };
            if got.as_deref() != Some(value.as_str()) {
                return Err(self.wrong(&format!(
                    "kv.get of the key just put did not return its value {value:?}: {}",
                    shown(&r)
                )));
            }
        }
        self.clean()?;
        if let Some(status) = self.s.try_status() {
            return Err(
                self.fault(FaultKind::Exited, &format!("the plugin exited ({status}) after answering"))
            );
        }
        Ok(())
    }

    async fn send_request(&mut self, id: Id, method: &str, params: Value) -> Result<(), Fault> {
        match self.s.request_with_id(id, method, params).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.exited(&format!("while the judge wrote {method} after the burst: {e}")).await),
        }
    }

    /// Reads until the answer to `id`, judging every tracked answer on the way.
    async fn wait(
        &mut self,
        id: &Id,
        expects: &mut HashMap<String, Expect>,
        what: &str,
    ) -> Result<Response, Fault> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.s.recv(left).await {
                Ok(Message::Response(r)) if r.id.as_ref() == Some(id) => return Ok(r),
                Ok(Message::Response(r)) => {
                    let Some(Id::Str(key)) = &r.id else { continue };
                    let Some(expect) = expects.remove(key) else { continue };
                    let ok = match (&expect, &r.outcome) {
                        (Expect::Error(code), Outcome::Error(e)) => e.code == *code,
                        (Expect::Result, Outcome::Result(_)) => true,
                        _ => false,
                    };
                    if !ok {
                        let want = match expect {
                            Expect::Error(code) => format!("error {code}"),
                            Expect::Result => "a result".to_owned(),
                            Expect::NoAnswer => {
                                "no answer at all (a response is never answered, §3.4.3)".to_owned()
                            }
                        };
                        return Err(
                            self.wrong(&format!("the input with id {key:?} needs {want}; got {}", shown(&r)))
                        );
                    }
                }
                Ok(Message::Request(r)) => {
                    // An invoke of a handle from a fuzzed call: the judge serves no handle.
                    let handle = serde_json::from_str::<Value>(r.params.get())
                        .ok()
                        .and_then(|v| v.get("handle").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    let _ = self.s.respond_err(Some(r.id), ErrorObject::unknown_handle(&handle)).await;
                }
                Ok(Message::Notification(_)) => {}
                Err(RecvError::Timeout) => {
                    self.clean()?;
                    return Err(self.fault(
                        FaultKind::Silent,
                        &format!(
                            "no answer to {what} after the burst within {} ms",
                            self.timeout.as_millis()
                        ),
                    ));
                }
                Err(RecvError::Closed) => {
                    self.clean()?;
                    return Err(self.exited(&format!("before answering {what} after the burst")).await);
                }
                Err(RecvError::NotAFrame(v)) => {
                    return Err(
                        self.fault(FaultKind::NotAFrame, &format!("instead of answering {what}: {v}"))
                    );
                }
            }
        }
    }

    /// Fails on bytes that were not frames, or frames that were not valid messages, seen so far.
    fn clean(&mut self) -> Result<(), Fault> {
        if let Some(v) = self.s.obs.stdout_violations.get(self.violations_seen).cloned() {
            self.violations_seen = self.s.obs.stdout_violations.len();
            return Err(self
                .fault(FaultKind::NotAFrame, &format!("the plugin wrote bytes that are not a frame: {v}")));
        }
        if let Some(b) = self.s.obs.bad_messages.get(self.bad_seen).cloned() {
            self.bad_seen = self.s.obs.bad_messages.len();
            return Err(self.fault(
                FaultKind::BadMessage,
                &format!("the plugin wrote a frame that is not a valid message: {b}"),
            ));
        }
        Ok(())
    }

    fn fault(&self, kind: FaultKind, detail: &str) -> Fault {
        Fault { kind, detail: detail.to_owned(), stderr: self.s.stderr_tail(12) }
    }

    fn wrong(&self, detail: &str) -> Fault {
        self.fault(FaultKind::WrongAnswer, detail)
    }

    /// The plugin is gone (or stopped reading): how it ended, when it did.
    async fn exited(&mut self, when: &str) -> Fault {
        let status = self.s.exits_within(Duration::from_secs(2)).await;
        // Its stderr may still be arriving: the last lines usually say why it ended.
        self.s.wait_stderr_eof(Duration::from_secs(1)).await;
        let how = match status {
            Some(status) => format!("the plugin exited ({status}) {when}"),
            None => format!("the plugin closed its stdout or stopped reading its stdin {when}"),
        };
        self.fault(FaultKind::Exited, &how)
    }

    /// Ends the session (closes stdin, kills the process group).
    pub(crate) async fn finish(self) {
        let _ = self.s.finish(Duration::from_millis(200)).await;
    }
}

fn shown(r: &Response) -> String {
    show_bytes(&Message::Response(r.clone()).to_body(), 300)
}

/// Whether `wire` is exactly one frame in the writer form of §2.2 (its length right).
fn single_frame(wire: &[u8]) -> bool {
    let Some(rest) = wire.strip_prefix(b"Content-Length: ".as_slice()) else { return false };
    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let digits = &rest[..end];
    let n = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<usize>().ok());
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && n == Some(rest.len() - end - 4)
}

/// What the judge writes after a burst that was not made of whole frames only, so that the health
/// check's frames are read whatever state the burst left the plugin's reader in (§2.6): as many
/// bytes as the longest length the burst declared (they complete a body the reader is still
/// reading, which is then not JSON: -32700), then a line end, so that the next `Content-Length`
/// starts a line for a reader that resynchronises at line starts only. Bytes left over are not a
/// frame, and the reader skips them up to the health check's frame. `x` is no JSON and no header
/// block can end in it.
pub(crate) fn tail(items: &[Item], max_frame: usize) -> Option<Vec<u8>> {
    if items.iter().all(|i| single_frame(&i.wire)) {
        return None;
    }
    let longest = items
        .iter()
        .flat_map(|i| declared_lengths(&i.wire).filter(|&n| n <= max_frame).collect::<Vec<_>>())
        .max()
        .unwrap_or(0);
    let mut tail = vec![b'x'; longest];
    tail.extend_from_slice(b"\r\n");
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::super::mutate::frame;
    use super::*;

    fn item(wire: &[u8]) -> Item {
        Item { wire: wire.to_vec(), kind: "test", expect: None }
    }

    #[test]
    fn whole_frames_need_no_tail_and_a_cut_frame_gets_its_length_of_filler() {
        assert!(tail(&[item(&frame(b"{}")), item(&frame(b"[]"))], 1 << 20).is_none());
        let t = tail(&[item(&frame(b"{}")), item(b"Content-Length: 40\r\n\r\n{")], 1 << 20);
        assert_eq!(t.map(|t| t.len()), Some(42));
        assert!(!single_frame(b"Content-Length: 3\r\n\r\n{}"));
        assert!(!single_frame(b"Content-Length: +2\r\n\r\n{}"));
    }

    /// The spec's own lenient reader, after any burst and its tail, reads the next frame.
    #[test]
    fn after_any_burst_and_its_tail_the_next_frame_is_read() {
        use tokio_util::codec::Decoder as _;
        let seeds = super::super::corpus::seeds().unwrap_or_default();
        let max = tether_spec::MIN_MAX_FRAME_SIZE;
        let mut g = super::super::mutate::Gen::new(11, seeds, max);
        for _ in 0..300 {
            let items: Vec<Item> = (0..20).map(|_| g.item()).collect();
            let mut wire = bytes::BytesMut::new();
            for i in &items {
                wire.extend_from_slice(&i.wire);
            }
            if let Some(t) = tail(&items, max) {
                wire.extend_from_slice(&t);
            }
            let health = br#"{"jsonrpc":"2.0","id":"judge-health","method":"tether/ping","params":{}}"#;
            wire.extend_from_slice(&frame(health));
            let mut codec = tether_spec::FrameCodec::builder().max_frame_size(max).build();
            let mut found = false;
            while let Ok(Some(f)) = codec.decode(&mut wire) {
                if matches!(&f, tether_spec::Frame::Message(b) if &b[..] == health) {
                    found = true;
                }
            }
            let kinds: Vec<&str> = items.iter().map(|i| i.kind).collect();
            assert!(found, "the health frame was not read after {kinds:?}");
        }
    }
}
