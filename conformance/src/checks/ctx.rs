//! Opening, initializing and closing a scenario's session, with what a failure carries.

use super::*;

impl Ctx {
    pub(super) fn t(&self) -> Duration {
        self.opts.timeout
    }

    /// The interfaces to offer: the declared ones (after the probe), else every selected one.
    pub(super) fn offer(&self) -> Vec<(&'static str, Vec<u32>)> {
        REFERENCE
            .iter()
            .filter(|(name, _)| self.opts.only.is_empty() || self.opts.only.iter().any(|o| o == name))
            .filter(|(name, _)| self.probe.as_ref().is_none_or(|p| p.interfaces.contains_key(*name)))
            .map(|(name, versions)| (*name, versions.to_vec()))
            .collect()
    }

    pub(super) fn has(&self, iface: &str) -> bool {
        self.offer().iter().any(|(n, _)| *n == iface)
    }

    pub(super) fn open(&self) -> Result<Session, Failure> {
        Session::start(&self.spec, CookieMode::Set, self.opts.verbose).map_err(start_failure)
    }

    /// Starts a plugin and initializes it with every declared interface at `level`.
    pub(super) async fn open_init(&self, level: LogLevel) -> Result<Session, (Failure, Option<Session>)> {
        let mut s = self.open().map_err(|f| (f, None))?;
        match self.init(&mut s, &self.offer(), level).await {
            Ok(_) => Ok(s),
            Err(f) => Err((f, Some(s))),
        }
    }

    pub(super) async fn init(
        &self,
        s: &mut Session,
        offer: &[(&str, Vec<u32>)],
        level: LogLevel,
    ) -> Result<Value, Failure> {
        let resp = s.initialize(&init_params(offer, level), self.t()).await?;
        expect_result(&resp, "tether/initialize").map_err(|f| {
            let mut f = f;
            f.summary = format!("initialize failed: {}", f.summary);
            f
        })
    }

    /// Ends a scenario: kills the plugin and attaches its stderr to a failure.
    pub(super) async fn close(&self, s: Session, r: Result<(), Failure>) -> ScenarioOut {
        if r.is_err() && s.timed_out {
            self.stalls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let verdict = self.verdict_with_stderr(&s, r);
        use std::sync::atomic::Ordering::Relaxed;
        let grace = if self.slow_exit.load(Relaxed) { Duration::from_millis(100) } else { self.opts.grace };
        let (obs, exited) = s.finish(grace).await;
        if !exited {
            self.slow_exit.store(true, Relaxed);
        }
        ScenarioOut { verdict, obs, probe: None }
    }

    pub(super) fn verdict_with_stderr(&self, s: &Session, r: Result<(), Failure>) -> Verdict {
        match r {
            Ok(()) => Verdict::Pass,
            Err(mut f) => {
                f.context = Some(Box::new(Context {
                    stderr: s.stderr_tail(12),
                    transcript: s.transcript().join(
                        "
",
                    ),
                }));
                Verdict::Fail(Box::new(f))
            }
        }
    }

    pub(super) async fn fail_open(&self, e: (Failure, Option<Session>)) -> ScenarioOut {
        match e {
            (f, Some(s)) => self.close(s, Err(f)).await,
            (f, None) => {
                ScenarioOut { verdict: Verdict::Fail(Box::new(f)), obs: Observations::default(), probe: None }
            }
        }
    }
}
