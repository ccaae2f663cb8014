//! Framing: what a plugin reads - header forms, split frames, resynchronisation, oversized frames (§2).

use super::rpc::{raw_then_ping, single_error};
use super::*;

/// Waits for the answers to `ids` (any order); fails naming the ones that did not come.
async fn answers(
    ctx: &Ctx,
    s: &mut Session,
    ids: &[Id],
    what: &str,
    fix: &str,
) -> Result<Vec<Response>, Failure> {
    let mut out = Vec::new();
    for id in ids {
        let r = s.response(id, ctx.t()).await.map_err(|e| {
            recv_failure(s, &format!("the request with id {id}"), e)
                .expected(format!("an answer to {what}"))
                .fix(fix)
        })?;
        out.push(r);
    }
    Ok(out)
}

fn ping_body(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tether/ping","params":{{}}}}"#)
}

async fn framing_header_forms(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let forms = [
            ("lower", "content-length: {n}\r\n\r\n"),
            (
                "ctype",
                "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length:  {n} \r\n\r\n",
            ),
            ("other", "Content-Length: {n}\r\nX-Unknown-Header: yes\r\n\r\n"),
            ("utf8", "CONTENT-LENGTH:{n}\r\ncontent-type: application/json; charset=utf8\r\n\r\n"),
        ];
        let mut ids = Vec::new();
        for (name, header) in forms {
            let body = ping_body(name);
            let mut wire = header.replace("{n}", &body.len().to_string()).into_bytes();
            wire.extend_from_slice(body.as_bytes());
            s.send_wire(&wire).await?;
            ids.push(Id::Str(name.into()));
        }
        let fix = "read any header block the LSP base protocol allows: names case-insensitive, values trimmed, Content-Type and unknown headers ignored (§2.3)";
        for r in answers(&ctx, &mut s, &ids, "pings framed with other header forms", fix).await? {
            expect_result(&r, "tether/ping")?;
        }
        Ok(())
    })
}

async fn framing_split(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = ping_body("split");
        let mut wire = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body.as_bytes());
        for piece in [&wire[..9], &wire[9..20], &wire[20..30], &wire[30..]] {
            s.send_wire(piece).await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let fix = "keep reading until the header block and the whole body have arrived (§2.1)";
        let r =
            answers(&ctx, &mut s, &[Id::Str("split".into())], "a ping written in four pieces", fix).await?;
        r.first().map_or(Ok(()), |r| expect_result(r, "tether/ping").map(|_| ()))
    })
}

async fn framing_resync(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let body = ping_body("after-garbage");
        let mut wire = b"this is not a frame\r\nContent-Length: oops\r\n\r\n".to_vec();
        wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        wire.extend_from_slice(body.as_bytes());
        s.send_wire(&wire).await?;
        let fix = "report bytes that are not a frame and resynchronise on the next Content-Length (§2.6.1)";
        let r = answers(
            &ctx,
            &mut s,
            &[Id::Str("after-garbage".into())],
            "a ping after bytes that are not a frame",
            fix,
        )
        .await?;
        r.first().map_or(Ok(()), |r| expect_result(r, "tether/ping").map(|_| ()))?;
        ping(&ctx, &mut s, "bytes that are not a frame").await
    })
}

async fn framing_oversized(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    let r = async {
        let max = tether_spec::MIN_MAX_FRAME_SIZE;
        let mut params = init_params(&ctx.offer(), LogLevel::Info);
        params.max_frame_size = max as u64;
        let resp = s.initialize(&params, ctx.t()).await?;
        expect_result(&resp, "tether/initialize")?;
        let pad = "x".repeat(max + 1000);
        let body = format!(r#"{{"jsonrpc":"2.0","id":"too-big","method":"tether/ping","params":{{"pad":"{pad}"}}}}"#);
        s.send_raw(body.as_bytes()).await?;
        let fix = "skip a frame above maxFrameSize without keeping it, and answer -32004 for the id its prefix shows (§2.6.2)";
        let resp = answers(&ctx, &mut s, &[Id::Str("too-big".into())], "a request above maxFrameSize", fix).await?;
        let resp = resp.into_iter().next().ok_or_else(|| Failure::new("no answer"))?;
        let e = expect_error(&resp, codes::FRAME_TOO_LARGE, "a request above maxFrameSize", fix)?;
        let data = e.data.unwrap_or(Value::Null);
        let size_ok = data.get("size").and_then(Value::as_u64) == Some(body.len() as u64);
        let max_ok = data.get("max").and_then(Value::as_u64) == Some(max as u64);
        if !(size_ok && max_ok) {
            return Err(Failure::new("the -32004 error's data is not {size, max}")
                .expected(format!("data {{\"size\": {}, \"max\": {max}}}", body.len()))
                .got(data.to_string())
                .fix("put the declared length and the maximum in data (Appendix A)"));
        }
        ping(&ctx, &mut s, "an oversized frame").await
    }
    .await;
    ctx.close(s, r).await
}

async fn framing_bad_utf8(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"tether/ping\"}",
            "a body that is not UTF-8",
        )
        .await?;
        single_error(&seen, codes::PARSE_ERROR, None, "a body that is not UTF-8", "a body that is not UTF-8 is a parse error: answer -32700 with id null and continue (§2.4, §3.4.1)")
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "framing.header-forms",
            section: "§2.3",
            title: "frames with any LSP header block are read (lower case, Content-Type, unknown headers)",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(framing_header_forms),
        },
        Check {
            id: "framing.split-frame",
            section: "§2.1",
            title: "a frame that arrives in pieces is read",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(framing_split),
        },
        Check {
            id: "framing.resync",
            section: "§2.6",
            title: "bytes that are not a frame are skipped; the next frame is read",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(framing_resync),
        },
        Check {
            id: "framing.oversized",
            section: "§2.5 §2.6",
            title: "a request above maxFrameSize: -32004 with its id and {size, max}; the session goes on",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(framing_oversized),
        },
        Check {
            id: "framing.bad-utf8",
            section: "§2.4 §3.4",
            title: "a body that is not UTF-8: -32700 with id null, the session goes on",
            needs: Needs::Any,
            tier: Tier::Hardening,
            kind: s!(framing_bad_utf8),
        },
    ]
}
