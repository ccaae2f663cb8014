//! Supervision with real plugin processes: restarts with back-off seen through the events, the
//! on-failure policy after a clean exit, giving up after too many restarts in the window, the
//! health check killing and restarting a plugin that stopped answering; the test plugin
//! (`rust-host/test-plugin/`) and the Python kv example (`examples-python/kv.py`).

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_reaped, next_event, python_kv, test_plugin};
use serde_json::json;
use tether_host::{Backoff, Error, PluginEvent, RestartPolicy, Supervised, Supervision};

/// Short delays for tests: 100 ms doubling, at most 1 s.
fn quick_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        reset_after: Duration::from_secs(60),
    }
}

/// Starts a crash-prone plugin with its events watched from the first: lazily, subscribed, then
/// woken by a lease. Returns the first pid.
async fn start_watched(
    builder: tether_host::PluginBuilder,
    supervision: Supervision,
) -> (Supervised, tokio::sync::broadcast::Receiver<PluginEvent>, u32) {
    let plugin = Supervised::start(builder, supervision.lazy(true)).await.expect("configured");
    let mut events = plugin.subscribe();
    drop(plugin.lease(Some(Duration::from_secs(30))).await.expect("started"));
    let first = next_event(&mut events, "start", |e| matches!(e, PluginEvent::Started { .. })).await;
    (plugin, events, started_pid(&first))
}

fn started_pid(event: &PluginEvent) -> u32 {
    match event {
        PluginEvent::Started { pid, .. } => *pid,
        other => panic!("not a start: {other:?}"),
    }
}

#[tokio::test]
async fn a_crashed_plugin_is_restarted_after_a_growing_back_off() {
    let builder = test_plugin("crashy", "exit-mid-call").call_timeout(Duration::from_secs(30));
    let plugin =
        Supervised::start(builder, Supervision::new().backoff(quick_backoff())).await.expect("start");
    let mut events = plugin.subscribe();
    let mut pid = plugin.pid().expect("running");
    for (attempt, delay_ms) in [(1, 100), (2, 200)] {
        let before_crash = std::time::Instant::now();
        // The call in flight fails with the exit; it is not retried.
        let crash = plugin.call_raw("test.go", json!({})).await.expect_err("the plugin crashes");
        assert_eq!(crash.exit().and_then(|e| e.code), Some(3), "{crash}");
        let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
        let PluginEvent::Exited { pid: gone, exit, restarting, delay, .. } = exited else { unreachable!() };
        assert_eq!((gone, exit.code, restarting), (pid, Some(3), true));
        assert_eq!(delay, Duration::from_millis(delay_ms), "attempt {attempt}");
        assert!(exit.stderr_tail.iter().any(|l| l.contains("crashing on purpose")), "{exit:?}");
        let started = next_event(&mut events, "start", |e| matches!(e, PluginEvent::Started { .. })).await;
        // Not before the back-off (a lower bound: the machine may be slow, never fast).
        assert!(before_crash.elapsed() >= delay, "restarted before its back-off");
        let new_pid = started_pid(&started);
        assert_ne!(new_pid, pid);
        let restarted =
            next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { .. })).await;
        assert_eq!(restarted, PluginEvent::Restarted { plugin: "crashy".into(), pid: new_pid, attempt });
        assert_reaped(pid).await;
        pid = new_pid;
        // The new incarnation answers (with fresh state).
        plugin.call_raw("kv.put", json!({"key": "k", "value": "v"})).await.expect("put after the restart");
    }
    let report = plugin.shutdown().await.expect("a process was running");
    assert!(report.exit.success(), "{report:?}");
    let stopped = next_event(&mut events, "stop", |e| matches!(e, PluginEvent::Stopped { .. })).await;
    assert!(matches!(stopped, PluginEvent::Stopped { report: Some(_), .. }));
    // Shut down by the application: calls fail, and no restart follows.
    let after = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("shut down");
    assert!(matches!(after, Error::NotRunning { .. }), "{after}");
    assert_eq!(after.to_string(), "plugin crashy is not running: it was shut down by the application");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn on_failure_does_not_restart_a_plugin_that_exited_with_status_0() {
    let builder = test_plugin("clean-exit", "normal")
        .env("TETHER_TEST_EXIT_AFTER_INIT_MS", "300")
        .env("TETHER_TEST_EXIT_CODE", "0");
    let supervision = Supervision::new().restart(RestartPolicy::OnFailure).backoff(quick_backoff());
    let (plugin, mut events, pid) = start_watched(builder, supervision).await;
    let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
    let PluginEvent::Exited { pid: gone, exit, restarting, .. } = exited else { unreachable!() };
    assert_eq!((gone, exit.code, restarting), (pid, Some(0), false));
    let error = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("not restarted");
    assert!(matches!(error, Error::NotRunning { .. }), "{error}");
    assert!(error.to_string().contains("the restart policy does not restart it"), "{error}");
    assert_eq!(plugin.pid(), None);
    assert!(plugin.shutdown().await.is_none(), "nothing was running");
}

