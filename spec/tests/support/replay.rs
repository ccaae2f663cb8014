//! The replay algorithm of `transcripts/README.md`, played against an in-memory plugin.

use std::collections::{BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use serde_json::Value;

use super::plugin::RefPlugin;
use super::transcript::{Dir, Transcript, WireFrame};

/// Error codes whose `data` Appendix A fixes; replayers compare `data` for these only.
pub const FIXED_DATA_CODES: &[i64] = &[-32001, -32003, -32004, 1001, 1002];

/// What the replayer needs from a plugin.
pub trait Plugin {
    /// Write one frame body to its stdin; returns what it wrote to stdout in answer.
    fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>>;
    /// Close its stdin; returns what it wrote before exiting.
    fn eof(&mut self) -> Vec<Vec<u8>>;
    /// Write one frame, possibly with attachments (SPEC.md §2.8); returns the frames it wrote in
    /// answer. The default serves plugins that never negotiate attachments.
    fn feed_frame(&mut self, frame: &WireFrame) -> Vec<WireFrame> {
        self.feed(&frame.body).into_iter().map(WireFrame::plain).collect()
    }
}

impl Plugin for RefPlugin {
    fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>> {
        RefPlugin::feed(self, body)
    }
    fn eof(&mut self) -> Vec<Vec<u8>> {
        RefPlugin::eof(self)
    }
    fn feed_frame(&mut self, frame: &WireFrame) -> Vec<WireFrame> {
        RefPlugin::feed_frame(self, frame)
    }
}

/// Rule (a): every `{"$bytes": i}` replaced by the base64 of attachment `i`, so that a value
/// compares equal in either form. A reference to a missing attachment stays as it is.
pub fn resolve_attachments(value: &mut Value, attachments: &[Vec<u8>]) {
    match value {
        Value::Object(m) => {
            let index = (m.len() == 1).then(|| m.get("$bytes").and_then(Value::as_u64)).flatten();
            if let Some(a) = index.and_then(|i| attachments.get(usize::try_from(i).ok()?)) {
                *value = Value::String(base64::engine::general_purpose::STANDARD.encode(a));
                return;
            }
            m.values_mut().for_each(|v| resolve_attachments(v, attachments));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| resolve_attachments(v, attachments)),
        _ => {}
    }
}

/// A frame's JSON with its attachments resolved (rule (a)).
fn resolved(body: &[u8], attachments: &[Vec<u8>]) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(body)?;
    resolve_attachments(&mut v, attachments);
    Ok(v)
}

fn method_of(v: &Value) -> Option<&str> {
    v.get("method").and_then(Value::as_str)
}

