//! The `blob` reference interface (§9.5) and streams (§12): the judge produces and consumes
//! streams, counts credit, aborts, cancels and stalls.

use super::streams::{
    capabilities, result_stream, sha256_hex, stream_scenario, Book, Incoming, SMALL_WINDOW,
};
use super::*;
use tether_spec::DEFAULT_INITIAL_CREDIT;

/// The bytes of `blob.produce`: byte `i` is `i mod 251` (§9.5).
fn produced(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Uploads `data` under `name` on a fresh odd stream and checks the answer's size and sha256.
async fn upload(ctx: &Ctx, s: &mut Session, b: &mut Book, name: &str, data: &[u8]) -> Result<(), Failure> {
    let t = ctx.t().max(Duration::from_secs(30));
    let sid = b.open_out();
    let id =
        s.request("blob.upload", json!({"name": name, "data": {"$stream": sid, "mode": "read"}})).await?;
    b.produce(s, sid, data, 64 * 1024, true, t).await?;
    let resp = b.response(s, &id, "blob.upload", t).await?;
    check_digest(&resp, data, "blob.upload")
}

fn check_digest(resp: &Response, data: &[u8], what: &str) -> Result<(), Failure> {
    let v = expect_result(resp, what)?;
    let fix =
        "read the stream to its end and answer {\"size\": <bytes read>, \"sha256\": <lowercase hex>} (§9.5)";
    expect_eq(v.get("size").and_then(Value::as_u64), Some(data.len() as u64), &format!("{what} size"), fix)?;
    expect_eq(
        v.get("sha256").and_then(Value::as_str).map(str::to_owned),
        Some(sha256_hex(data)),
        &format!("{what} sha256"),
        fix,
    )
}

/// A value larger than the plugin's initial credit, so that the plugin must grant more.
fn upload_len() -> usize {
    usize::try_from(DEFAULT_INITIAL_CREDIT).unwrap_or(1 << 20) + 300 * 1024 + 7
}

async fn blob_upload(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        upload(&ctx, &mut s, &mut b, "up", &pattern(upload_len())).await
    })
}

async fn blob_count(ctx: Arc<Ctx>) -> ScenarioOut {
    // Base64 chunks here (no attachments): streams work without them (§10.2).
    stream_scenario!(ctx, capabilities(false, DEFAULT_INITIAL_CREDIT), |s, b| {
        let data = pattern(200_003);
        let t = ctx.t().max(Duration::from_secs(30));
        let sid = b.open_out();
        let id = s.request("blob.count", json!({"data": {"$stream": sid, "mode": "read"}})).await?;
        b.produce(&mut s, sid, &data, 50_000, true, t).await?;
        let resp = b.response(&mut s, &id, "blob.count", t).await?;
        check_digest(&resp, &data, "blob.count")
    })
}

/// Downloads `name` with the judge's default window, expecting `want`.
async fn download(ctx: &Ctx, s: &mut Session, b: &mut Book, name: &str, want: &[u8]) -> Result<u64, Failure> {
    let t = ctx.t().max(Duration::from_secs(30));
    let resp = b.call(s, "blob.download", json!({"name": name}), t).await?;
    let (v, sid) = result_stream(&resp, "blob.download")?;
    expect_eq(
        v.get("size").and_then(Value::as_u64),
        Some(want.len() as u64),
        "blob.download size",
        "answer the stored value's size (§9.5)",
    )?;
    b.keep(sid);
    b.read_to_end(s, sid, want.len() as u64, t, ctx.t()).await?;
    let got = b.incoming.get(&sid).map(|i| i.data.clone()).unwrap_or_default();
    same_bytes(&got, want, "the bytes of the blob.download stream")?;
    Ok(sid)
}

async fn blob_download(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let data = pattern(700_001);
        upload(&ctx, &mut s, &mut b, "down", &data).await?;
        download(&ctx, &mut s, &mut b, "down", &data).await.map(|_| ())
    })
}

async fn blob_missing(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let resp = b.call(&mut s, "blob.download", json!({"name": "never-uploaded"}), ctx.t()).await?;
        let fix = "answer blob.download of an unknown name with 1002 and data {\"name\": <name>} (§9.5)";
        let e = expect_error(&resp, codes::BLOB_NOT_FOUND, "blob.download of a missing name", fix)?;
        expect_eq(
            e.data.as_ref().and_then(|d| d.get("name")).and_then(Value::as_str),
            Some("never-uploaded"),
            "data.name of error 1002",
            fix,
        )
    })
}

