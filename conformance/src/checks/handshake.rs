//! Handshake: the probe, `tether/initialize` and version negotiation (§4.1-§4.4).

use super::*;

/// The probe: initialize offering every selected reference interface; judged as
/// `handshake.initialize`, and its result decides which other checks apply.
pub(crate) async fn probe(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let offer = ctx.offer();
    let mut found = None;
    let r: Result<(), Failure> = async {
        // Every capability is offered, so that the checks of attachments and streams know
        // whether the plugin announces them (§10.2); the probe itself only pings.
        let params = crate::driver::init_params_with(&offer, LogLevel::Info, tether_spec::Capabilities::all());
        s.offer_attachments();
        let started = std::time::Instant::now();
        let value = serde_json::to_value(&params).map_err(anyhow::Error::from)?;
        // A plugin that exited at once has closed its stdin: the write fails, and the diagnosis
        // says why it exited.
        let id = match s.request("tether/initialize", value).await {
            Ok(id) => id,
            Err(_) => return Err(diagnose::handshake(&mut s, RecvError::Closed, started.elapsed()).await),
        };
        // §4.1: nothing but $/log before the answer (recv keeps $/log aside).
        let first = match s.recv(ctx.t() + crate::driver::START_ALLOWANCE).await {
            Ok(m) => m,
            Err(e) => return Err(diagnose::handshake(&mut s, e, started.elapsed()).await),
        };
        let resp = match first {
            Message::Response(r) if r.id.as_ref() == Some(&id) => r,
            other => {
                return Err(Failure::new("the plugin sent something else before the initialize answer")
                    .expected("the answer to tether/initialize first (only $/log may come before it)")
                    .got(show_bytes(&other.to_body(), 300))
                    .fix("send nothing but the initialize answer and $/log until initialize is answered"))
            }
        };
        let result = expect_result(&resp, "tether/initialize")?;
        // A plugin that answers initialize and then nothing would make every later check wait out
        // its time-out: one ping decides whether the session works at all.
        let ping = s.request("tether/ping", json!({})).await?;
        let started = std::time::Instant::now();
        if let Err(e) = s.response(&ping, ctx.t()).await {
            let mut f = diagnose::handshake(&mut s, e, started.elapsed()).await;
            f.summary = f.summary.replace(
                "the handshake did not complete",
                "the plugin answered tether/initialize, but not the tether/ping after it",
            );
            return Err(f);
        }
        let interfaces = declared_interfaces(&result);
        let capabilities = result
            .get("capabilities")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        found = Some(Probe { interfaces, capabilities });
        let errors = crate::schema::initialize_result_errors(&result);
        if !errors.is_empty() {
            return Err(Failure::new(format!("the initialize result does not match the spec schema: {}", errors[0]))
                .expected("{protocolVersion, plugin: {name, version}, capabilities, interfaces: {name: {version, methods}}} (spec/schema/tether.schema.json, result:tether/initialize)")
                .got(show_bytes(result.to_string().as_bytes(), 400))
                .fix(errors.join("; ")));
        }
        expect_eq(result.get("protocolVersion").and_then(Value::as_u64), Some(1), "protocolVersion", "choose core version 1, the one offered")?;
        let offered: BTreeSet<&str> = offer.iter().map(|(n, _)| *n).collect();
        if let Some(map) = result.get("interfaces").and_then(Value::as_object) {
            for (name, iface) in map {
                if !offered.contains(name.as_str()) {
                    return Err(Failure::new(format!("the answer lists interface {name:?}, which was not offered"))
                        .expected(format!("only offered interfaces: {offered:?}"))
                        .fix("leave out every interface that was not offered (§4.3.3)"));
                }
                let version = iface.get("version").and_then(Value::as_u64).unwrap_or(0);
                // Which versions the plugin speaks is its own business (handshake.kv-v1 and
                // handshake.kv-v2 check the choice); the chosen one must have been offered.
                let offered_versions: Vec<u64> = offer
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.iter().copied().map(u64::from).collect())
                    .unwrap_or_default();
                if !offered_versions.contains(&version) {
                    return Err(Failure::new(format!("interface {name}: version {version} was not offered"))
                        .expected(format!("one of the offered versions {offered_versions:?}"))
                        .got(show_bytes(iface.to_string().as_bytes(), 300))
                        .fix("choose the highest version both sides speak (§4.3)"));
                }
            }
        }
        Ok(())
    }
    .await;
    let mut out = ctx.close(s, r).await;
    out.probe = found;
    out
}

