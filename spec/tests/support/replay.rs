//! The replay algorithm of `transcripts/README.md`, played against an in-memory plugin.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde_json::Value;

use super::plugin::RefPlugin;
use super::transcript::{Dir, Transcript};

/// Error codes whose `data` Appendix A fixes; replayers compare `data` for these only.
pub const FIXED_DATA_CODES: &[i64] = &[-32001, -32003, -32004, 1001];

/// What the replayer needs from a plugin.
pub trait Plugin {
    /// Write one frame body to its stdin; returns what it wrote to stdout in answer.
    fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>>;
    /// Close its stdin; returns what it wrote before exiting.
    fn eof(&mut self) -> Vec<Vec<u8>>;
}

impl Plugin for RefPlugin {
    fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>> {
        RefPlugin::feed(self, body)
    }
    fn eof(&mut self) -> Vec<Vec<u8>> {
        RefPlugin::eof(self)
    }
}

struct State {
    /// Transcript id of a plugin request -> the id the plugin used (rule 4).
    bindings: HashMap<String, Value>,
    /// Host request id (as JSON text) -> method, to recognise the initialize result.
    host_requests: HashMap<String, String>,
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

/// Replays a transcript against a plugin, as the README says a replayer does.
pub fn replay(t: &Transcript, plugin: &mut dyn Plugin) -> Result<(), String> {
    let mut state = State { bindings: HashMap::new(), host_requests: HashMap::new() };
    let mut stdout: VecDeque<Vec<u8>> = VecDeque::new();
    let mut i = 0;
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    while i < t.blocks.len() {
        let block = &t.blocks[i];
        if block.dir == Dir::ToPlugin {
            let body = state.rewrite_outgoing(&block.body);
            state.remember(&block.body);
            stdout.extend(plugin.feed(&body));
            i += 1;
            continue;
        }
        let start = i;
        while i < t.blocks.len() && t.blocks[i].dir == Dir::ToHost {
            i += 1;
        }
        let expected: Vec<Value> = t.blocks[start..i]
            .iter()
            .map(|b| serde_json::from_slice(&b.body).map_err(|e| format!("{}:{}: {e}", t.name, b.line)))
            .collect::<Result<_, _>>()?;
        if stdout.len() < expected.len() {
            return Err(format!(
                "{}:{}: expected {} frames, the plugin wrote {}: {:?}",
                t.name,
                t.blocks[start].line,
                expected.len(),
                stdout.len(),
                stdout.iter().map(|b| show(b)).collect::<Vec<_>>()
            ));
        }
        let actual: Vec<Value> = stdout
            .drain(..expected.len())
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("the plugin wrote bad JSON {}: {e}", show(&b)))
            })
            .collect::<Result<_, _>>()?;
        let mut used = vec![false; actual.len()];
        for (n, e) in expected.iter().enumerate() {
            let found = (0..actual.len()).find(|&k| !used[k] && state.matches(e, &actual[k]));
            let Some(k) = found else {
                return Err(format!(
                    "{}:{}: no frame of the group matches {e}; the plugin wrote {actual:?}",
                    t.name,
                    t.blocks[start + n].line
                ));
            };
            used[k] = true;
            if e.get("method").is_some() {
                if let Some(id) = e.get("id") {
                    state.bindings.insert(key(id), actual[k]["id"].clone());
                }
            }
        }
    }
    stdout.extend(plugin.eof());
    if !stdout.is_empty() {
        return Err(format!(
            "{}: the plugin wrote frames that the transcript does not expect: {:?}",
            t.name,
            stdout.iter().map(|b| show(b)).collect::<Vec<_>>()
        ));
    }
    Ok(())
}
