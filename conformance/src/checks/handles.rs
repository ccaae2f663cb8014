//! Handles the host sends to the plugin by mistake: invokes, retains and releases of handles the
//! plugin never issued (§6.2, §6.3).

use super::rpc::raw_then_ping;
use super::*;

async fn unknown_handles(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let fix = "answer tether/invoke and tether/retain on a handle you do not own with -32003 and data {\"handle\": <id>} (§6.2, §6.3)";
        for (method, params) in [
            (
                "tether/invoke",
                json!({"handle": "judge-unknown-1", "method": "sum", "params": {"a": 1, "b": 2}}),
            ),
            ("tether/retain", json!({"handle": "judge-unknown-2"})),
        ] {
            let handle = params["handle"].as_str().unwrap_or_default().to_owned();
            let resp = s.call(method, params, ctx.t()).await?;
            let e =
                expect_error(&resp, codes::UNKNOWN_HANDLE, &format!("{method} on an unknown handle"), fix)?;
            let got = e.data.as_ref().and_then(|d| d.get("handle")).cloned().unwrap_or(Value::Null);
            expect_eq(got, json!(handle), &format!("data.handle of the {method} error"), fix)?;
        }
        // `$/release` is a notification: never answered, and the session goes on.
        let seen = raw_then_ping(
            &ctx,
            &mut s,
            br#"{"jsonrpc":"2.0","method":"$/release","params":{"handle":"judge-unknown-3"}}"#,
            "$/release of an unknown handle",
        )
        .await?;
        if seen.is_empty() {
            Ok(())
        } else {
            Err(Failure::new("$/release of an unknown handle was answered")
                .expected("no answer: $/release is a notification (§6.3)")
                .got(seen.iter().map(|m| show_bytes(&m.to_body(), 200)).collect::<Vec<_>>().join(" | "))
                .fix("ignore $/release of a handle you do not know; never answer a notification (§3.5)"))
        }
    })
}

fn agg_late_retain(all: &[Observations]) -> Verdict {
    if all.iter().all(|o| o.handles_given == 0) {
        return Verdict::Skip("no scenario gave the plugin a handle".to_owned());
    }
    aggregate(
        all,
        |o| &o.late_retains,
        "tether/retain of a handle after the request that carried it was answered",
        "tether/retain sent while the carrying request is in flight, before its answer (§6.3 item 3)",
        "retain a handle before answering the request that carried it; after the answer it has expired (§6.3)",
    )
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![Check {
        id: "handle.unknown",
        section: "§6.2 §6.3",
        title: "tether/invoke and tether/retain on an unknown handle: -32003 with data.handle; $/release unanswered",
        needs: Needs::Any,
        tier: Tier::Core,
        kind: s!(unknown_handles),
    },
    Check {
        id: "handle.no-late-retain",
        section: "§6.3",
        title: "no tether/retain of a handle after its carrying request was answered, in any scenario",
        needs: Needs::Counter,
        tier: Tier::Core,
        kind: Kind::Aggregate(agg_late_retain),
    }]
}
