//! The JSON-RPC profile: ids, envelope errors, batches, notifications, concurrency (§3, §5).

use super::*;

async fn rpc_ping(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        let v = expect_result(&resp, "tether/ping")?;
        expect_eq(v, json!({}), "tether/ping result", "answer tether/ping with {} (§4.5)")
    })
}

async fn params_absent(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let id = Id::Str("no-params".into());
        s.send_raw(br#"{"jsonrpc":"2.0","id":"no-params","method":"tether/ping"}"#).await?;
        let resp = s
            .response(&id, ctx.t())
            .await
            .map_err(|e| recv_failure(&s, "a tether/ping without params", e))?;
        expect_result(&resp, "tether/ping without params")
            .map_err(|f| f.fix("treat an absent params member as {} (§3.1)"))?;
        Ok(())
    })
}

async fn unknown_method(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        for method in ["nosuch.method", "tether/nosuch"] {
            let resp = s.call(method, json!({}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::METHOD_NOT_FOUND,
                method,
                "answer unknown methods with -32601 (§3.6, §5.1)",
            )?;
        }
        ping(&ctx, &mut s, "unknown methods").await
    })
}

async fn invalid_params(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let (method, member) = if ctx.has("kv") {
            ("kv.get", "key")
        } else if ctx.has("counter") {
            ("counter.get", "key")
        } else {
            ("blob.download", "name")
        };
        let resp = s.call(method, json!({member: 42}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_PARAMS,
            &format!("{method} with {member} 42"),
            "check params against the method's schema and answer -32602 (§5.2)",
        )?;
        let resp = s.call(method, json!({}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::INVALID_PARAMS,
            &format!("{method} without {member}"),
            "check params against the method's schema and answer -32602 (§5.2)",
        )?;
        ping(&ctx, &mut s, "invalid params").await
    })
}

/// Sends a raw body, then a ping; returns every message before the ping's answer.
pub(super) async fn raw_then_ping(
    ctx: &Ctx,
    s: &mut Session,
    body: &[u8],
    what: &str,
) -> Result<Vec<Message>, Failure> {
    s.send_raw(body).await?;
    let ping_id = s.request("tether/ping", json!({})).await?;
    let mut seen = Vec::new();
    loop {
        match s.recv(ctx.t()).await {
            Ok(Message::Response(r)) if r.id.as_ref() == Some(&ping_id) => {
                expect_result(&r, "tether/ping")?;
                return Ok(seen);
            }
            // A plugin's own notification is not an answer (§1.1).
            Ok(Message::Notification(_)) => {}
            Ok(m) => seen.push(m),
            Err(e) => {
                return Err(Failure::new(format!(
                    "after {what}, a ping was not answered: {}",
                    s.explain("the ping", e)
                ))
                .expected(format!("the error answer to {what}, then the ping's answer"))
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix("answer the error and keep reading frames: the session continues"))
            }
        }
    }
}

pub(super) fn single_error(
    seen: &[Message],
    code: i64,
    id: Option<Id>,
    what: &str,
    fix: &str,
) -> Result<(), Failure> {
    let shown = || seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | ");
    let want = format!("one error {code} with id {}", id.as_ref().map_or("null".to_owned(), Id::to_string));
    match seen {
        [Message::Response(Response { id: got_id, outcome: Outcome::Error(e), .. })]
            if e.code == code && *got_id == id =>
        {
            Ok(())
        }
        [] => Err(Failure::new(format!("{what}: no answer"))
            .expected(want)
            .got("nothing before the next ping's answer")
            .fix(fix)),
        _ => {
            Err(Failure::new(format!("{what}: not the expected answer")).expected(want).got(shown()).fix(fix))
        }
    }
}

async fn parse_error(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":",
            "a body that is not JSON",
        )
        .await?;
        single_error(
            &seen,
            codes::PARSE_ERROR,
            None,
            "invalid JSON",
            "answer -32700 with \"id\": null and continue the session (§3.4.1)",
        )
    })
}

async fn batch(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"[{"jsonrpc":"2.0","id":"in-batch","method":"tether/ping","params":{}},{"jsonrpc":"2.0","id":"in-batch-2","method":"tether/ping","params":{}}]"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a batch").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            None,
            "a batch",
            "answer a JSON array with one -32600 with id null and do not process its elements (§3.3)",
        )
    })
}

async fn invalid_request(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"{"jsonrpc":"1.0","id":"old-version","method":"tether/ping","params":{}}"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a message with jsonrpc 1.0").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            Some(Id::Str("old-version".into())),
            "jsonrpc \"1.0\"",
            "answer an invalid message with -32600 and its id (§3.4.2)",
        )
    })
}