/// `blob.produce` of `size` bytes; the stream's id.
async fn produce(ctx: &Ctx, s: &mut Session, b: &mut Book, size: u64) -> Result<u64, Failure> {
    let resp = b.call(s, "blob.produce", json!({"size": size}), ctx.t()).await?;
    Ok(result_stream(&resp, "blob.produce")?.1)
}

async fn blob_produce(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let size = 300_007;
        let t = ctx.t().max(Duration::from_secs(30));
        let sid = produce(&ctx, &mut s, &mut b, size).await?;
        b.keep(sid);
        // The end is judged by blob.end; here the bytes.
        b.read_until(&mut s, sid, t, "the produced bytes", |i| i.ended || i.received >= size).await?;
        let got = b.incoming.get(&sid).map(|i| i.data.clone()).unwrap_or_default();
        same_bytes(
            &got[..got.len().min(size as usize)],
            &produced(got.len().min(size as usize)),
            "blob.produce bytes",
        )
        .map_err(|f| f.fix("byte i of blob.produce is i mod 251 (§9.5)"))?;
        let n = got.len() as u64;
        if n < size {
            return Err(Failure::new(format!("blob.produce of {size} bytes: the stream ended after {n}"))
                .expected(format!("{size} bytes, then $/stream.end"))
                .fix("send all `size` bytes before $/stream.end (§9.5)"));
        }
        Ok(())
    })
}

async fn blob_end(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let t = ctx.t().max(Duration::from_secs(30));
        // An empty stream, and one of an odd size: each ends after exactly its bytes.
        for size in [0, 100_003] {
            let sid = produce(&ctx, &mut s, &mut b, size).await?;
            b.read_to_end(&mut s, sid, size, t, ctx.t()).await?;
        }
        // Nothing more after the end.
        ping(&ctx, &mut s, "the end of two streams").await
    })
}

async fn blob_credit(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, SMALL_WINDOW), |s, b| {
        let size = 1 << 20;
        let t = ctx.t().max(Duration::from_secs(30));
        // Grants only once the producer stopped for want of credit, so that any chunk beyond
        // the credit shows.
        b.granting = false;
        let sid = produce(&ctx, &mut s, &mut b, size).await?;
        loop {
            b.wait_stall(&mut s, sid, t).await?;
            let Some(i) = b.incoming.get(&sid) else { break };
            if let Some(over) = &i.over_credit {
                return Err(Failure::new(format!("the plugin exceeded its credit: {over}"))
                    .expected(format!("chunks within the credit granted: {SMALL_WINDOW} bytes initially (the judge's initialCredit), then what $/stream.credit adds"))
                    .fix("never send a chunk larger than the remaining credit; split it and wait for $/stream.credit (§12.3.3)"));
            }
            if i.ended || i.received >= size {
                break;
            }
            s.notify("$/stream.credit", json!({"stream": sid, "bytes": SMALL_WINDOW})).await?;
            if let Some(i) = b.incoming.get_mut(&sid) {
                i.remaining += SMALL_WINDOW;
            }
        }
        let received = b.incoming.get(&sid).map_or(0, |i| i.received);
        expect_eq(received, size, "bytes received on the stream", "send all `size` bytes (§9.5)")
    })
}

async fn blob_abort_upload(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let sid = b.open_out();
        let id = s
            .request("blob.upload", json!({"name": "aborted", "data": {"$stream": sid, "mode": "read"}}))
            .await?;
        b.produce(&mut s, sid, &pattern(30_000), 10_000, false, ctx.t()).await?;
        b.abort(&mut s, sid).await?;
        let resp = b.response(&mut s, &id, "blob.upload whose stream the judge aborted", ctx.t()).await?;
        let fix = "when the upload's stream is aborted, store nothing and answer -32006 with data.stream (§9.5, §12.4)";
        let e = expect_error(&resp, codes::STREAM_ERROR, "blob.upload of an aborted stream", fix)?;
        expect_eq(
            e.data.as_ref().and_then(|d| d.get("stream")).and_then(Value::as_u64),
            Some(sid),
            "data.stream of the -32006",
            fix,
        )?;
        let resp = b.call(&mut s, "blob.download", json!({"name": "aborted"}), ctx.t()).await?;
        expect_error(&resp, codes::BLOB_NOT_FOUND, "blob.download after an aborted upload", fix).map(|_| ())
    })
}

