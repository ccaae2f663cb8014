//! The time-out and error defects of issue 11, each seen as a new user would meet it: calls and
//! starts that outlive their deadline, a deliberate kill logged as a warning, a kill deferred
//! until the runtime polls, an exit status only as text.

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{alive, assert_reaped, eventually, logged, test_plugin};
use serde_json::json;
use tether_host::{Error, ExitInfo};

/// A call made once the session ended because the plugin closed its stdout (it lives on) fails
/// within its own time-out, not after a fixed wait for an exit report.
#[tokio::test]
async fn a_call_after_the_plugin_closed_stdout_fails_within_its_timeout() {
    let plugin = test_plugin("closed-out-1", "close-stdout")
        .env("TETHER_TEST_LINGER", "1")
        .start()
        .await
        .expect("start");
    plugin.call_raw("test.go", json!({})).await.expect("answered before closing stdout");
    // The session ends a grace period (500 ms here) after the end of stdout.
    let peer = plugin.peer().clone();
    tokio::time::timeout(Duration::from_secs(10), peer.closed()).await.expect("the session ends");
    let started = Instant::now();
    let err =
        plugin.call_raw("test.echo", json!({})).timeout(Duration::from_millis(500)).await.expect_err("gone");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1900), "the call failed after {took:?}: {err}");
    assert!(err.to_string().contains("closed-out-1"), "{err}");
    let pid = plugin.pid();
    drop(plugin);
    assert_reaped(pid).await;
}

/// A call pending when the plugin closes its stdout times out at its own deadline, not before.
#[tokio::test]
async fn a_pending_call_when_stdout_closes_fails_at_its_deadline() {
    let plugin = test_plugin("closed-out-2", "close-stdout")
        .env("TETHER_TEST_LINGER", "1")
        .grace_period(Duration::from_secs(5))
        .start()
        .await
        .expect("start");
    plugin.call_raw("test.go", json!({})).await.expect("answered before closing stdout");
    let started = Instant::now();
    let err = plugin
        .call_raw("test.echo", json!({}))
        .timeout(Duration::from_millis(500))
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    // The old error path waited a fixed 2 s for an exit report whatever the call's time-out.
    assert!(took >= Duration::from_millis(500), "failed early, after {took:?}: {err}");
    assert!(took < Duration::from_millis(1900), "the call failed after {took:?}: {err}");
}

/// A plugin that closes its stdout before the handshake and lives on: `start()` fails within its
/// start time-out (it took 4 s for 2.5 s with a 2 s grace period) and the plugin is killed.
#[tokio::test]
async fn start_does_not_overrun_its_timeout_when_stdout_closes() {
    let started = Instant::now();
    let err = test_plugin("closed-out-3", "close-stdout-at-start")
        .env("TETHER_TEST_LINGER", "1")
        .grace_period(Duration::from_secs(2))
        .start_timeout(Duration::from_millis(2500))
        .start()
        .await
        .expect_err("no handshake");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3400), "start failed after {took:?}: {err}");
    assert!(err.to_string().contains("closed-out-3"), "{err}");
}

