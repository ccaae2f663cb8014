//! Logs: `$/log` and `$/setLogLevel` (§8.1, §8.2).

use super::*;

fn debug_logs_for(obs: &Observations, key: &str) -> usize {
    obs.logs
        .iter()
        .filter(|l| l.level == LogLevel::Debug)
        .filter(|l| l.fields.as_ref().and_then(|f| f.get("key")).and_then(Value::as_str) == Some(key))
        .count()
}

async fn log_debug_on_put(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Debug, |s| {
        kv_put(&ctx, &mut s, "logged-key", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        if debug_logs_for(&s.obs, "logged-key") >= 1 {
            Ok(())
        } else {
            Err(Failure::new("no debug $/log with fields.key for kv.put")
                .expected("one $/log {\"level\": \"debug\", \"fields\": {\"key\": \"logged-key\", ...}} per kv.put at logLevel debug")
                .got(format!("{} $/log: {:?}", s.obs.logs.len(), s.obs.logs.iter().map(|l| format!("{} {}", l.level, l.message)).collect::<Vec<_>>()))
                .fix("on each kv.put, send a debug $/log whose fields include the key (§9.1)"))
        }
    })
}

async fn log_set_level(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "quiet-1", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        s.notify("$/setLogLevel", json!({"level": "debug"})).await?;
        s.set_level(LogLevel::Debug);
        kv_put(&ctx, &mut s, "loud", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        s.notify("$/setLogLevel", json!({"level": "warn"})).await?;
        ping(&ctx, &mut s, "$/setLogLevel").await?;
        s.set_level(LogLevel::Warn);
        kv_put(&ctx, &mut s, "quiet-2", b"v", ctx.t()).await?;
        ping(&ctx, &mut s, "kv.put").await?;
        let (q1, loud, q2) = (
            debug_logs_for(&s.obs, "quiet-1"),
            debug_logs_for(&s.obs, "loud"),
            debug_logs_for(&s.obs, "quiet-2"),
        );
        if q1 == 0 && loud >= 1 && q2 == 0 {
            Ok(())
        } else {
            Err(Failure::new(format!("debug $/log per put: {q1} at info, {loud} after $/setLogLevel debug, {q2} after $/setLogLevel warn"))
                .expected("0 at info, at least 1 at debug, 0 at warn")
                .fix("apply $/setLogLevel to every later $/log (§8.2)"))
        }
    })
}

/// A check over every `$/log` passes only when it saw some.
fn no_logs(all: &[Observations]) -> Option<Verdict> {
    let seen =
        all.iter().any(|o| !o.logs.is_empty() || !o.bad_logs.is_empty() || !o.logs_below_level.is_empty());
    (!seen).then(|| Verdict::Skip("the plugin sent no $/log in any scenario".to_owned()))
}

fn agg_level(all: &[Observations]) -> Verdict {
    if let Some(v) = no_logs(all) {
        return v;
    }
    aggregate(
        all,
        |o| &o.logs_below_level,
        "$/log below the session's level",
        "no $/log less severe than the logLevel of initialize (default info) or of $/setLogLevel",
        "filter $/log by the session's level (§8.1)",
    )
}

fn agg_logs(all: &[Observations]) -> Verdict {
    if let Some(v) = no_logs(all) {
        return v;
    }
    aggregate(
        all,
        |o| &o.bad_logs,
        "malformed $/log",
        "$/log params {level: trace|debug|info|warn|error, message: string, target?: string, fields?: object}",
        "send $/log params as §8.1 describes",
    )
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "log.debug-on-put",
            section: "§9.1 §8.1",
            title: "at logLevel debug, kv.put sends a debug $/log with fields.key",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(log_debug_on_put),
        },
        Check {
            id: "log.set-level",
            section: "§8.2",
            title: "$/setLogLevel changes which $/log are sent",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(log_set_level),
        },
        Check {
            id: "log.level-respected",
            section: "§8.1",
            title: "no $/log below the session's level, in any scenario",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: Kind::Aggregate(agg_level),
        },
        Check {
            id: "log.well-formed",
            section: "§8.1",
            title: "every $/log seen in any scenario has valid params",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: Kind::Aggregate(agg_logs),
        },
    ]
}