/// The stream ids of a message with their JSON pointers: every `$stream` member, and
/// `params.stream` of a `$/stream.*` notification (rule (b)).
fn stream_ids(v: &Value) -> Vec<(String, u64)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, u64)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if k == "$stream" {
                        if let Some(id) = v.as_u64() {
                            out.push((p.clone(), id));
                        }
                    }
                    walk(v, &p, out);
                }
            }
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| walk(v, &format!("{path}/{i}"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    if method_of(v).is_some_and(|m| m.starts_with("$/stream.")) {
        if let Some(id) = v.pointer("/params/stream").and_then(Value::as_u64) {
            out.push(("/params/stream".into(), id));
        }
    }
    out
}

/// Rewrites the plugin-chosen (even) stream ids of `v` that `bindings` knows.
fn rebind_streams(v: &mut Value, bindings: &HashMap<u64, u64>) {
    for (path, id) in stream_ids(v) {
        if let (true, Some(bound), Some(slot)) = (id % 2 == 0, bindings.get(&id), v.pointer_mut(&path)) {
            *slot = Value::from(*bound);
        }
    }
}

struct State {
    /// Transcript id of a plugin request -> the id the plugin used (rule 4).
    bindings: HashMap<String, Value>,
    /// Host request id (as JSON text) -> method, to recognise the initialize result.
    host_requests: HashMap<String, String>,
    /// Transcript id of a plugin-opened stream -> the id the plugin used (rule (b)).
    streams: HashMap<u64, u64>,
}

fn key(id: &Value) -> String {
    id.to_string()
}

impl State {
    /// Rule 4 on a `-->` frame: rewrite a response to a bound id and a `$/cancelRequest` of one.
    fn rewrite_outgoing(&self, body: &[u8]) -> Vec<u8> {
        let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) else {
            return body.to_vec();
        };
        let mut changed = false;
        let is_response = !m.contains_key("method") && (m.contains_key("result") || m.contains_key("error"));
        if is_response {
            if let Some(bound) = m.get("id").and_then(|id| self.bindings.get(&key(id))) {
                m.insert("id".into(), bound.clone());
                changed = true;
            }
        }
        if m.get("method").and_then(Value::as_str) == Some("$/cancelRequest") {
            if let Some(params) = m.get_mut("params").and_then(Value::as_object_mut) {
                if let Some(bound) = params.get("id").and_then(|id| self.bindings.get(&key(id))) {
                    params.insert("id".into(), bound.clone());
                    changed = true;
                }
            }
        }
        let mut v = Value::Object(m);
        let before = v.clone();
        rebind_streams(&mut v, &self.streams);
        changed |= v != before;
        let Value::Object(m) = v else { return body.to_vec() };
        if changed {
            serde_json::to_vec(&Value::Object(m)).expect("serializable")
        } else {
            body.to_vec()
        }
    }

    fn remember(&mut self, body: &[u8]) {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            if let (Some(id), Some(method)) = (m.get("id"), m.get("method").and_then(Value::as_str)) {
                self.host_requests.insert(key(id), method.to_owned());
            }
        }
    }

    /// Rule 3 with rule (b): whether `actual` matches `expected` once the plugin's stream ids
    /// are bound; returns the new stream bindings the match implies.
    fn matches_binding(&self, expected: &Value, actual: &Value) -> Option<HashMap<u64, u64>> {
        let mut e = expected.clone();
        rebind_streams(&mut e, &self.streams);
        let mut fresh = HashMap::new();
        for (path, id) in stream_ids(&e) {
            if id % 2 == 0 && !self.streams.contains_key(&id) {
                let got = actual.pointer(&path).and_then(Value::as_u64)?;
                if got % 2 != 0 || fresh.insert(id, got).is_some_and(|g| g != got) {
                    return None;
                }
            }
        }
        rebind_streams(&mut e, &fresh);
        self.matches(&e, actual).then_some(fresh)
    }

    /// Rule 3: whether `actual` matches `expected`.
    fn matches(&self, expected: &Value, actual: &Value) -> bool {
        let (Some(e), Some(a)) = (expected.as_object(), actual.as_object()) else {
            return expected == actual;
        };
        let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<BTreeSet<_>>();
        if keys(e) != keys(a) || e.get("jsonrpc") != a.get("jsonrpc") {
            return false;
        }
        let method = e.get("method").and_then(Value::as_str);
        if let Some(method) = method {
            if a.get("method") != e.get("method") {
                return false;
            }
            if e.contains_key("id") {
                // A request of the plugin: its id is not compared (rule 3), only its type.
                let id_ok = a.get("id").is_some_and(|id| id.is_i64() || id.is_string());
                return id_ok && e.get("params") == a.get("params");
            }
            if method == "$/log" {
                let (ep, ap) = (&e["params"], &a["params"]);
                let key_ok = match ep.pointer("/fields/key") {
                    Some(k) => ap.pointer("/fields/key") == Some(k),
                    None => true,
                };
                return ep.get("level") == ap.get("level")
                    && ap.get("message").is_some_and(Value::is_string)
                    && key_ok;
            }
            if method == "$/cancelRequest" {
                let mut ep = e["params"].clone();
                if let Some(bound) = ep.get("id").and_then(|id| self.bindings.get(&key(id))) {
                    ep["id"] = bound.clone();
                }
                return ep == a["params"];
            }
            return e.get("params") == a.get("params");
        }
        // A response.
        if e.get("id") != a.get("id") {
            return false;
        }
        if let (Some(ee), Some(ae)) = (e.get("error"), a.get("error")) {
            let code = ee.get("code");
            if code != ae.get("code") || !ae.get("message").is_some_and(Value::is_string) {
                return false;
            }
            let fixed = code.and_then(Value::as_i64).is_some_and(|c| FIXED_DATA_CODES.contains(&c));
            return !fixed || ee.get("data") == ae.get("data");
        }
        let initialize = e.get("id").and_then(|id| self.host_requests.get(&key(id))).map(String::as_str)
            == Some("tether/initialize");
        if initialize {
            return initialize_summary(&e["result"]) == initialize_summary(&a["result"]);
        }
        e.get("result") == a.get("result")
    }
}

/// What a replayer compares of an initialize result: the core version, and each interface's
/// version and method names.
fn initialize_summary(result: &Value) -> Option<(Value, Vec<(String, Value, BTreeSet<String>)>)> {
    let interfaces = result.get("interfaces")?.as_object()?;
    let mut list = Vec::new();
    for (name, i) in interfaces {
        let methods = i.get("methods")?.as_object()?.keys().cloned().collect();
        list.push((name.clone(), i.get("version")?.clone(), methods));
    }
    list.sort_by(|x, y| x.0.cmp(&y.0));
    Some((result.get("protocolVersion")?.clone(), list))
}

fn is_credit(v: &Value) -> bool {
    method_of(v) == Some("$/stream.credit")
}

fn is_data(v: &Value) -> bool {
    method_of(v) == Some("$/stream.data")
}

/// The decoded bytes of a resolved `$/stream.data` frame.
fn chunk(v: &Value) -> Vec<u8> {
    let text = v.pointer("/params/data").and_then(Value::as_str).unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
}