fn declared_interfaces(result: &Value) -> BTreeMap<String, (u64, BTreeMap<String, Value>)> {
    let mut out = BTreeMap::new();
    if let Some(map) = result.get("interfaces").and_then(Value::as_object) {
        for (name, iface) in map {
            let version = iface.get("version").and_then(Value::as_u64).unwrap_or(0);
            let methods = iface
                .get("methods")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            out.insert(name.clone(), (version, methods));
        }
    }
    out
}

/// The SHA-256 of `ab` in lowercase hex: a `blob` digest as SPEC.md §9.5 writes it.
const SHA256_OF_AB: &str = "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603";

/// Sample params and results of the reference methods that a declared schema must accept.
fn samples(iface: &str, method: &str) -> (Vec<Value>, Vec<Value>) {
    match (iface, method) {
        ("kv", "put") => {
            (vec![json!({"key": "k", "value": "aGk="}), json!({"key": "k", "value": ""})], vec![json!({})])
        }
        ("kv", "get") => (vec![json!({"key": "k"})], vec![json!({"value": "aGk="})]),
        ("kv", "delete") => (vec![json!({"key": "k"})], vec![json!({"existed": true})]),
        ("counter", "put") => (vec![json!({"key": "k", "value": 5, "adder": adder("h1")})], vec![json!({})]),
        ("counter", "get") => (vec![json!({"key": "k"})], vec![json!({"value": 5})]),
        ("blob", "upload") => (
            vec![json!({"name": "n", "data": {"$stream": 1, "mode": "read"}})],
            vec![json!({"size": 2, "sha256": SHA256_OF_AB})],
        ),
        ("blob", "download") => {
            (vec![json!({"name": "n"})], vec![json!({"size": 2, "data": {"$stream": 2, "mode": "read"}})])
        }
        ("blob", "count") => (
            vec![json!({"data": {"$stream": 1, "mode": "read"}})],
            vec![json!({"size": 2, "sha256": SHA256_OF_AB})],
        ),
        ("blob", "produce") => (
            vec![json!({"size": 0}), json!({"size": 1})],
            vec![json!({"data": {"$stream": 2, "mode": "read"}})],
        ),
        _ => (vec![], vec![]),
    }
}

fn expected_methods(iface: &str, version: u64) -> Option<BTreeSet<&'static str>> {
    match (iface, version) {
        ("kv", 1) | ("counter", 1) => Some(BTreeSet::from(["put", "get"])),
        ("kv", 2) => Some(BTreeSet::from(["put", "get", "delete"])),
        ("blob", 1) => Some(BTreeSet::from(["upload", "download", "count", "produce"])),
        _ => None,
    }
}

