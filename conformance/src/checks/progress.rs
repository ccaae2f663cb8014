//! Progress (§14): `$/progress` for a `kv.put` that carries `_meta.progressToken`, in the steps
//! §9.1 fixes, before the answer and with the judge's token; none for a call without a token.

use tether_spec::{Capabilities, NotificationMethod as _, ProgressCapability, ProgressParams};

use super::*;

/// The value the judge puts: large enough for 64 steps and a remainder.
const LEN: usize = (1 << 20) + 5;

/// Opens a session that offers `progress` (and nothing else); fails unless the plugin announced
/// it back.
async fn open_progress(ctx: &Ctx) -> Result<Session, (Failure, Option<Session>)> {
    let mut s = ctx.open().map_err(|f| (f, None))?;
    let caps = Capabilities { progress: Some(ProgressCapability {}), ..Capabilities::new() };
    let params = crate::driver::init_params_with(&ctx.offer(), LogLevel::Info, caps);
    let result = match s.initialize(&params, ctx.t()).await {
        Ok(r) => expect_result(&r, "tether/initialize"),
        Err(e) => Err(Failure::from(e)),
    };
    match result {
        Err(f) => Err((f, Some(s))),
        Ok(r) if r.pointer("/capabilities/progress").is_none_or(|p| !p.is_object()) => {
            let f = Failure::new("offered progress, the plugin did not announce it back")
                .expected("capabilities.progress: {} in the initialize answer (the probe saw it)")
                .got(r.get("capabilities").map(Value::to_string).unwrap_or_default())
                .fix("announce progress whenever the host does (§10.2, §14.1)");
            Err((f, Some(s)))
        }
        Ok(_) => Ok(s),
    }
}

/// What came for one request until its answer, and until the answer to a ping sent after it.
struct Seen {
    /// The `$/progress` notifications before the answer, in order.
    before: Vec<(ProgressParams, String)>,
    /// Those after the answer (before the ping's answer).
    after: Vec<String>,
    /// `$/progress` whose params do not read as `{token, done?, total?, message?}`.
    malformed: Vec<String>,
    response: Response,
}

/// Sends `kv.put` with `params` and collects every `$/progress` until its answer, then pings so
/// that a late one shows.
async fn put_and_watch(ctx: &Ctx, s: &mut Session, params: Value) -> Result<Seen, Failure> {
    let t = ctx.t().max(Duration::from_secs(60));
    let id = s.request("kv.put", params).await?;
    let mut seen = Seen {
        before: Vec::new(),
        after: Vec::new(),
        malformed: Vec::new(),
        response: Response::ok(id.clone(), crate::driver::raw(&json!({}))),
    };
    let mut answered = false;
    let mut ping: Option<Id> = None;
    loop {
        let msg = s.recv(t).await.map_err(|e| recv_failure(s, "kv.put with a progress token", e))?;
        match msg {
            Message::Notification(n) if n.method == tether_spec::Progress::METHOD => {
                let shown = show_bytes(n.params.get().as_bytes(), 200);
                match serde_json::from_str::<ProgressParams>(n.params.get()) {
                    Err(_) => seen.malformed.push(shown),
                    Ok(p) if !answered => seen.before.push((p, shown)),
                    Ok(_) => seen.after.push(shown),
                }
            }
            Message::Response(r) if r.id.as_ref() == Some(&id) => {
                seen.response = r;
                answered = true;
                ping = Some(s.request("tether/ping", json!({})).await?);
            }
            Message::Response(r) if r.id.is_some() && r.id == ping => return Ok(seen),
            _ => {}
        }
    }
}

fn none_malformed(seen: &Seen) -> Result<(), Failure> {
    match seen.malformed.first() {
        None => Ok(()),
        Some(first) => Err(Failure::new("a $/progress whose params are not {token, done?, total?, message?}")
            .expected("params {\"token\": <the caller's token>, \"done\": integer ≥ 0, \"total\": integer ≥ 0, \"message\": string} (§14.2)")
            .got(first.clone())
            .fix("send $/progress params as §14.2 defines them")),
    }
}

