//! The `counter` reference interface: host callbacks through a handle (§6, §7, §9.3).

use super::*;

/// The judge's deliberately odd adder: a plugin that adds by itself gets another number.
fn odd_sum(a: i64, b: i64) -> i64 {
    a + b + 1000
}

/// An invoke of the plugin, read from the stream.
pub(super) struct Invoke {
    /// The request's id.
    pub(super) id: Id,
    /// The handle invoked.
    pub(super) handle: String,
    /// The method on the handle.
    pub(super) method: String,
    /// The first operand.
    pub(super) a: i64,
    /// The second operand.
    pub(super) b: i64,
}

/// Waits for the next `tether/invoke` of the plugin; other messages are kept for later.
pub(super) async fn next_invoke(
    ctx: &Ctx,
    s: &mut Session,
    t: Duration,
    what: &str,
) -> Result<Invoke, Failure> {
    let deadline = tokio::time::Instant::now() + t;
    let mut kept = Vec::new();
    let out = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match s.recv(left).await {
            Ok(Message::Request(r)) if r.method == "tether/invoke" => {
                let p: Value = serde_json::from_str(r.params.get()).unwrap_or(Value::Null);
                let inv = Invoke {
                    id: r.id.clone(),
                    handle: p.get("handle").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    method: p.get("method").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    a: p.pointer("/params/a").and_then(Value::as_i64).unwrap_or(i64::MIN),
                    b: p.pointer("/params/b").and_then(Value::as_i64).unwrap_or(i64::MIN),
                };
                if inv.method != "sum" || inv.a == i64::MIN || inv.b == i64::MIN {
                    break Err(Failure::new("a malformed tether/invoke")
                        .expected("tether/invoke {\"handle\": <id>, \"method\": \"sum\", \"params\": {\"a\": <int>, \"b\": <int>}}")
                        .got(show_bytes(r.params.get().as_bytes(), 300))
                        .fix("invoke `sum` on the adder handle as §6.2 and §9.4 show"));
                }
                break Ok(inv);
            }
            Ok(m) => kept.push(m),
            Err(e) => {
                let _ = ctx;
                break Err(Failure::new(format!("no tether/invoke of sum {what}: {}", s.explain("counter.put", e)))
                    .expected(format!("a tether/invoke of `sum` on the adder handle {what}"))
                    .got(kept.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                    .fix("compute the new value by invoking `sum` on the host's adder handle (§9.3), concurrently with other requests (§3.7)"));
            }
        }
    };
    for m in kept {
        s.unread(m);
    }
    out
}

fn check_invoke(inv: &Invoke, handle: &str, a: i64, b: i64) -> Result<(), Failure> {
    if inv.handle == handle && inv.a == a && inv.b == b {
        Ok(())
    } else {
        Err(Failure::new("tether/invoke with the wrong handle or operands")
            .expected(format!("handle {handle:?}, sum {{a: {a}, b: {b}}} (a = the stored value, b = the put's value)"))
            .got(format!("handle {:?}, sum {{a: {}, b: {}}}", inv.handle, inv.a, inv.b))
            .fix("invoke sum on the adder given in this put with a = stored value (0 when never put), b = value (§9.3)"))
    }
}

async fn answer_sum(s: &mut Session, inv: &Invoke) -> Result<i64, Failure> {
    let sum = odd_sum(inv.a, inv.b);
    s.respond_ok(inv.id.clone(), json!({"result": sum})).await?;
    Ok(sum)
}

async fn counter_get(ctx: &Ctx, s: &mut Session, key: &str) -> Result<i64, Failure> {
    let resp = s.call("counter.get", json!({"key": key}), ctx.t()).await?;
    let v = expect_result(&resp, "counter.get")?;
    v.get("value").and_then(Value::as_i64).ok_or_else(|| {
        Failure::new("counter.get result has no integer `value`")
            .expected("{\"value\": <integer>}")
            .got(show_response(&resp))
    })
}

async fn put_response(ctx: &Ctx, s: &mut Session, id: &Id) -> Result<Response, Failure> {
    s.response(id, ctx.t()).await.map_err(|e| recv_failure(s, "counter.put", e))
}