async fn blob_abort_download(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, SMALL_WINDOW), |s, b| {
        let t = ctx.t().max(Duration::from_secs(30));
        let sid = produce(&ctx, &mut s, &mut b, 1 << 40).await?;
        // The plugin uses its credit and waits for more.
        b.granting = false;
        b.wait_stall(&mut s, sid, t).await?;
        // What may still cross the abort on the wire: the credit the plugin had left.
        let (at_abort, left) = b.incoming.get(&sid).map_or((0, 0), |i| (i.received, i.remaining));
        b.abort(&mut s, sid).await?;
        // Credit that crosses the abort on the wire is ignored (§12.4.6): a plugin that still
        // produces after the abort uses it, one that stopped sends nothing more.
        s.notify("$/stream.credit", json!({"stream": sid, "bytes": 1 << 20})).await?;
        for _ in 0..3 {
            b.call(&mut s, "tether/ping", json!({}), t).await?;
        }
        let second = produce(&ctx, &mut s, &mut b, 1000).await?;
        b.read_until(&mut s, second, t, "the 1000 bytes of a second blob.produce", |i| i.received >= 1000)
            .await?;
        // A plugin that goes on producing may do it on a thread that runs later than its
        // answers, so the verdict waits a fifth of the answer time for more of the stream. Its
        // own time-out is the passing outcome.
        let past_credit = |i: &Incoming| i.received.saturating_sub(at_abort) > left;
        let _ = b.read_until(&mut s, sid, ctx.t() / 5, "no more of the aborted stream", past_credit).await;
        let after = b.incoming.get(&sid).map_or(0, |i| i.received.saturating_sub(at_abort));
        if after <= left {
            return Ok(());
        }
        if let Some(over) = b.incoming.get(&sid).and_then(|i| i.over_credit.clone()) {
            return Err(Failure::new(format!(
                "the stream went on beyond its credit, so past the abort: {over}"
            ))
            .expected(format!(
                "at most the {SMALL_WINDOW} bytes of credit, then nothing once the judge aborted the stream"
            ))
            .fix("respect the credit (§12.3.3), and stop producing a stream its consumer aborted (§12.4)"));
        }
        Err(Failure::new(format!("the plugin kept sending stream {sid} after the judge aborted it: {after} more bytes"))
            .expected("nothing more on a stream once its consumer sent $/stream.abort, even when credit for it arrives after the abort")
            .fix("on $/stream.abort from the consumer, stop producing that stream, forget it and ignore later messages about it (§12.4, §12.4.6)"))
    })
}

async fn blob_cancel(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        let sid = b.open_out();
        let id = s
            .request("blob.upload", json!({"name": "cancelled", "data": {"$stream": sid, "mode": "read"}}))
            .await?;
        b.produce(&mut s, sid, &pattern(20_000), 10_000, false, ctx.t()).await?;
        s.cancel(&id).await?;
        let resp = b.response(&mut s, &id, "blob.upload cancelled while its stream is open", ctx.t()).await.map_err(|f| {
            f.fix("on $/cancelRequest, abort the request's open streams and answer -32800 at once (§7.1, §12.4.3)")
        })?;
        let fix =
            "a cancelled upload answers -32800, its stream is dead and nothing is stored (§7.1, §12.4.3)";
        expect_error(&resp, codes::REQUEST_CANCELLED, "the cancelled blob.upload", fix)?;
        // The stream is dead: more data and an end for it are ignored, and nothing was stored.
        s.notify("$/stream.data", json!({"stream": sid, "data": b64(b"late")})).await?;
        s.notify("$/stream.end", json!({"stream": sid})).await?;
        let resp = b.call(&mut s, "blob.download", json!({"name": "cancelled"}), ctx.t()).await?;
        expect_error(&resp, codes::BLOB_NOT_FOUND, "blob.download after a cancelled upload", fix).map(|_| ())
    })
}

