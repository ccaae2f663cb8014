//! Attachments (§2.8): raw bytes after a frame's JSON, only once both sides announced them.

use tether_spec::Capabilities;

use super::streams::capabilities;
use super::*;

/// Opens a session that offers `attachments` (and nothing else); fails unless the plugin
/// announced them back.
async fn open_attached(ctx: &Ctx) -> Result<Session, (Failure, Option<Session>)> {
    let mut s = ctx.open().map_err(|f| (f, None))?;
    let mut caps = Capabilities::new();
    caps.attachments = Capabilities::all().attachments;
    let params = crate::driver::init_params_with(&ctx.offer(), LogLevel::Info, caps);
    let result = match s.initialize(&params, ctx.t()).await {
        Ok(r) => expect_result(&r, "tether/initialize"),
        Err(e) => Err(Failure::from(e)),
    };
    match result {
        Err(f) => Err((f, Some(s))),
        Ok(_) if !s.attachments_on() => {
            let f = Failure::new("offered attachments, the plugin did not announce them back")
                .expected("capabilities.attachments: {} in the initialize answer (the probe saw it)")
                .fix("announce attachments whenever the host does (§10.2)");
            Err((f, Some(s)))
        }
        Ok(_) => Ok(s),
    }
}

macro_rules! attached_scenario {
    ($ctx:ident, |$s:ident| $body:block) => {{
        let mut $s = match open_attached(&$ctx).await {
            Ok(s) => s,
            Err(e) => return $ctx.fail_open(e).await,
        };
        let r: Result<(), Failure> = async { $body }.await;
        $ctx.close($s, r).await
    }};
}

/// Sends `kv.put` with the value as attachment 0 and `value` as the reference's JSON.
async fn put_attached(s: &mut Session, key: &str, reference: Value, value: &[u8]) -> Result<Id, Failure> {
    let id = s.fresh_id();
    let params = json!({"key": key, "value": reference});
    let msg = Message::Request(tether_spec::Request::new(id.clone(), "kv.put", crate::driver::raw(&params)));
    s.send_attached(&msg, &[bytes::Bytes::copy_from_slice(value)]).await?;
    Ok(id)
}

async fn accepted(ctx: Arc<Ctx>) -> ScenarioOut {
    attached_scenario!(ctx, |s| {
        let t = ctx.t().max(Duration::from_secs(60));
        for (key, len) in [("small", 1000), ("large", 4 << 20)] {
            let value = pattern(len);
            let id = put_attached(&mut s, key, json!({"$bytes": 0}), &value).await?;
            let resp =
                s.response(&id, t).await.map_err(|e| recv_failure(&s, "kv.put with an attachment", e))?;
            expect_result(&resp, "kv.put with {\"$bytes\": 0}").map_err(|f| {
                f.fix("read the Tether-Attachments header once negotiated and treat {\"$bytes\": i} as the bytes of attachment i (§2.8.2)")
            })?;
            // The driver turns references into base64, so either form of the answer reads alike.
            let got = kv_get_value(&mut s, key, t).await?;
            same_bytes(&got, &value, &format!("kv.get of a {len}-byte value put as an attachment"))?;
        }
        Ok(())
    })
}

async fn base64_still(ctx: Arc<Ctx>) -> ScenarioOut {
    attached_scenario!(ctx, |s| {
        let value = pattern(3000);
        let resp = s.call("kv.put", json!({"key": "b64", "value": b64(&value)}), ctx.t()).await?;
        expect_result(&resp, "kv.put with a base64 value after negotiating attachments").map_err(|f| {
            f.fix("keep accepting base64 strings for bytes after attachments are negotiated (§2.8.3)")
        })?;
        let got = kv_get_value(&mut s, "b64", ctx.t()).await?;
        same_bytes(&got, &value, "kv.get of a value put as base64")
    })
}

async fn bad_reference(ctx: Arc<Ctx>) -> ScenarioOut {
    attached_scenario!(ctx, |s| {
        let fix = "answer -32602 for {\"$bytes\": i} when the frame has no attachment i (§2.8.2)";
        for reference in [json!({"$bytes": 7}), json!({"$bytes": -1}), json!({"$bytes": 0, "extra": 1})] {
            let id = put_attached(&mut s, "bad", reference.clone(), b"one attachment").await?;
            let resp = s
                .response(&id, ctx.t())
                .await
                .map_err(|e| recv_failure(&s, "kv.put with a bad reference", e))?;
            expect_error(
                &resp,
                codes::INVALID_PARAMS,
                &format!("kv.put with value {reference} and one attachment"),
                fix,
            )?;
        }
        let resp = kv_get(&mut s, "bad", ctx.t()).await?;
        expect_error(
            &resp,
            codes::KEY_NOT_FOUND,
            "kv.get after rejected puts",
            "store nothing for a rejected put",
        )?;
        ping(&ctx, &mut s, "a bad attachment reference").await
    })
}

/// The attachment frames a session saw although they were not negotiated.
fn unnegotiated(s: &Session, when: &str) -> Result<(), Failure> {
    match s.obs.unnegotiated_attachments.first() {
        None => Ok(()),
        Some(first) => Err(Failure::new(format!("an attachment frame {when}"))
            .expected("plain frames (base64 bytes) until both sides announced attachments")
            .got(first.clone())
            .fix("send attachments only once both sides announced them, and never in the initialize answer (§2.8.3)")),
    }
}