async fn reported(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match open_progress(&ctx).await {
        Ok(s) => s,
        Err(e) => return ctx.fail_open(e).await,
    };
    let r = async {
        // An integer token: a plugin that echoes it as a string (`"4242"`) fails, as for ids.
        let token = 4242_i64;
        let value = pattern(LEN);
        let seen = put_and_watch(&ctx, &mut s, json!({"key": "progress", "value": b64(&value), "_meta": {"progressToken": token}})).await?;
        expect_result(&seen.response, "kv.put with _meta.progressToken").map_err(|f| {
            f.fix("take _meta out of the params before checking them: it is not a parameter (§14.1.2)")
        })?;
        none_malformed(&seen)?;
        if let Some(late) = seen.after.first() {
            return Err(Failure::new("a $/progress after the answer to its request")
                .expected("progress only while the request is pending (§14.2.1)")
                .got(late.clone())
                .fix("stop reporting progress once the handler has answered"));
        }
        let fix_token = "echo the caller's _meta.progressToken exactly, as an id is echoed (§14.1.1)";
        let mut last: Option<(u64, Option<u64>)> = None;
        for (p, shown) in &seen.before {
            if p.token != Id::Int(token) {
                return Err(Failure::new("a $/progress with another token than the caller's")
                    .expected(format!("\"token\": {token}"))
                    .got(shown.clone())
                    .fix(fix_token));
            }
            let done = p.done.unwrap_or(0);
            if let (Some(d), Some(total)) = (p.done, p.total) {
                if d > total {
                    return Err(Failure::new(format!("done {d} exceeds total {total}"))
                        .expected("done ≤ total (§14.2.2)")
                        .got(shown.clone())
                        .fix("never report more done than the total"));
                }
            }
            if let Some((before, total_before)) = last {
                if done < before {
                    return Err(Failure::new(format!("done went back from {before} to {done}"))
                        .expected("done never decreases within one token (§14.2.2)")
                        .got(shown.clone())
                        .fix("report done monotonically"));
                }
                if total_before.is_some() && p.total.is_some() && p.total != total_before {
                    return Err(Failure::new("total changed within one token")
                        .expected("total does not change once given (§14.2.2)")
                        .got(shown.clone())
                        .fix("keep the first total"));
                }
            }
            last = Some((done, p.total.or(last.and_then(|l| l.1))));
        }
        let dones: Vec<u64> = seen.before.iter().filter_map(|(p, _)| p.done).collect();
        let want = tether_spec::interfaces::kv::put_progress_steps(LEN as u64);
        if dones != want || seen.before.iter().any(|(p, _)| p.total != Some(LEN as u64)) {
            return Err(Failure::new(format!(
                "kv.put of {LEN} bytes reported {} progress notifications, not the {} steps of §9.1",
                seen.before.len(),
                want.len()
            ))
            .expected(format!("done = 16384, 32768, ... {LEN}, each with total {LEN}, before the answer (§9.1)"))
            .got(seen.before.iter().take(3).map(|(_, s)| s.clone()).collect::<Vec<_>>().join(" "))
            .fix("report one $/progress per 16384 bytes stored and one at the end when the put carries a token"));
        }
        Ok(())
    }
    .await;
    ctx.close(s, r).await
}

async fn only_with_token(ctx: Arc<Ctx>) -> ScenarioOut {
    // Negotiated, but no token: nothing may come. Then a session where the host did not offer
    // progress, with a token anyway: nothing may come either (§14.1.3).
    let mut s = match open_progress(&ctx).await {
        Ok(s) => s,
        Err(e) => return ctx.fail_open(e).await,
    };
    let value = pattern(LEN);
    let fix = "send $/progress only for a request that carried _meta.progressToken, to a host that announced progress (§14.1, §14.2.1)";
    let r = async {
        let seen = put_and_watch(&ctx, &mut s, json!({"key": "plain", "value": b64(&value)})).await?;
        expect_result(&seen.response, "kv.put without a token")?;
        if let Some((_, first)) = seen.before.first() {
            return Err(Failure::new("a $/progress for a kv.put that carried no progress token")
                .expected("no $/progress without a token")
                .got(first.clone())
                .fix(fix));
        }
        match seen.after.first().or(seen.malformed.first()) {
            Some(first) => Err(Failure::new("a $/progress nobody asked for")
                .expected("none")
                .got(first.clone())
                .fix(fix)),
            None => Ok(()),
        }
    }
    .await;
    let out = ctx.close(s, r).await;
    if !matches!(out.verdict, Verdict::Pass) {
        return out;
    }
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = put_and_watch(
            &ctx,
            &mut s,
            json!({"key": "old-host", "value": b64(&value), "_meta": {"progressToken": 1}}),
        )
        .await?;
        expect_result(&seen.response, "kv.put with a token from a host that did not announce progress")
            .map_err(|f| f.fix("ignore _meta in params whatever the capabilities (§14.1.2)"))?;
        match seen.before.first().map(|(_, s)| s).or(seen.after.first()).or(seen.malformed.first()) {
            Some(first) => Err(Failure::new("a $/progress to a host that did not announce progress")
                .expected("no $/progress unless both sides announced progress")
                .got(first.clone())
                .fix(fix)),
            None => Ok(()),
        }
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "progress.reported",
            section: "§14",
            title: "kv.put of 1 MiB with _meta.progressToken: $/progress with that token, done never decreasing nor above total, in the steps of §9.1, all before the answer",
            needs: Needs::KvProgress,
            tier: Tier::Core,
            kind: s!(reported),
        },
        Check {
            id: "progress.only-with-token",
            section: "§14.2.1",
            title: "no $/progress for a call without a token, nor to a host that did not announce progress",
            needs: Needs::KvProgress,
            tier: Tier::Core,
            kind: s!(only_with_token),
        },
    ]
}
