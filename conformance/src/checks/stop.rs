//! Stop: shutdown, end of input, and what is left behind (§1.6, §4.6).

use super::counter::next_invoke;
use super::*;

async fn expect_exit_0(ctx: &Ctx, s: &mut Session, what: &str) -> Result<(), Failure> {
    let grace = ctx.opts.grace;
    match s.wait_exit(grace).await {
        Some(status) if status.code() == Some(0) => Ok(()),
        Some(status) => Err(Failure::new(format!("{status} {what}"))
            .expected("exit status 0")
            .got(status.to_string())
            .fix("exit 0 when stdin reaches end of file (§1.5, §1.6)")),
        None => Err(Failure::new(format!("still running {} ms {what}", grace.as_millis()))
            .expected(format!("exit 0 within the grace period ({} ms)", grace.as_millis()))
            .got("the process kept running")
            .fix("exit when stdin reaches end of file, cancelling in-flight work (§1.6)")),
    }
}

async fn stop_shutdown(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        let v = expect_result(&resp, "tether/shutdown")?;
        expect_eq(v, json!({}), "tether/shutdown result", "answer tether/shutdown with {} (§4.6)")?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after shutdown and the end of stdin").await
    })
}

impl Ctx {
    pub(super) fn grace_or_timeout(&self) -> Duration {
        self.opts.grace.max(self.opts.timeout)
    }
}

async fn stop_after_shutdown(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        expect_result(&resp, "tether/shutdown")?;
        let resp = s.call("tether/ping", json!({}), ctx.t()).await?;
        expect_error(
            &resp,
            codes::SHUTTING_DOWN,
            "tether/ping after shutdown",
            "answer every request after tether/shutdown with -32005 (§4.6)",
        )?;
        Ok(())
    })
}

async fn stop_eof(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        ping(&ctx, &mut s, "initialize").await?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after stdin closed without shutdown").await
    })
}

async fn stop_eof_uninit(ctx: Arc<Ctx>) -> ScenarioOut {
    let mut s = match ctx.open() {
        Ok(s) => s,
        Err(f) => return ctx.fail_open((f, None)).await,
    };
    s.close_stdin();
    let r = expect_exit_0(&ctx, &mut s, "after stdin closed before initialize").await;
    ctx.close(s, r).await
}

async fn stop_eof_pending(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let _put = s.request("counter.put", json!({"key": "p", "value": 1, "adder": adder("h1")})).await?;
        let _inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after stdin closed while a sum was pending").await
    })
}

async fn stop_no_leftovers(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        if ctx.has("kv") {
            kv_put(&ctx, &mut s, "k", b"v", ctx.t()).await?;
        }
        ping(&ctx, &mut s, "initialize").await?;
        let resp = s.call("tether/shutdown", json!({}), ctx.grace_or_timeout()).await?;
        expect_result(&resp, "tether/shutdown")?;
        s.close_stdin();
        expect_exit_0(&ctx, &mut s, "after shutdown and the end of stdin").await?;
        let Some(pgid) = s.pgid() else { return Ok(()) };
        let left = procs::wait_group_empty(pgid, ctx.opts.grace).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(format!(
                "{} process(es) of the plugin's group still running after it exited",
                left.len()
            ))
            .expected("no live process in the plugin's process group after its exit")
            .got(left.iter().map(|m| format!("pid {} ({})", m.pid, m.comm)).collect::<Vec<_>>().join(", "))
            .fix("stop (or wait for) every child process before exiting (§1.6, §11.4)"))
        }
    })
}

async fn stop_shutdown_waits(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let put = s.request("counter.put", json!({"key": "w", "value": 2, "adder": adder("h-wait")})).await?;
        let inv = next_invoke(&ctx, &mut s, ctx.t(), "during counter.put").await?;
        let shutdown = s.request("tether/shutdown", json!({})).await?;
        // The put is in flight and its handler waits on the host: the shutdown must wait too. A
        // plugin that answers it now does so at once, so a short look is enough to see it.
        let look = ctx.t().min(Duration::from_secs(1));
        let early = match s.response(&shutdown, look).await {
            Ok(r) => Some(r),
            Err(RecvError::Timeout) => None,
            Err(e) => return Err(recv_failure(&s, "tether/shutdown", e)),
        };
        if let Some(r) = early {
            return Err(Failure::new("tether/shutdown was answered while a counter.put was still in flight")
                .expected("the answer to the pending counter.put first, then the shutdown's")
                .got(show_response(&r))
                .fix("on shutdown, let in-flight requests finish (their host callbacks too) and answer them before answering tether/shutdown (§4.6)"));
        }
        s.respond_ok(inv.id.clone(), json!({"result": inv.a + inv.b})).await?;
        let resp =
            s.response(&put, ctx.grace_or_timeout()).await.map_err(|e| recv_failure(&s, "counter.put", e))?;
        expect_result(&resp, "the counter.put in flight at shutdown")?;
        let resp = s
            .response(&shutdown, ctx.grace_or_timeout())
            .await
            .map_err(|e| recv_failure(&s, "tether/shutdown", e))?;
        expect_result(&resp, "tether/shutdown").map(|_| ())
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "stop.shutdown",
            section: "§4.6 §1.6",
            title: "shutdown answered {}, then exit 0 after stdin closes, within the grace period",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(stop_shutdown),
        },
        Check {
            id: "stop.after-shutdown",
            section: "§4.6",
            title: "a request after shutdown: -32005",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(stop_after_shutdown),
        },
        Check {
            id: "stop.eof",
            section: "§1.6",
            title: "stdin closed without shutdown: exit 0 within the grace period",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(stop_eof),
        },
        Check {
            id: "stop.eof-uninitialized",
            section: "§1.6 §4.3",
            title: "stdin closed before initialize: exit 0 within the grace period",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(stop_eof_uninit),
        },
        Check {
            id: "stop.eof-pending-call",
            section: "§1.6 §7.2",
            title: "stdin closed while a sum is pending: exit 0 within the grace period",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(stop_eof_pending),
        },
        Check {
            id: "stop.no-leftovers",
            section: "§1.6 §11.4",
            title: "after the exit no process of the plugin's group is left",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(stop_no_leftovers),
        },
        Check {
            id: "stop.shutdown-waits",
            section: "§4.6",
            title: "tether/shutdown is answered only after a request in flight (waiting on a callback) is answered",
            needs: Needs::Counter,
            tier: Tier::Core,
            kind: s!(stop_shutdown_waits),
        },
    ]
}