async fn counter_callback(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let mut stored = 0;
        for (i, (value, handle)) in [(5, "adder-1"), (7, "adder-2")].into_iter().enumerate() {
            let put =
                s.request("counter.put", json!({"key": "c", "value": value, "adder": adder(handle)})).await?;
            let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
            check_invoke(&inv, handle, stored, value)?;
            stored = answer_sum(&mut s, &inv).await?;
            let resp = put_response(&ctx, &mut s, &put).await?;
            expect_result(&resp, &format!("counter.put #{}", i + 1))?;
            let got = counter_get(&ctx, &mut s, "c").await?;
            expect_eq(
                got,
                stored,
                "counter.get after the put (the host's adder answers a+b+1000)",
                "store the `result` the host's adder answered, whatever it is; do not add by yourself (§9.3)",
            )?;
        }
        Ok(())
    })
}

async fn counter_concurrent(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put1 = s.request("counter.put", json!({"key": "k1", "value": 1, "adder": adder("h1")})).await?;
        let inv1 = next_invoke(&ctx, &mut s, ctx.t(), "for the first put").await?;
        let put2 = s.request("counter.put", json!({"key": "k2", "value": 2, "adder": adder("h2")})).await?;
        // The first sum is held back: a plugin that handles one request at a time stalls here.
        let inv2 = next_invoke(&ctx, &mut s, ctx.t(), "for a second put while the first put's sum is pending")
            .await
            .map_err(|f| f.fix("handle requests concurrently: a put waiting for its sum must not block the next request (§9.3, §3.7)"))?;
        check_invoke(&inv1, "h1", 0, 1)?;
        check_invoke(&inv2, "h2", 0, 2)?;
        let sum2 = answer_sum(&mut s, &inv2).await?;
        let sum1 = answer_sum(&mut s, &inv1).await?;
        expect_result(&put_response(&ctx, &mut s, &put2).await?, "the second counter.put")?;
        expect_result(&put_response(&ctx, &mut s, &put1).await?, "the first counter.put")?;
        let fix = "store the result of each put's own sum";
        expect_eq(counter_get(&ctx, &mut s, "k1").await?, sum1, "counter.get k1", fix)?;
        expect_eq(counter_get(&ctx, &mut s, "k2").await?, sum2, "counter.get k2", fix)
    })
}

async fn counter_reentrant(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "r", "value": 3, "adder": adder("h1")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        let get = s.request("counter.get", json!({"key": "r"})).await?;
        let resp = s.response(&get, ctx.t()).await.map_err(|e| {
            recv_failure(&s, "counter.get while a sum is pending", e)
                .expected("counter.get answered while the put's sum is pending")
                .fix("keep reading and serving requests while a handler waits for the host (§3.7, §6.4)")
        })?;
        let v = expect_result(&resp, "counter.get while a sum is pending")?;
        expect_eq(
            v,
            json!({"value": 0}),
            "counter.get before the put completed",
            "answer the stored value (0 for a key never put)",
        )?;
        let sum = answer_sum(&mut s, &inv).await?;
        expect_result(&put_response(&ctx, &mut s, &put).await?, "counter.put")?;
        expect_eq(
            counter_get(&ctx, &mut s, "r").await?,
            sum,
            "counter.get after the put",
            "store the host's sum",
        )
    })
}