fn method_schemas(probe: &Probe) -> Verdict {
    let r = (|| {
        for (iface, (version, methods)) in &probe.interfaces {
            if let Some(want) = expected_methods(iface, *version) {
                let got: BTreeSet<&str> = methods.keys().map(String::as_str).collect();
                expect_eq(
                    got,
                    want,
                    &format!("methods of {iface} v{version}"),
                    "declare exactly the methods of the negotiated version (§9)",
                )?;
            }
            for (name, m) in methods {
                for part in ["params", "result"] {
                    let Some(schema) = m.get(part) else {
                        return Err(Failure::new(format!("{iface}.{name} has no {part} schema"))
                            .expected("{\"params\": <JSON Schema>, \"result\": <JSON Schema>}")
                            .got(show_bytes(m.to_string().as_bytes(), 300))
                            .fix("declare both schemas for every method (§4.4)"));
                    };
                    if schema.get("type").and_then(Value::as_str) != Some("object") {
                        return Err(Failure::new(format!(
                            "the {part} schema of {iface}.{name} is not of type object"
                        ))
                        .expected("a JSON Schema with \"type\": \"object\"")
                        .got(show_bytes(schema.to_string().as_bytes(), 300))
                        .fix("params and results are objects: give a schema of type object (§4.4)"));
                    }
                    let validator = jsonschema::validator_for(schema).map_err(|e| {
                        Failure::new(format!("the {part} schema of {iface}.{name} does not compile: {e}"))
                            .got(show_bytes(schema.to_string().as_bytes(), 300))
                            .fix("give a valid JSON Schema (draft 2020-12)")
                    })?;
                    let (params, results) = samples(iface, name);
                    let cases = if part == "params" { params } else { results };
                    for case in cases {
                        if let Some(e) = validator.iter_errors(&case).next() {
                            return Err(Failure::new(format!(
                                "the {part} schema of {iface}.{name} rejects a valid {part} object"
                            ))
                            .expected(format!("{case} to be valid"))
                            .got(format!(
                                "{e} at {}; schema {}",
                                e.instance_path,
                                show_bytes(schema.to_string().as_bytes(), 300)
                            ))
                            .fix("describe the method's real shape (§9)"));
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    r.into()
}

async fn only_offered(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let offer = ctx.offer();
        let first = offer.first().cloned().ok_or_else(|| Failure::new("no interface to offer"))?;
        let result = ctx.init(&mut s, &[first.clone(), ("nosuchinterface", vec![1])], LogLevel::Info).await?;
        let got: BTreeSet<String> = result
            .get("interfaces")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        expect_eq(
            got,
            BTreeSet::from([first.0.to_owned()]),
            "interfaces answered",
            "answer only the offered interfaces you implement (§4.3.3)",
        )
    }
    .await;
    ctx.close(s, r).await
}

async fn kv_version(ctx: Arc<Ctx>, offered: Vec<u32>, want: u64) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let result = ctx.init(&mut s, &[("kv", offered.clone())], LogLevel::Info).await?;
        let version = result.pointer("/interfaces/kv/version").and_then(Value::as_u64);
        expect_eq(
            version,
            Some(want),
            &format!("kv version chosen from {offered:?}"),
            "choose the highest version both sides speak (§4.3)",
        )?;
        let methods: BTreeSet<String> = result
            .pointer("/interfaces/kv/methods")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let has_delete = methods.contains("delete");
        expect_eq(
            has_delete,
            want >= 2,
            "kv.delete declared",
            "declare the methods of the chosen version only",
        )?;
        if want == 1 {
            let resp = s.call("kv.delete", json!({"key": "k"}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::METHOD_NOT_FOUND,
                "kv.delete on a kv v1 session",
                "answer -32601 for a method the negotiated version does not have (§4.3)",
            )?;
        }
        Ok(())
    }
    .await;
    ctx.close(s, r).await
}

async fn kv_v1(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_version(ctx, vec![1], 1).await
}

async fn kv_v2(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_version(ctx, vec![1, 2, 9], 2).await
}

fn check_mismatch(e: &ErrorObject, iface: &str) -> Result<(), Failure> {
    let data = e.data.clone().unwrap_or(Value::Null);
    let ok = data.get("interface").and_then(Value::as_str) == Some(iface)
        && data.get("host") == Some(&json!([9]))
        && data
            .get("plugin")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64));
    if ok {
        Ok(())
    } else {
        Err(Failure::new("the -32001 error's data does not name both sides' versions")
            .expected(format!("data {{\"interface\": {iface:?}, \"host\": [9], \"plugin\": [<versions>]}}"))
            .got(data.to_string())
            .fix("put the interface and both version lists in data (§4.3)"))
    }
}

async fn no_common_version(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let offer = ctx.offer();
        let (iface, versions) =
            offer.first().cloned().ok_or_else(|| Failure::new("no interface to offer"))?;
        let resp = s.initialize(&init_params(&[(iface, vec![9])], LogLevel::Info), ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::UNSUPPORTED_VERSION,
            &format!("initialize with {iface} [9]"),
            "answer -32001 when an offered interface you implement has no common version (§4.3)",
        )?;
        check_mismatch(&e, iface)?;
        // §4.3: the session stays uninitialized and the host may try again.
        ctx.init(&mut s, &[(iface, versions)], LogLevel::Info).await.map_err(|mut f| {
            f.summary = format!("after the -32001, a second initialize failed: {}", f.summary);
            f.fix =
                "after an initialize error, stay uninitialized and accept another initialize (§4.3)".into();
            f
        })?;
        ping(&ctx, &mut s, "a retried initialize").await
    }
    .await;
    ctx.close(s, r).await
}

async fn no_common_protocol(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let mut params = init_params(&ctx.offer(), LogLevel::Info);
        params.protocol_versions = vec![9];
        let resp = s.initialize(&params, ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::UNSUPPORTED_VERSION,
            "initialize with protocolVersions [9]",
            "answer -32001 when no core version is common (§4.3.1)",
        )?;
        check_mismatch(&e, "tether")
    }
    .await;
    ctx.close(s, r).await
}

async fn not_initialized(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let fix = "answer every request before tether/initialize with -32002 (§4.1.3)";
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        expect_error(&resp, codes::NOT_INITIALIZED, "tether/ping before initialize", fix)?;
        if ctx.has("kv") {
            let resp = s.call("kv.get", json!({"key": "k"}), ctx.t()).await?;
            expect_error(&resp, codes::NOT_INITIALIZED, "kv.get before initialize", fix)?;
        }
        ctx.init(&mut s, &ctx.offer(), LogLevel::Info).await?;
        ping(&ctx, &mut s, "initialize").await
    }
    .await;
    ctx.close(s, r).await
}

