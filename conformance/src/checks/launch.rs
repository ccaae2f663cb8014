//! Launch: what a plugin does when it is started without (or with a wrong) magic cookie (§1.3).

use super::*;

async fn launch(ctx: Arc<Ctx>, mode: CookieMode) -> ScenarioOut {
    let mut s = match Session::start(&ctx.spec, mode, ctx.opts.verbose) {
        Ok(s) => s,
        Err(e) => return ctx.fail_open((start_failure(e), None)).await,
    };
    let what = if mode == CookieMode::Absent { "without the cookie" } else { "with a wrong cookie value" };
    let r: Result<(), Failure> = async {
        // "At once" (§1.3) is one second from the start, or, when the interpreter is slow to
        // start (a busy machine), one second from the plugin's sentence on stderr: by then it has
        // checked the cookie, and a plugin that goes on to read stdin still fails.
        const AT_ONCE: Duration = Duration::from_secs(1);
        let started = std::time::Instant::now();
        let mut status = s.wait_exit(AT_ONCE).await;
        let mut waited = "1 s after start".to_owned();
        if status.is_none() {
            match s.wait_first_stderr(ctx.opts.timeout).await {
                Some(said) => {
                    status = s.wait_exit(AT_ONCE.saturating_sub(said.elapsed())).await;
                    waited = "1 s after its message on stderr".to_owned();
                }
                None if s.stdout_bytes() > 0 => {
                    waited = format!(
                        "{} ms after start, having written {} bytes on stdout",
                        started.elapsed().as_millis(),
                        s.stdout_bytes()
                    )
                }
                None => {
                    waited =
                        format!("{} ms after start, with nothing on stderr", ctx.opts.timeout.as_millis())
                }
            }
        }
        let Some(status) = status else {
            return Err(Failure::new(format!("still running {waited} {what}, stdin open and silent"))
                .expected("exit status 1 at once, without reading stdin")
                .got("the process kept running")
                .fix(
                    "check the cookie variable before reading stdin; print a sentence on stderr and exit(1)",
                ));
        };
        s.wait_stderr_eof(Duration::from_millis(500)).await;
        // Let the stdout reader see everything.
        let _ = s.recv(Duration::from_millis(200)).await;
        if status.code() != Some(1) {
            return Err(Failure::new(format!("{status} {what}"))
                .expected("exit status 1")
                .got(status.to_string())
                .fix("exit with status 1 when the cookie is missing or wrong (§1.5)"));
        }
        if s.stdout_bytes() > 0 {
            return Err(Failure::new(format!("wrote {} bytes on stdout {what}", s.stdout_bytes()))
                .expected("nothing on stdout")
                .fix("write the message to stderr, not stdout"));
        }
        let err = s.stderr_all();
        if !err.chars().any(char::is_alphabetic) {
            return Err(Failure::new("no message on stderr")
                .expected("a sentence on stderr saying this is a Tether plugin not meant to be run directly")
                .got(show_bytes(err.as_bytes(), 200))
                .fix("print a human sentence to stderr before exiting"));
        }
        Ok(())
    }
    .await;
    ctx.close(s, r).await
}

async fn launch_no_cookie(ctx: Arc<Ctx>) -> ScenarioOut {
    launch(ctx, CookieMode::Absent).await
}

async fn launch_wrong_cookie(ctx: Arc<Ctx>) -> ScenarioOut {
    launch(ctx, CookieMode::Wrong).await
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "launch.no-cookie",
            section: "§1.3",
            title: "without the cookie: exit 1 within 1 s, a message on stderr, nothing on stdout",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(launch_no_cookie),
        },
        Check {
            id: "launch.wrong-cookie",
            section: "§1.3",
            title: "with a wrong cookie value: the same as without",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: s!(launch_wrong_cookie),
        },
    ]
}