async fn counter_cancel(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "x", "value": 4, "adder": adder("h1")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.cancel(&put).await?;
        let mut cancelled_invoke = false;
        let mut put_answer = None;
        let deadline = tokio::time::Instant::now() + ctx.t();
        while !(cancelled_invoke && put_answer.is_some()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match s.recv(left).await {
                Ok(Message::Notification(n)) if n.method == "$/cancelRequest" => {
                    let p: Value = serde_json::from_str(n.params.get()).unwrap_or(Value::Null);
                    if p.get("id").and_then(|v| serde_json::from_value::<Id>(v.clone()).ok()).as_ref()
                        == Some(&inv.id)
                    {
                        cancelled_invoke = true;
                    }
                }
                Ok(Message::Response(r)) if r.id.as_ref() == Some(&put) => put_answer = Some(r),
                Ok(_) => {}
                Err(e) => {
                    let missing = match (cancelled_invoke, put_answer.is_some()) {
                        (false, false) => "neither a $/cancelRequest for the pending invoke nor an answer to the cancelled put",
                        (false, true) => "no $/cancelRequest for the pending tether/invoke",
                        _ => "no answer to the cancelled counter.put",
                    };
                    return Err(Failure::new(format!("{missing} ({})", s.explain("the cancel", e)))
                        .expected(format!("$/cancelRequest {{\"id\": {}}} and an answer to the put (-32800 or a result), without the judge answering sum", inv.id))
                        .fix("on $/cancelRequest for a put, cancel its pending invoke with $/cancelRequest and answer the put without waiting (§7.1, §7.2)"));
                }
            }
        }
        if let Some(r) = &put_answer {
            if let Outcome::Error(e) = &r.outcome {
                if e.code != codes::REQUEST_CANCELLED {
                    return Err(Failure::new(format!(
                        "the cancelled put was answered with error {}",
                        e.code
                    ))
                    .expected("error -32800 (request cancelled) or a result")
                    .got(show_response(r))
                    .fix("answer a cancelled request with -32800 (§7.1)"));
                }
            }
        }
        // A late answer to the cancelled invoke is a response for an unknown id (§7.3).
        let _ = answer_sum(&mut s, &inv).await;
        ping(&ctx, &mut s, "a late answer to a cancelled invoke").await
    })
}

async fn counter_unknown_handle(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put =
            s.request("counter.put", json!({"key": "u", "value": 1, "adder": adder("expired-7")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.respond_err(Some(inv.id.clone()), ErrorObject::unknown_handle(&inv.handle)).await?;
        let resp = s.response(&put, ctx.t()).await.map_err(|e| {
            recv_failure(&s, "counter.put whose sum failed with -32003", e)
                .expected("the put answered (an error) and the plugin still running")
                .fix("turn an error answer to an invoke into an error answer of the put; do not crash")
        })?;
        let _ = resp;
        ping(&ctx, &mut s, "an invoke answered with -32003").await?;
        counter_get(&ctx, &mut s, "u").await.map(|_| ())
    })
}

async fn counter_callback_error(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "e", "value": 3, "adder": adder("h-err")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        // A protocol code on purpose: passed through, it would say counter.put does not exist.
        let host_error =
            json!({"code": -32601, "message": "the judge's adder refuses", "data": {"judge": true}});
        let err: ErrorObject = serde_json::from_value(host_error.clone()).map_err(anyhow::Error::from)?;
        s.respond_err(Some(inv.id.clone()), err).await?;
        let resp = put_response(&ctx, &mut s, &put).await?;
        let fix = "when the sum invoke fails, answer counter.put with -32603 and the invoke's error object in data.cause, never with its code (§9.3)";
        let e = expect_error(&resp, codes::INTERNAL_ERROR, "counter.put whose sum failed", fix)?;
        let cause = e.data.as_ref().and_then(|d| d.get("cause")).cloned().unwrap_or(Value::Null);
        expect_eq(cause, host_error, "data.cause of the counter.put error", fix)?;
        expect_eq(
            counter_get(&ctx, &mut s, "e").await?,
            0,
            "counter.get after a failed put",
            "store nothing when the sum fails (§9.3)",
        )
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "counter.callback",
            section: "§9.3 §6.2",
            title: "put invokes the host's adder and stores what the host answered",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_callback),
        },
        Check {
            id: "counter.concurrent-puts",
            section: "§9.3 §3.7",
            title: "a second put is served while the first one's sum is pending",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_concurrent),
        },
        Check {
            id: "counter.reentrant-get",
            section: "§6.4",
            title: "counter.get is answered while a sum is pending",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_reentrant),
        },
        Check {
            id: "counter.cancel",
            section: "§7.1 §7.2 §9.3",
            title: "cancelling a put cancels its pending invoke and the put is still answered",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_cancel),
        },
        Check {
            id: "counter.unknown-handle",
            section: "§6.2 §6.3",
            title: "an invoke answered -32003 (expired handle): the put is answered, the plugin goes on",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_unknown_handle),
        },
        Check {
            id: "counter.callback-error",
            section: "§9.3",
            title:
                "a failed sum: counter.put answers -32603 with data.cause = the host's error, stores nothing",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(counter_callback_error),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_sum_is_not_a_sum() {
        assert_ne!(odd_sum(1, 2), 3);
    }
}