async fn second_initialize(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.initialize(&init_params(&ctx.offer(), LogLevel::Info), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_REQUEST,
            "a second tether/initialize",
            "answer a second initialize with -32600 (§4.1.3)",
        )?;
        ping(&ctx, &mut s, "a second initialize").await
    })
}

async fn none_offered(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let result = ctx.init(&mut s, &[("nosuchinterface", vec![1])], LogLevel::Info).await?;
        let got: BTreeSet<String> = result
            .get("interfaces")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        expect_eq(
            got,
            BTreeSet::new(),
            "interfaces answered to an offer of none of the plugin's interfaces",
            "answer with only the offered interfaces you implement, here none: \"interfaces\": {} (§4.3)",
        )?;
        ping(&ctx, &mut s, "an initialize that offered none of its interfaces").await
    }
    .await;
    ctx.close(s, r).await
}

async fn unknown_capabilities(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let mut params =
            serde_json::to_value(init_params(&ctx.offer(), LogLevel::Info)).map_err(anyhow::Error::from)?;
        if let Some(obj) = params.as_object_mut() {
            obj.insert(
                "capabilities".into(),
                json!({"x-judge-future": {"depth": 3}, "judgeFlag": true, "judgeList": [1, "two"]}),
            );
        }
        let resp = s.call("tether/initialize", params, ctx.t() + crate::driver::START_ALLOWANCE).await?;
        expect_result(&resp, "tether/initialize with unknown capabilities").map_err(|f| {
            f.fix("ignore capability keys you do not know (§4.2); they announce features of later versions")
        })?;
        ping(&ctx, &mut s, "an initialize with unknown capabilities").await
    }
    .await;
    ctx.close(s, r).await
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "handshake.initialize",
            section: "§4.1 §4.4",
            title: "initialize is answered first, with a result valid against the schema",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: Kind::Probe,
        },
        Check {
            id: "handshake.method-schemas",
            section: "§4.4 §9",
            title:
                "every declared method has object JSON Schemas that compile and accept the reference shapes",
            needs: Needs::SomeInterface,
            tier: Tier::Core,
            kind: Kind::FromProbe(method_schemas),
        },
        Check {
            id: "handshake.only-offered",
            section: "§4.3",
            title: "the answer lists only offered interfaces it implements",
            needs: Needs::SomeInterface,
            tier: Tier::Core,
            kind: s!(only_offered),
        },
        Check {
            id: "handshake.kv-v1",
            section: "§4.3 §9.2",
            title: "kv offered as [1]: version 1 chosen, kv.delete answered -32601",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_v1),
        },
        Check {
            id: "handshake.kv-v2",
            section: "§4.3 §9.2",
            title: "kv offered as [1, 2, 9]: version 2 chosen",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_v2),
        },
        Check {
            id: "handshake.no-common-version",
            section: "§4.3",
            title:
                "no common interface version: -32001 with {interface, host, plugin}; a later initialize works",
            needs: Needs::SomeInterface,
            tier: Tier::Core,
            kind: s!(no_common_version),
        },
        Check {
            id: "handshake.no-common-protocol",
            section: "§4.3",
            title: "no common core version: -32001 with interface \"tether\"",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(no_common_protocol),
        },
        Check {
            id: "handshake.not-initialized",
            section: "§4.1",
            title: "a request before initialize: -32002",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(not_initialized),
        },
        Check {
            id: "handshake.second-initialize",
            section: "§4.1",
            title: "a second initialize: -32600, the session goes on",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(second_initialize),
        },
        Check {
            id: "handshake.none-offered",
            section: "§4.3",
            title:
                "an offer that holds none of the plugin's interfaces: an initialize result with no interface",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(none_offered),
        },
        Check {
            id: "handshake.unknown-capabilities",
            section: "§4.2",
            title: "unknown keys in the host's capabilities are ignored",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(unknown_capabilities),
        },
    ]
}