#[tokio::test]
async fn always_restarts_a_plugin_that_exited_with_status_0() {
    let builder = test_plugin("always", "normal")
        .env("TETHER_TEST_EXIT_AFTER_INIT_MS", "300")
        .env("TETHER_TEST_EXIT_CODE", "0");
    let supervision = Supervision::new().restart(RestartPolicy::Always).backoff(quick_backoff());
    let (plugin, mut events, _) = start_watched(builder, supervision).await;
    let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
    assert!(matches!(exited, PluginEvent::Exited { restarting: true, .. }), "{exited:?}");
    next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { attempt: 1, .. })).await;
    drop(plugin.shutdown().await);
}

#[tokio::test]
async fn the_supervisor_gives_up_after_too_many_restarts_in_the_window() {
    let builder = test_plugin("crash-loop", "normal").env("TETHER_TEST_EXIT_AFTER_INIT_MS", "100");
    let backoff = Backoff { initial: Duration::from_millis(50), ..quick_backoff() };
    let supervision = Supervision::new().backoff(backoff).max_restarts(2, Duration::from_secs(60));
    let (plugin, mut events, _) = start_watched(builder, supervision).await;
    for attempt in [1, 2] {
        let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
        assert!(matches!(exited, PluginEvent::Exited { restarting: true, .. }), "{exited:?}");
        let restarted =
            next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { .. })).await;
        assert!(
            matches!(restarted, PluginEvent::Restarted { attempt: a, .. } if a == attempt),
            "{restarted:?}"
        );
    }
    let last = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
    assert!(
        matches!(&last, PluginEvent::Exited { restarting: false, exit, .. } if exit.code == Some(3)),
        "{last:?}"
    );
    let gave_up = next_event(&mut events, "give-up", |e| matches!(e, PluginEvent::GaveUp { .. })).await;
    let PluginEvent::GaveUp { restarts, window, reason, .. } = gave_up else { unreachable!() };
    assert_eq!((restarts, window), (2, Duration::from_secs(60)));
    assert!(reason.contains("exited with status 3"), "{reason}");
    let error = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("given up");
    assert!(matches!(error, Error::GaveUp { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with("plugin crash-loop: gave up restarting it after 2 restarts within 60s"),
        "{text}"
    );
    assert!(text.contains("stderr"), "the last exit shows its stderr: {text}");
}

#[tokio::test]
async fn an_unhealthy_plugin_is_killed_and_restarted() {
    let builder = test_plugin("deaf", "deaf");
    let supervision = Supervision::new().backoff(quick_backoff()).health_check(
        Duration::from_millis(100),
        Duration::from_millis(300),
        2,
    );
    let plugin = Supervised::start(builder, supervision).await.expect("start");
    let mut events = plugin.subscribe();
    let pid = plugin.pid().expect("running");
    // From this call on, the plugin answers nothing, not even `tether/ping`.
    let deaf = plugin.call_raw("test.go", json!({})).timeout(Duration::from_millis(200)).await;
    assert!(deaf.is_err(), "the deaf plugin answered: {deaf:?}");
    let unhealthy =
        next_event(&mut events, "unhealthy", |e| matches!(e, PluginEvent::Unhealthy { .. })).await;
    let PluginEvent::Unhealthy { pid: sick, reason, .. } = unhealthy else { unreachable!() };
    assert_eq!(sick, pid);
    assert!(reason.starts_with("2 failed pings in a row"), "{reason}");
    let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
    let PluginEvent::Exited { pid: gone, exit, restarting, .. } = exited else { unreachable!() };
    assert_eq!((gone, exit.signal, restarting), (pid, Some(9), true));
    let started = next_event(&mut events, "start", |e| matches!(e, PluginEvent::Started { .. })).await;
    assert_ne!(started_pid(&started), pid);
    assert_reaped(pid).await;
    plugin.call_raw("kv.put", json!({"key": "k", "value": "v"})).await.expect("the new incarnation answers");
    drop(plugin.shutdown().await);
}

#[tokio::test]
async fn a_killed_python_plugin_is_restarted_and_answers_again() {
    let supervision = Supervision::new().backoff(quick_backoff());
    let plugin = Supervised::start(python_kv("kv-python"), supervision).await.expect("start");
    let mut events = plugin.subscribe();
    let pid = plugin.pid().expect("running");
    plugin.call_raw("kv.put", json!({"key": "a", "value": "YQ=="})).await.expect("put");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
    assert!(
        matches!(&exited, PluginEvent::Exited { exit, restarting: true, .. } if exit.signal == Some(9)),
        "{exited:?}"
    );
    let restarted = next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { .. })).await;
    let PluginEvent::Restarted { pid: new_pid, attempt, .. } = restarted else { unreachable!() };
    assert_eq!(attempt, 1);
    assert_ne!(new_pid, pid);
    // A fresh incarnation: the old value is gone, the store works.
    let missing = plugin.call_raw("kv.get", json!({"key": "a"})).await.expect_err("fresh state");
    assert_eq!(missing.remote().map(|e| e.code), Some(1001), "{missing}");
    plugin.call_raw("kv.put", json!({"key": "a", "value": "YQ=="})).await.expect("put after the restart");
    let report = plugin.shutdown().await.expect("running");
    assert!(report.exit.success(), "{report:?}");
}