/// Replays a transcript against a plugin, as the README says a replayer does.
pub fn replay(t: &Transcript, plugin: &mut dyn Plugin) -> Result<(), String> {
    let mut state =
        State { bindings: HashMap::new(), host_requests: HashMap::new(), streams: HashMap::new() };
    let mut stdout: VecDeque<WireFrame> = VecDeque::new();
    let mut i = 0;
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let shown = |q: &VecDeque<WireFrame>| q.iter().map(|f| show(&f.body)).collect::<Vec<_>>();
    while i < t.blocks.len() {
        let block = &t.blocks[i];
        if block.dir == Dir::ToPlugin {
            let body = state.rewrite_outgoing(&block.body);
            state.remember(&block.body);
            stdout.extend(plugin.feed_frame(&WireFrame { body, attachments: block.attachments.clone() }));
            i += 1;
            continue;
        }
        let start = i;
        while i < t.blocks.len() && t.blocks[i].dir == Dir::ToHost {
            i += 1;
        }
        // The group without the plugin's credit (rule (c)); data per stream is compared as one
        // concatenation (rule (d)).
        let mut expected: Vec<(usize, Value)> = Vec::new();
        let mut expected_data: Vec<(u64, Vec<u8>)> = Vec::new();
        for (n, b) in t.blocks[start..i].iter().enumerate() {
            let v = resolved(&b.body, &b.attachments).map_err(|e| format!("{}:{}: {e}", t.name, b.line))?;
            if is_credit(&v) {
                continue;
            }
            if is_data(&v) {
                let id = v.pointer("/params/stream").and_then(Value::as_u64).unwrap_or(0);
                match expected_data.iter_mut().find(|(s, _)| *s == id) {
                    Some((_, bytes)) => bytes.extend(chunk(&v)),
                    None => expected_data.push((id, chunk(&v))),
                }
                continue;
            }
            expected.push((start + n, v));
        }
        let data_total: usize = expected_data.iter().map(|(_, d)| d.len()).sum();
        let mut actual: Vec<Value> = Vec::new();
        let mut actual_data: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut got_data = 0;
        while actual.len() < expected.len() || got_data < data_total {
            let Some(frame) = stdout.pop_front() else {
                return Err(format!(
                    "{}:{}: expected {} frames and {data_total} bytes of stream data, the plugin wrote {} frames and {got_data} bytes: {:?}",
                    t.name,
                    t.blocks[start].line,
                    expected.len(),
                    actual.len(),
                    actual
                ));
            };
            let v = resolved(&frame.body, &frame.attachments)
                .map_err(|e| format!("the plugin wrote bad JSON {}: {e}", show(&frame.body)))?;
            if is_credit(&v) {
                continue;
            }
            if is_data(&v) {
                let id = v.pointer("/params/stream").and_then(Value::as_u64).unwrap_or(0);
                let bytes = chunk(&v);
                got_data += bytes.len();
                match actual_data.iter_mut().find(|(s, _)| *s == id) {
                    Some((_, all)) => all.extend(bytes),
                    None => actual_data.push((id, bytes)),
                }
                continue;
            }
            actual.push(v);
        }
        let mut used = vec![false; actual.len()];
        for (n, e) in &expected {
            let found = (0..actual.len())
                .find_map(|k| (!used[k]).then(|| state.matches_binding(e, &actual[k]).map(|b| (k, b)))?);
            let Some((k, fresh)) = found else {
                return Err(format!(
                    "{}:{}: no frame of the group matches {e}; the plugin wrote {actual:?}",
                    t.name, t.blocks[*n].line
                ));
            };
            used[k] = true;
            state.streams.extend(fresh);
            if e.get("method").is_some() {
                if let Some(id) = e.get("id") {
                    state.bindings.insert(key(id), actual[k]["id"].clone());
                }
            }
        }
        for (id, bytes) in &expected_data {
            let bound = if id % 2 == 0 { state.streams.get(id).copied() } else { Some(*id) };
            let got = bound.and_then(|b| actual_data.iter().find(|(s, _)| *s == b));
            if got.map(|(_, d)| d) != Some(bytes) {
                return Err(format!(
                    "{}:{}: stream {id} should carry {} bytes here, the plugin sent {:?}",
                    t.name,
                    t.blocks[start].line,
                    bytes.len(),
                    got.map(|(_, d)| show(d))
                ));
            }
        }
        if actual_data.len() != expected_data.len() {
            return Err(format!(
                "{}:{}: data on streams the transcript does not expect here",
                t.name, t.blocks[start].line
            ));
        }
    }
    stdout.extend(plugin.eof().into_iter().map(WireFrame::plain));
    stdout.retain(|f| !serde_json::from_slice::<Value>(&f.body).is_ok_and(|v| is_credit(&v)));
    if !stdout.is_empty() {
        return Err(format!(
            "{}: the plugin wrote frames that the transcript does not expect: {:?}",
            t.name,
            shown(&stdout)
        ));
    }
    Ok(())
}