async fn blob_slow_reader(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, SMALL_WINDOW), |s, b| {
        let size = 4 << 20;
        let t = ctx.t().max(Duration::from_secs(60));
        b.granting = false;
        let big = produce(&ctx, &mut s, &mut b, size).await?;
        b.keep(big);
        // The plugin has used its credit and waits for more, which does not come.
        b.wait_stall(&mut s, big, t).await?;
        let stalled = "keep reading and answering while a stream waits for credit: a stalled stream blocks nothing else (§12.5)";
        b.call(&mut s, "tether/ping", json!({}), ctx.t()).await.map_err(|f| f.fix(stalled))?;
        b.granting = true;
        let small = produce(&ctx, &mut s, &mut b, 1000).await.map_err(|f| Failure {
            summary: format!("a second call while a stream is stalled: {}", f.summary),
            ..f.fix(stalled)
        })?;
        b.read_until(&mut s, small, ctx.t(), "the 1000 bytes of the second call's stream", |i| {
            i.received >= 1000
        })
        .await
        .map_err(|f| f.fix(stalled))?;
        // Resume: the rest of the big stream arrives.
        b.resume(&mut s, big).await?;
        b.read_until(&mut s, big, t, "the rest of the stalled stream", |i| i.received >= size).await?;
        let got = b.incoming.get(&big).map(|i| i.data.clone()).unwrap_or_default();
        same_bytes(&got, &produced(size as usize), "the stalled stream's bytes after resuming")
    })
}

async fn blob_stream_ids(ctx: Arc<Ctx>) -> ScenarioOut {
    stream_scenario!(ctx, capabilities(true, DEFAULT_INITIAL_CREDIT), |s, b| {
        upload(&ctx, &mut s, &mut b, "ids", b"three streams").await?;
        for _ in 0..2 {
            produce(&ctx, &mut s, &mut b, 10).await?;
        }
        let resp = b.call(&mut s, "blob.download", json!({"name": "ids"}), ctx.t()).await?;
        result_stream(&resp, "blob.download")?;
        let ids = b.plugin_ids.clone();
        let fix = "the plugin opens streams with even ids, never reusing one in a session (§12.1)";
        let mut seen = BTreeSet::new();
        for id in &ids {
            if *id == 0 || id % 2 == 1 || !seen.insert(*id) {
                return Err(Failure::new(format!("the plugin opened stream id {id} (ids so far {ids:?})"))
                    .expected("positive even ids, each new")
                    .got(format!("{ids:?}"))
                    .fix(fix));
            }
        }
        expect_eq(ids.len(), 3, "streams opened by three calls", fix)
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    let c = |id, section, title, tier, kind| Check { id, section, title, needs: Needs::Blob, tier, kind };
    vec![
        c("blob.upload", "§9.5 §12.2 §12.3", "upload of a value larger than the plugin's credit (the judge produces within it): size and sha256", Tier::Core, s!(blob_upload)),
        c("blob.count", "§9.5 §12.2", "count of a stream sent as base64 chunks (streams without attachments): size and sha256", Tier::Core, s!(blob_count)),
        c("blob.download", "§9.5 §12.1", "download after an upload: size, the same bytes, then $/stream.end", Tier::Core, s!(blob_download)),
        c("blob.missing", "§9.5", "download of a missing name: 1002 with data.name", Tier::Core, s!(blob_missing)),
        c("blob.produce", "§9.5", "produce: byte i is i mod 251, all `size` bytes", Tier::Core, s!(blob_produce)),
        c("blob.end", "§12.2", "$/stream.end after exactly `size` bytes (0 and 100003), nothing after it", Tier::Core, s!(blob_end)),
        c("blob.credit", "§12.3", "with a 64 KiB window, no chunk exceeds the credit left; more credit, more data", Tier::Core, s!(blob_credit)),
        c("blob.abort-upload", "§12.4 §9.5", "the judge aborts an upload mid-way: -32006 with data.stream, nothing stored (1002)", Tier::Core, s!(blob_abort_upload)),
        c("blob.abort-download", "§12.4", "the judge aborts a stalled stream it consumes (credit crossing the abort follows): nothing more is sent", Tier::Core, s!(blob_abort_download)),
        c("blob.cancel", "§7.1 §12.4", "$/cancelRequest of an upload whose stream is open: -32800, the stream dead, nothing stored", Tier::Core, s!(blob_cancel)),
        c("blob.slow-reader", "§12.5", "a stream stalled without credit blocks neither a ping nor a second call; resumed, it completes", Tier::Core, s!(blob_slow_reader)),
        c("blob.stream-ids", "§12.1", "the plugin's stream ids are positive, even and new", Tier::Core, s!(blob_stream_ids)),
    ]
}