#[tokio::test]
async fn a_call_during_the_back_off_waits_for_the_restart_within_its_time_out() {
    let builder = test_plugin("patient", "exit-mid-call");
    let backoff = Backoff { initial: Duration::from_millis(1500), ..quick_backoff() };
    let plugin = Supervised::start(builder, Supervision::new().backoff(backoff)).await.expect("start");
    let mut events = plugin.subscribe();
    plugin.call_raw("test.go", json!({})).await.expect_err("the plugin crashes");
    next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { restarting: true, .. })).await;
    // Too short a time-out for the back-off: the call fails, saying what the plugin was doing.
    let early = plugin.call_raw("kv.get", json!({"key": "k"})).timeout(Duration::from_millis(100)).await;
    let early = early.expect_err("still backing off");
    assert!(matches!(early, Error::NotReady { .. }), "{early}");
    assert_eq!(early.to_string(), "plugin patient was not running within 100ms (it was waiting to restart)");
    // A long enough one waits for the new incarnation and is answered by it.
    plugin
        .call_raw("kv.put", json!({"key": "k", "value": "v"}))
        .timeout(Duration::from_secs(30))
        .await
        .expect("answered after the restart");
    next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { attempt: 1, .. })).await;
    drop(plugin.shutdown().await);
}

#[tokio::test]
async fn the_back_off_resets_once_the_plugin_stayed_up() {
    let builder = test_plugin("steady", "normal").env("TETHER_TEST_EXIT_AFTER_INIT_MS", "600");
    let backoff = Backoff { reset_after: Duration::from_millis(300), ..quick_backoff() };
    let (plugin, mut events, _) = start_watched(builder, Supervision::new().backoff(backoff)).await;
    for _ in 0..3 {
        let exited = next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { .. })).await;
        assert!(
            matches!(exited, PluginEvent::Exited { restarting: true, delay, .. } if delay == Duration::from_millis(100)),
            "{exited:?}"
        );
        let restarted =
            next_event(&mut events, "restart", |e| matches!(e, PluginEvent::Restarted { .. })).await;
        assert!(matches!(restarted, PluginEvent::Restarted { attempt: 1, .. }), "{restarted:?}");
    }
    drop(plugin.shutdown().await);
}

