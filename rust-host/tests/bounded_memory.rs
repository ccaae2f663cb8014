//! Memory and file descriptors stay bounded whatever the plugin sends: a huge frame is skipped without being
//! allocated, and a flood of logs is forwarded without being kept. Measured as this process's
//! resident set size (`/proc/self/statm`), in a test binary of its own, one case at a time.

// Test code: a failed assumption is a failed test (helpers included, which clippy.toml does
// not cover).
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_reaped, lines_logged, open_fds, rss_bytes, test_plugin};
use serde_json::json;
use tether_host::CallError;
use tether_host::{Stopped, STDERR_TAIL_BYTES};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn a_huge_frame_is_skipped_without_allocating_it_and_fails_its_call() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let huge = 96 * MIB;
    let plugin = test_plugin("huge-1", "huge-length")
        .env("TETHER_TEST_HUGE_BYTES", huge.to_string())
        .max_frame_size(1024 * 1024)
        .start()
        .await
        .expect("start");
    let before = rss_bytes();
    let err =
        plugin.call_raw("test.go", json!({})).timeout(Duration::from_secs(60)).await.expect_err("too large");
    let grown = rss_bytes().saturating_sub(before);
    let Some(CallError::ResponseTooLarge { size, max }) = err.call_error() else { panic!("{err}") };
    assert_eq!((*size, *max), (huge, 1024 * 1024));
    assert!(err.to_string().contains("huge-1"), "{err}");
    eprintln!("huge frame of {huge} bytes skipped; resident set grew by {grown} bytes");
    assert!(grown < huge / 3, "the host grew by {grown} bytes reading a {huge}-byte frame");
    // The stream resynchronised: the session goes on.
    plugin.call_raw("kv.put", json!({"key": "k", "value": ""})).await.expect("put after the huge frame");
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn a_log_flood_is_forwarded_with_bounded_memory() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let flood = 64 * MIB;
    let plugin = test_plugin("flood-1", "log-flood")
        .env("TETHER_TEST_FLOOD_BYTES", flood.to_string())
        .start()
        .await
        .expect("start");
    let lines_before = lines_logged();
    let before = rss_bytes();
    plugin.call_raw("test.go", json!({})).timeout(Duration::from_secs(120)).await.expect("flood");
    let grown = rss_bytes().saturating_sub(before);
    let forwarded = lines_logged() - lines_before;
    eprintln!("{flood} bytes of logs, {forwarded} lines forwarded; resident set grew by {grown} bytes");
    // Half the flood went through `$/log`, half through stderr, about 1 KB a line.
    assert!(forwarded as u64 > flood / 2048, "only {forwarded} log lines were forwarded");
    assert!(grown < 32 * MIB, "the host grew by {grown} bytes forwarding {flood} bytes of logs");
    assert!(plugin.stderr_retained_bytes() <= STDERR_TAIL_BYTES);
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn starting_and_ending_plugins_leaks_no_file_descriptor() {
    let _serial = ONE_AT_A_TIME.lock().await;
    async fn cycle(round: usize) {
        let ok = test_plugin(&format!("fds-ok-{round}"), "normal").start().await.expect("start");
        let pid = ok.pid();
        assert_eq!(ok.shutdown().await.stopped, Stopped::Gracefully);
        assert_reaped(pid).await;
        let crash = test_plugin(&format!("fds-crash-{round}"), "exit-mid-call").start().await.expect("start");
        let pid = crash.pid();
        crash.call_raw("test.go", json!({})).await.expect_err("crash");
        drop(crash);
        assert_reaped(pid).await;
        let dropped = test_plugin(&format!("fds-drop-{round}"), "never-answer").start().await.expect("start");
        let pid = dropped.pid();
        drop(dropped);
        assert_reaped(pid).await;
        let _ = test_plugin(&format!("fds-silent-{round}"), "silent-init")
            .start_timeout(Duration::from_millis(200))
            .start()
            .await
            .expect_err("start timeout");
    }
    // One round first, for what the runtime opens once (its signal pipe).
    cycle(0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = open_fds();
    for round in 1..=5 {
        cycle(round).await;
    }
    eprintln!("{before} descriptors open before five more rounds, {} after", open_fds());
    let settled = common::eventually(Duration::from_secs(5), || open_fds() <= before);
    assert!(settled.await, "{} descriptors open before, {} after", before, open_fds());
}