/// `kill()`, `drop()` and a shutdown that must escalate to SIGKILL are the host's own doing: no
/// warning "exited with signal 9".
#[tokio::test]
async fn a_deliberate_kill_is_not_a_warning() {
    let plugin = test_plugin("killed-quietly-1", "normal").start().await.expect("start");
    let exit = plugin.kill().await;
    assert_eq!(exit.signal, Some(9));
    let plugin = test_plugin("killed-quietly-2", "normal").start().await.expect("start");
    let pid = plugin.pid();
    drop(plugin);
    assert_reaped(pid).await;
    let plugin = test_plugin("killed-quietly-3", "ignore-sigterm")
        .env("TETHER_TEST_IGNORE_SHUTDOWN", "1")
        .grace_period(Duration::from_millis(200))
        .start()
        .await
        .expect("start");
    let report = plugin.shutdown().await;
    assert_eq!(report.exit.signal, Some(9), "{report:?}");
    // Let the exit watchers run, then look at what they logged and at which level.
    let mut warned = Vec::new();
    let settled = eventually(Duration::from_secs(3), || {
        warned = logged("killed-quietly-").into_iter().filter(|l| l.contains("exited with")).collect();
        warned.len() >= 3
    });
    settled.await;
    assert!(!warned.is_empty(), "the exits were not logged at all");
    for line in &warned {
        assert!(!line.contains(" WARN "), "a deliberate kill logged as a warning: {line}");
    }
    // A crash is still a warning.
    let plugin = test_plugin("crashed-loudly", "exit-mid-call").start().await.expect("start");
    let _ = plugin.call_raw("test.go", json!({})).await;
    let warned = eventually(Duration::from_secs(5), || {
        logged("crashed-loudly").iter().any(|l| l.contains(" WARN ") && l.contains("exited with status 3"))
    });
    assert!(warned.await, "{:?}", logged("crashed-loudly"));
}

/// Dropping a plugin sends the kill in `Drop` itself: the process dies while the runtime that
/// owns its supervisor is blocked and polls nothing.
#[test]
fn drop_kills_even_when_the_runtime_is_not_polled() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let plugin = test_plugin("dropped-blocked", "normal").start().await.expect("start");
        let pid = plugin.pid();
        drop(plugin);
        // Block the only thread of the runtime: no task runs until this returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "plugin {pid} still runs while the runtime is blocked");
    });
}

/// After a crash, every error a call can return carries the exit as a value: the host's own
/// error and a typed client's error.
#[tokio::test]
async fn errors_after_a_crash_carry_the_exit_as_a_value() {
    let plugin = test_plugin("crash-value", "exit-mid-call").start().await.expect("start");
    let err = plugin.call_raw("test.go", json!({})).await.expect_err("crash");
    let exit = err.exit().expect("the host error has the exit");
    assert_eq!(exit.code, Some(3));
    assert!(exit.stderr_tail.iter().any(|l| l.contains("crashing on purpose")), "{exit:?}");
    let raw = plugin
        .peer()
        .call_raw("kv.get", tether_host::RawValue::from_string("{\"key\":\"k\"}".into()).expect("json"));
    let err = raw.await.expect_err("gone");
    let exit = err
        .close_reason()
        .and_then(|r| r.detail::<ExitInfo>())
        .expect("the typed client's error has the exit");
    assert_eq!(exit.code, Some(3));
    assert!(exit.stderr_tail.iter().any(|l| l.contains("crashing on purpose")), "{exit:?}");
}

/// A plugin that writes a frame header far above the limit, then hangs: the start error shows
/// the header, not only "did not complete the handshake".
#[tokio::test]
async fn a_start_time_out_shows_the_huge_header_it_saw() {
    let err = test_plugin("huge-start", "huge-header-at-start")
        .start_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("no handshake");
    let Error::StartTimeout { seen, stderr_tail, .. } = &err else { panic!("not a start time-out: {err}") };
    assert!(seen.iter().any(|l| l.contains("Content-Length: 99999999999")), "{seen:?}");
    assert!(stderr_tail.iter().any(|l| l.contains("wrote a huge header")), "{stderr_tail:?}");
    assert!(err.to_string().contains("99999999999"), "{err}");
    assert!(!seen.iter().any(|l| l.contains(": \"\"")), "an empty showing: {seen:?}");
}

/// Half a frame, then silence: the start error shows the bytes, escaped.
#[tokio::test]
async fn a_start_time_out_shows_the_half_frame_it_saw() {
    let err = test_plugin("half-start", "half-frame-at-start")
        .start_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("no handshake");
    let text = err.to_string();
    assert!(text.contains(r#"Content-Length: 200\r\n\r\n{\"jsonrpc\":\"2.0\""#), "{text}");
    assert!(text.contains("half-start") && text.contains("1s"), "{text}");
}
