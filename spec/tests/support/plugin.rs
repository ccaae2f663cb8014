//! A reference plugin for the replay self-test: synchronous and in memory, written with
//! tether-spec's types only. It implements `kv` versions 1 and 2 or `counter` version 1 as
//! SPEC.md §9 says; `feed` takes one frame body from the host and returns the bodies the plugin
//! writes in answer, in order.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use tether_spec::interfaces::{counter, kv};
use tether_spec::{
    codes, highest_common, parse_message, split_method, CancelParams, CancelRequest, ErrorObject, Id,
    InitializeParams, InitializeResult, Invoke, InvokeParams, Log, LogLevel, LogParams, Message,
    NegotiatedInterface, Notification, NotificationMethod, Outcome, PeerInfo, Request, RequestMethod,
    Response, SetLogLevel, SetLogLevelParams, VersionMismatch, PROTOCOL_VERSION,
};

/// Which example plugin to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `kv` 1 and 2.
    Kv,
    /// `counter` 1.
    Counter,
}

impl Kind {
    /// From a transcript's `# plugin:` line.
    pub fn from_name(name: &str) -> Kind {
        if name == "counter" {
            Kind::Counter
        } else {
            Kind::Kv
        }
    }

    fn interface(self) -> (&'static str, &'static [u32]) {
        match self {
            Kind::Kv => (kv::NAME, kv::VERSIONS),
            Kind::Counter => (counter::NAME, counter::VERSIONS),
        }
    }
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
    out: Vec<Vec<u8>>,
}

fn raw<T: Serialize>(value: &T) -> Box<RawValue> {
    to_raw_value(value).expect("serializable")
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
            out: Vec::new(),
        }
    }

    /// Reads one frame body; returns what the plugin writes.
    pub fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>> {
        match parse_message(body) {
            Err(e) => {
                if let Some(reply) = e.reply() {
                    self.write(Message::Response(reply));
                }
            }
            Ok(Message::Request(r)) => self.request(r),
            Ok(Message::Notification(n)) => self.notification(n),
            Ok(Message::Response(r)) => self.response(r),
        }
        std::mem::take(&mut self.out)
    }

    /// End of stdin: what the plugin writes before it exits (nothing: it cancels and leaves).
    pub fn eof(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out)
    }

    fn write(&mut self, message: Message) {
        self.out.push(message.to_body());
    }

    fn answer(&mut self, id: Id, outcome: Result<Box<RawValue>, ErrorObject>) {
        let response = match outcome {
            Ok(result) => Response::ok(id, result),
            Err(error) => Response::error(Some(id), error),
        };
        self.write(Message::Response(response));
    }

    fn notify<N: NotificationMethod>(&mut self, params: &N::Params) {
        self.write(Message::Notification(Notification::new(N::METHOD, raw(params))));
    }

    fn request(&mut self, r: Request) {
        let id = r.id.clone();
        let outcome = self.handle(r);
        if let Some(outcome) = outcome {
            self.answer(id, outcome);
        }
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
        let methods = match self.kind {
            Kind::Kv => kv::methods(version),
            Kind::Counter => counter::methods(version),
        };
        if !methods.contains_key(short) {
            let has: Vec<String> = versions
                .iter()
                .filter(|&&v| match self.kind {
                    Kind::Kv => kv::methods(v).contains_key(short),
                    Kind::Counter => counter::methods(v).contains_key(short),
                })
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
                self.store.insert(p.key, p.value.into_vec());
                raw(&serde_json::Map::new())
            }),
            kv::Get::METHOD => params::<kv::KeyParams>(&r).and_then(|p| match self.store.get(&p.key) {
                Some(v) => Ok(raw(&kv::GetResult { value: v.clone().into() })),
                None => Err(kv::key_not_found(&p.key)),
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
            let methods = match self.kind {
                Kind::Kv => kv::methods(version),
                Kind::Counter => counter::methods(version),
            };
            interfaces.insert(name.to_owned(), NegotiatedInterface { version, methods });
            chosen = Some(version);
        }
        self.session = Some(chosen);
        self.log_level = p.log_level.unwrap_or_default();
        let plugin = match self.kind {
            Kind::Kv => "kv-reference",
            Kind::Counter => "counter-reference",
        };
        Ok(raw(&InitializeResult {
            protocol_version,
            plugin: PeerInfo::new(plugin, "0.1.0"),
            capabilities: Default::default(),
            interfaces,
        }))
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
                    self.answer(p.id, Err(ErrorObject::cancelled()));
                }
            }
            SetLogLevel::METHOD => {
                if let Ok(p) = serde_json::from_str::<SetLogLevelParams>(n.params.get()) {
                    self.log_level = p.level;
                }
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