async fn null_id(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = br#"{"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}"#;
        let seen = raw_then_ping(&ctx, &mut s, body, "a request with id null").await?;
        single_error(
            &seen,
            codes::INVALID_REQUEST,
            None,
            "id null",
            "answer a request with \"id\": null with -32600 and id null (§3.2)",
        )
    })
}

async fn notifications_unanswered(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        s.notify("nosuch.notification", json!({"x": 1})).await?;
        s.notify("$/nosuchNotification", json!({})).await?;
        s.notify("tether/ping", json!({})).await?;
        if ctx.has("kv") {
            s.notify("kv.get", json!({"key": "missing"})).await?;
            s.notify("kv.put", json!({"key": "note", "value": "aGk="})).await?;
        }
        if ctx.has("counter") {
            s.notify("counter.get", json!({"key": "missing"})).await?;
        }
        let mut seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"never-sent"}}"#,
            "notifications",
        )
        .await?;
        // A handler that answers late would come after the first ping: ask once more.
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.extend(
            raw_then_ping(
                &ctx,
                &mut s,
                br#"{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":"info"}}"#,
                "notifications",
            )
            .await?,
        );
        if seen.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(format!("{} message(s) came back for notifications", seen.len()))
                .expected("no answer at all to a notification")
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix("never answer a message without an id, not even with an error (§3.5)"))
        }
    })
}

async fn id_types(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        for id in
            // Integers at both ends of the interoperable range ±(2^53 - 1) (§3.2): a plugin on a
            // JSON library with double-precision numbers echoes them exactly too.
            [
                Id::Str("7".into()),
                Id::Int(9_007_199_254_740_991),
                Id::Int(-9_007_199_254_740_991),
                Id::Int(4_294_967_297),
                Id::Str("ünïcode id".into()),
                Id::Int(-3),
            ]
        {
            s.request_with_id(id.clone(), "tether/ping", json!({})).await?;
            // Wait for whatever response comes and compare its id exactly.
            let resp = loop {
                match s.recv(ctx.t()).await {
                    Ok(Message::Response(r)) => break r,
                    Ok(_) => continue,
                    Err(e) => return Err(recv_failure(&s, &format!("tether/ping with id {id}"), e)),
                }
            };
            if resp.id.as_ref() != Some(&id) {
                return Err(Failure::new(format!(
                    "request id {id} came back as {}",
                    resp.id.as_ref().map_or("null".into(), Id::to_string)
                ))
                .expected(format!("the id {id} exactly, same JSON type"))
                .got(show_response(&resp))
                .fix("echo the id as sent: keep strings as strings and integers as integers, exact within ±(2^53 - 1) (§3.2)"));
            }
        }
        Ok(())
    })
}

async fn concurrent_64(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let mut pending = BTreeSet::new();
        for i in 0..64 {
            let id = match (i % 3, ctx.has("kv"), ctx.has("counter")) {
                (1, true, _) => s.request("kv.get", json!({"key": format!("missing-{i}")})).await?,
                (2, _, true) => s.request("counter.get", json!({"key": format!("c-{i}")})).await?,
                _ => s.request("tether/ping", json!({})).await?,
            };
            pending.insert(id);
        }
        let deadline = tokio::time::Instant::now() + ctx.t() * 2;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match s.recv(left).await {
                Ok(Message::Response(r)) => {
                    if let Some(id) = r.id.as_ref() {
                        pending.remove(id);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure::new(format!(
                        "{} of 64 requests in flight were not answered: {}",
                        pending.len(),
                        s.explain("them", e)
                    ))
                    .expected("every one of 64 requests in flight answered, in any order")
                    .got(format!(
                        "unanswered ids: {}",
                        pending.iter().take(10).map(Id::to_string).collect::<Vec<_>>().join(", ")
                    ))
                    .fix("keep reading while handlers run and allow at least 64 requests in flight (§3.7)"))
                }
            }
        }
        Ok(())
    })
}

async fn unknown_response(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","id":987654321,"result":{}}"#,
            "a response with an unknown id",
        )
        .await?;
        let more = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","id":"never-asked","error":{"code":-32603,"message":"x"}}"#,
            "an error response with an unknown id",
        )
        .await?;
        if seen.is_empty() && more.is_empty() {
            Ok(())
        } else {
            Err(Failure::new("the plugin answered a response")
                .expected("a response with an unknown id ignored")
                .got(
                    seen.iter()
                        .chain(&more)
                        .map(|m| show_bytes(&m.to_body(), 200))
                        .collect::<Vec<_>>()
                        .join(" | "),
                )
                .fix("ignore (and log) responses whose id matches no pending request (§3.4.3)"))
        }
    })
}