/// 1. Offered nothing: a large value comes back as base64 in a plain frame.
async fn plain_value(ctx: &Ctx) -> ScenarioOut {
    let mut s = match ctx.open_init(LogLevel::Info).await {
        Ok(s) => s,
        Err(e) => return ctx.fail_open(e).await,
    };
    let r = async {
        let t = ctx.t().max(Duration::from_secs(60));
        let value = pattern(256 * 1024);
        kv_put(ctx, &mut s, "plain", &value, t).await?;
        let got = kv_get_value(&mut s, "plain", t).await?;
        same_bytes(&got, &value, "kv.get without attachments")?;
        unnegotiated(&s, "in a session where the host did not announce attachments")
    }
    .await;
    ctx.close(s, r).await
}

/// 2. Offered attachments: the initialize answer itself is a plain frame (§2.8.3).
async fn plain_answer(ctx: &Ctx) -> ScenarioOut {
    let mut s = match open_attached(ctx).await {
        Ok(s) => s,
        Err(e) => return ctx.fail_open(e).await,
    };
    let r = async {
        ping(ctx, &mut s, "the initialize answer").await?;
        unnegotiated(&s, "as or before the initialize answer that announced attachments")
    }
    .await;
    ctx.close(s, r).await
}

/// 3. Streams without attachments: the chunks are base64 too.
async fn plain_chunks(ctx: &Ctx) -> ScenarioOut {
    let (mut s, mut b) = match ctx.open_streams(capabilities(false, 1 << 20)).await {
        Ok(x) => x,
        Err(e) => return ctx.fail_open(e).await,
    };
    let r = async {
        let resp = b.call(&mut s, "blob.produce", json!({"size": 50_000}), ctx.t()).await?;
        let sid = super::streams::result_stream(&resp, "blob.produce")?.1;
        b.read_until(&mut s, sid, ctx.t(), "the produced bytes", |i| i.ended || i.received >= 50_000).await?;
        unnegotiated(&s, "on a stream, in a session with streams but without attachments")
    }
    .await;
    ctx.close(s, r).await
}

async fn only_negotiated(ctx: Arc<Ctx>) -> ScenarioOut {
    let announced = ctx.probe.as_ref().is_some_and(|p| p.capabilities.attachments.is_some());
    let kv = ctx.has("kv");
    let mut done: Option<ScenarioOut> = None;
    for part in 1..=3 {
        let out = match part {
            1 if kv => plain_value(&ctx).await,
            2 if kv && announced => plain_answer(&ctx).await,
            3 if ctx.has("blob") => plain_chunks(&ctx).await,
            _ => continue,
        };
        let mut out = out;
        if let Some(before) = done.take() {
            merge(&mut out.obs, before.obs);
        }
        let passed = matches!(out.verdict, Verdict::Pass);
        done = Some(out);
        if !passed {
            break;
        }
    }
    match done {
        Some(out) => out,
        // Needs::KvOrBlob: one of the parts always runs.
        None => ScenarioOut {
            verdict: Verdict::Skip("the plugin implements neither kv nor blob".to_owned()),
            obs: Observations::default(),
            probe: None,
        },
    }
}

/// Keeps what the first session observed for the checks that span every scenario.
fn merge(into: &mut Observations, from: Observations) {
    into.stdout_violations.extend(from.stdout_violations);
    into.stdout_fixes.extend(from.stdout_fixes);
    into.frames += from.frames;
    into.bad_messages.extend(from.bad_messages);
    into.bad_logs.extend(from.bad_logs);
    into.logs_below_level.extend(from.logs_below_level);
    into.logs.extend(from.logs);
    into.handles_given += from.handles_given;
    into.late_retains.extend(from.late_retains);
    into.unnegotiated_attachments.extend(from.unnegotiated_attachments);
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "attachments.accepted",
            section: "§2.8",
            title: "after negotiation, kv.put with {\"$bytes\": 0} (1000 B and 4 MiB) stores the attachment",
            needs: Needs::KvAttachments,
            tier: Tier::Core,
            kind: s!(accepted),
        },
        Check {
            id: "attachments.base64-still",
            section: "§2.8.3",
            title: "after negotiation, a base64 value is still accepted",
            needs: Needs::KvAttachments,
            tier: Tier::Core,
            kind: s!(base64_still),
        },
        Check {
            id: "attachments.bad-reference",
            section: "§2.8.2",
            title: "{\"$bytes\": 7} in a frame with one attachment (and -1, an extra member): -32602",
            needs: Needs::KvAttachments,
            tier: Tier::Hardening,
            kind: s!(bad_reference),
        },
        Check {
            id: "attachments.only-negotiated",
            section: "§2.8.3",
            title: "no attachment frame unless both sides announced attachments (a kv value, the initialize answer, blob chunks with streams alone)",
            needs: Needs::KvOrBlob,
            tier: Tier::Core,
            kind: s!(only_negotiated),
        },
    ]
}