#[tokio::test]
async fn a_restart_that_fails_to_start_counts_as_a_failure_until_the_supervisor_gives_up() {
    // A wrapper that runs the test plugin once, then refuses to start it.
    let dir = std::env::temp_dir().join(format!("tether-supervision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let marker = dir.join("ran-once");
    let script = dir.join("once.sh");
    let body = format!(
        "#!/bin/sh\nif [ -e '{marker}' ]; then echo 'refusing to start again' >&2; exit 1; fi\n\
         touch '{marker}'\nexec '{plugin}'\n",
        marker = marker.display(),
        plugin = tether_testkit::test_plugin().display()
    );
    std::fs::write(&script, body).expect("script");
    let made_executable = std::process::Command::new("chmod").arg("+x").arg(&script).status().expect("chmod");
    assert!(made_executable.success());
    let builder =
        common::test_plugin_at(&script, "once", "normal").env("TETHER_TEST_EXIT_AFTER_INIT_MS", "200");
    let backoff = Backoff { initial: Duration::from_millis(50), ..quick_backoff() };
    let supervision = Supervision::new().backoff(backoff).max_restarts(2, Duration::from_secs(60));
    let (plugin, mut events, _) = start_watched(builder, supervision).await;
    next_event(&mut events, "exit", |e| matches!(e, PluginEvent::Exited { restarting: true, .. })).await;
    for restarting in [true, false] {
        let failed =
            next_event(&mut events, "failed start", |e| matches!(e, PluginEvent::StartFailed { .. })).await;
        let PluginEvent::StartFailed { error, restarting: again, .. } = failed else { unreachable!() };
        assert_eq!(again, restarting);
        assert!(error.contains("refusing to start again"), "{error}");
    }
    let gave_up = next_event(&mut events, "give-up", |e| matches!(e, PluginEvent::GaveUp { .. })).await;
    assert!(
        matches!(&gave_up, PluginEvent::GaveUp { reason, .. } if reason.contains("the start failed")),
        "{gave_up:?}"
    );
    let error = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("given up");
    assert!(error.to_string().contains("refusing to start again"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dropping_the_last_handle_kills_the_plugin_and_ends_the_supervisor() {
    let supervision = Supervision::new().restart(RestartPolicy::Always).backoff(quick_backoff());
    let plugin = Supervised::start(test_plugin("dropped", "normal"), supervision).await.expect("start");
    let mut events = plugin.subscribe();
    let pid = plugin.pid().expect("running");
    let clone = plugin.clone();
    drop(plugin);
    // A clone keeps it running.
    clone.call_raw("kv.put", json!({"key": "k", "value": "v"})).await.expect("put through the clone");
    drop(clone);
    assert_reaped(pid).await;
    // The supervisor ended without restarting it (even with `Always`): the events end.
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Ok(event) = events.recv().await {
            rest.push(event);
        }
        rest
    });
    let rest = rest.await.expect("the supervisor ended");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn giving_up_on_an_unhealthy_plugin_says_it_was_unhealthy() {
    let supervision = Supervision::new().max_restarts(0, Duration::from_secs(60)).health_check(
        Duration::from_millis(100),
        Duration::from_millis(300),
        1,
    );
    let plugin = Supervised::start(test_plugin("deaf-once", "deaf"), supervision).await.expect("start");
    let mut events = plugin.subscribe();
    let deaf = plugin.call_raw("test.go", json!({})).timeout(Duration::from_millis(200)).await;
    assert!(deaf.is_err(), "the deaf plugin answered: {deaf:?}");
    let gave_up = next_event(&mut events, "give-up", |e| matches!(e, PluginEvent::GaveUp { .. })).await;
    let PluginEvent::GaveUp { reason, .. } = gave_up else { unreachable!() };
    assert!(reason.contains("was unhealthy (1 failed pings in a row"), "{reason}");
    assert!(reason.contains("and was killed: signal 9 (SIGKILL)"), "{reason}");
    let error = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("given up");
    assert!(matches!(error, Error::GaveUp { .. }), "{error}");
}