async fn malformed_envelopes(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let fix_note = "a malformed message that looks like a notification (a method, no id) is reported locally, never answered (§3.4 item 2)";
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"1.0","method":"judge.note","params":{}}"#,
            "a notification with jsonrpc 1.0",
        )
        .await?;
        if !seen.is_empty() {
            return Err(Failure::new(format!("{} answer(s) to a malformed notification", seen.len()))
                .expected("no answer to {\"jsonrpc\":\"1.0\",\"method\":...} without an id")
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix(fix_note));
        }
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","method":"judge.note","params":[1]}"#,
            "a notification with array params",
        )
        .await?;
        if !seen.is_empty() {
            return Err(Failure::new(format!(
                "{} answer(s) to a notification with array params",
                seen.len()
            ))
            .expected("no answer to a malformed notification")
            .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
            .fix(fix_note));
        }
        let fix = "answer an invalid body without an id that is neither a notification nor a response with -32600 and id null (§3.4 item 2), then read on";
        let seen = raw_then_ping(&ctx, &mut s, br#"{"jsonrpc":"2.0"}"#, "{\"jsonrpc\":\"2.0\"}").await?;
        single_error(&seen, codes::INVALID_REQUEST, None, "{\"jsonrpc\":\"2.0\"}", fix)?;
        let seen = raw_then_ping(&ctx, &mut s, b"42", "the body 42").await?;
        single_error(&seen, codes::INVALID_REQUEST, None, "the body 42", fix)?;
        Ok(())
    })
}

async fn ping_during_callback(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "p", "value": 1, "adder": adder("h-ping")})).await?;
        let inv = super::counter::next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        // The sum is held back: the plugin is waiting on the host.
        let resp = s.call("tether/ping", json!({}), ctx.t()).await.map_err(|e| {
            Failure::new(format!("tether/ping while the plugin waits on a host callback: {e}"))
                .expected("the ping answered while the sum of a counter.put is pending")
                .fix("answer tether/ping at once, whatever else is pending: never block the reader on a handler (§4.5, §3.7)")
        })?;
        expect_result(&resp, "tether/ping during a callback")?;
        s.respond_ok(inv.id.clone(), json!({"result": inv.a + inv.b})).await?;
        let resp = s.response(&put, ctx.t()).await.map_err(|e| recv_failure(&s, "counter.put", e))?;
        expect_result(&resp, "counter.put").map(|_| ())
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "rpc.ping",
            section: "§4.5",
            title: "tether/ping answered with {}",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(rpc_ping),
        },
        Check {
            id: "rpc.params-absent",
            section: "§3.1",
            title: "a request without params is treated as {}",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(params_absent),
        },
        Check {
            id: "rpc.unknown-method",
            section: "§3.6 §5.1",
            title: "unknown methods (application and tether/): -32601",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(unknown_method),
        },
        Check {
            id: "rpc.invalid-params",
            section: "§5.2",
            title: "params of the wrong type: -32602",
            needs: Needs::SomeInterface,
            tier: Tier::Core,
            kind: s!(invalid_params),
        },
        Check {
            id: "rpc.parse-error",
            section: "§3.4",
            title: "invalid JSON: -32700 with id null, then the session goes on",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(parse_error),
        },
        Check {
            id: "rpc.batch",
            section: "§3.3",
            title: "a batch: one -32600 with id null, elements not processed",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(batch),
        },
        Check {
            id: "rpc.invalid-request",
            section: "§3.4",
            title: "a wrong jsonrpc version: -32600 with the message's id",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(invalid_request),
        },
        Check {
            id: "rpc.null-id",
            section: "§3.2",
            title: "a request with id null: -32600 with id null",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(null_id),
        },
        Check {
            id: "rpc.notifications-unanswered",
            section: "§3.5",
            title: "notifications (unknown, $/unknown, application, tether/ping) are never answered",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(notifications_unanswered),
        },
        Check {
            id: "rpc.id-types",
            section: "§3.2",
            title: "string ids and integer ids within ±(2^53 - 1) echoed exactly, same type",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(id_types),
        },
        Check {
            id: "rpc.concurrent-64",
            section: "§3.7",
            title: "64 requests in flight, all answered",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(concurrent_64),
        },
        Check {
            id: "rpc.unknown-response-id",
            section: "§3.4",
            title: "a response with an unknown id is ignored",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(unknown_response),
        },
        Check {
            id: "rpc.malformed-envelopes",
            section: "§3.4",
            title: "malformed notifications unanswered; {\"jsonrpc\":\"2.0\"} and 42 get -32600 with id null",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(malformed_envelopes),
        },
        Check {
            id: "rpc.ping-during-callback",
            section: "§4.5 §3.7",
            title: "tether/ping is answered while the plugin waits on a host callback",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(ping_during_callback),
        },
    ]
}
