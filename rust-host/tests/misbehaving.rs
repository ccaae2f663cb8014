//! The host against the test plugin misbehaving on purpose (`src/bin/tether-test-plugin.rs`):
//! each case ends with a specific error for the caller and a clean process table.

// Test code: a failed assumption is a failed test (helpers included, which clippy.toml does
// not cover).
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{
    alive, assert_gone, assert_reaped, eventually, logged, number_after, test_plugin, test_plugin_at,
};
use serde_json::json;
use tether_host::CallError;
use tether_host::{Error, PluginProcess, Stopped};
use tether_spec::MagicCookie;

/// Puts and gets a value: the session still works.
async fn session_works(plugin: &PluginProcess) {
    plugin.call_raw("kv.put", json!({"key": "k", "value": "dg=="})).await.expect("put");
    let got = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect("get");
    assert_eq!(got, json!({"value": "dg=="}));
}

#[tokio::test]
async fn normal_session_negotiates_and_shuts_down_gracefully() {
    let plugin = test_plugin("normal-1", "normal").start().await.expect("start");
    assert_eq!(plugin.protocol_version(), 1);
    assert_eq!(plugin.info().name, "tether-test-plugin");
    assert_eq!(plugin.interface("kv").expect("kv").version, 2);
    assert!(plugin.interface("kv").expect("kv").methods.contains_key("delete"));
    let missing = plugin.interface("nope").expect_err("not declared");
    assert!(matches!(missing, Error::InterfaceNotDeclared { .. }));
    let text = missing.to_string();
    assert!(text.contains("normal-1") && text.contains("nope") && text.contains("kv v2, test v1"), "{text}");
    session_works(&plugin).await;
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully);
    assert_eq!(report.exit.code, Some(0));
    assert_reaped(pid).await;
}

#[tokio::test]
async fn garbage_on_stdout_is_shown_and_the_session_goes_on() {
    let plugin = test_plugin("garbage-1", "garbage-stdout")
        .env("TETHER_TEST_GARBAGE", "hello from a stray print\n")
        .start()
        .await
        .expect("start");
    assert_eq!(plugin.call_raw("test.go", json!({})).await.expect("go"), json!({"ok": true}));
    let warnings = logged("hello from a stray print");
    assert!(warnings.iter().any(|l| l.contains("WARN") && l.contains("garbage-1")), "{warnings:?}");
    session_works(&plugin).await;
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn half_a_frame_then_silence_times_out_and_cancels() {
    let plugin = test_plugin("half-1", "half-frame").start().await.expect("start");
    let err =
        plugin.call_raw("test.go", json!({})).timeout(Duration::from_millis(500)).await.expect_err("timeout");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("half-1"), "{err}");
    let cancelled = eventually(Duration::from_secs(10), || {
        plugin.stderr_tail().iter().any(|l| l.starts_with("cancel received for id"))
    });
    assert!(cancelled.await, "no $/cancelRequest reached the plugin: {:?}", plugin.stderr_tail());
    let pid = plugin.pid();
    // Silent on stdout for good, it cannot answer `tether/shutdown`: it gets SIGTERM.
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Terminated, "{report:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn exit_in_the_middle_of_a_call_fails_it_at_once_with_status_and_stderr() {
    let plugin = test_plugin("crash-1", "exit-mid-call")
        .env("TETHER_TEST_EXIT_CODE", "3")
        .start()
        .await
        .expect("start");
    let started = Instant::now();
    let err = plugin.call_raw("test.go", json!({})).await.expect_err("crash");
    assert!(started.elapsed() < Duration::from_secs(5), "the call waited {:?}", started.elapsed());
    let Error::Exited { exit, .. } = &err else { panic!("not an exit: {err}") };
    assert_eq!(exit.code, Some(3));
    assert!(exit.stderr_tail.iter().any(|l| l.contains("crashing on purpose")), "{exit:?}");
    let text = err.to_string();
    assert!(
        text.contains("crash-1") && text.contains("status 3") && text.contains("crashing on purpose"),
        "{text}"
    );
    assert_eq!(plugin.exited().await.code, Some(3));
    // Calls after the exit fail the same way.
    let again = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("gone");
    assert!(matches!(again, Error::Exited { .. }), "{again}");
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::AlreadyExited);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn typed_clients_see_the_exit_status_too() {
    let plugin = test_plugin("crash-2", "exit-mid-call").start().await.expect("start");
    let raw =
        plugin.peer().call_raw("test.go", tether_host::RawValue::from_string("{}".into()).expect("json"));
    let err = raw.await.expect_err("crash");
    let CallError::Closed(reason) = &err else { panic!("not closed: {err}") };
    assert!(
        reason.message.contains("status 3") && reason.message.contains("crashing on purpose"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_call_never_answered_times_out_and_the_plugin_sees_the_cancel() {
    let plugin = test_plugin("never-1", "never-answer").start().await.expect("start");
    let err =
        plugin.call_raw("test.go", json!({})).timeout(Duration::from_millis(300)).await.expect_err("timeout");
    assert!(matches!(err.call_error(), Some(CallError::Timeout(_))), "{err}");
    let cancelled = eventually(Duration::from_secs(10), || {
        plugin.stderr_tail().iter().any(|l| l.starts_with("cancel received for id"))
    });
    assert!(cancelled.await, "{:?}", plugin.stderr_tail());
    session_works(&plugin).await;
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn the_default_call_timeout_applies() {
    let plugin = test_plugin("never-2", "never-answer")
        .call_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("start");
    let err = plugin.call_raw("test.go", json!({})).await.expect_err("timeout");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn answers_for_unknown_ids_are_ignored_with_a_warning() {
    let plugin = test_plugin("unknown-1", "unknown-ids").start().await.expect("start");
    assert_eq!(plugin.call_raw("test.go", json!({})).await.expect("go"), json!({}));
    let warned = eventually(Duration::from_secs(5), || {
        let w = logged("unknown request id");
        w.iter().any(|l| l.contains("unknown-1") && l.contains("424242"))
            && w.iter().any(|l| l.contains("unknown-1") && l.contains("stranger"))
    });
    assert!(warned.await, "{:?}", logged("unknown-1"));
    session_works(&plugin).await;
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn a_plugin_ignoring_sigterm_is_killed_after_two_grace_periods() {
    let plugin = test_plugin("stubborn-1", "ignore-sigterm").start().await.expect("start");
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Killed, "{report:?}");
    assert_eq!(report.exit.signal, Some(9));
    assert!(report.elapsed >= Duration::from_millis(900), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(10), "{report:?}");
    assert!(report.exit.stderr_tail.iter().any(|l| l.contains("ignoring SIGTERM")), "{report:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn a_plugin_that_does_not_answer_shutdown_gets_sigterm() {
    let plugin =
        test_plugin("deaf-1", "normal").env("TETHER_TEST_IGNORE_SHUTDOWN", "1").start().await.expect("start");
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Terminated, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(400), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(10), "{report:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_block_shutdown_and_dies_with_the_group() {
    let plugin = test_plugin("grandchild-1", "grandchild").start().await.expect("start");
    let found = eventually(Duration::from_secs(5), || {
        number_after(&plugin.stderr_tail(), "grandchild pid ").is_some()
    });
    assert!(found.await, "{:?}", plugin.stderr_tail());
    let grandchild = number_after(&plugin.stderr_tail(), "grandchild pid ").expect("pid");
    assert!(alive(grandchild));
    session_works(&plugin).await;
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
    assert!(report.elapsed < Duration::from_secs(10));
    assert_reaped(pid).await;
    assert_gone(grandchild).await;
}

#[tokio::test]
async fn dropping_the_plugin_kills_it() {
    let plugin = test_plugin("dropped-1", "grandchild").start().await.expect("start");
    let found = eventually(Duration::from_secs(5), || {
        number_after(&plugin.stderr_tail(), "grandchild pid ").is_some()
    });
    assert!(found.await);
    let grandchild = number_after(&plugin.stderr_tail(), "grandchild pid ").expect("pid");
    let pid = plugin.pid();
    drop(plugin);
    assert_reaped(pid).await;
    assert_gone(grandchild).await;
}

#[tokio::test]
async fn start_timeout_kills_a_plugin_that_never_answers_initialize() {
    let err = test_plugin("silent-1", "silent-init")
        .start_timeout(Duration::from_millis(500))
        .start()
        .await
        .expect_err("timeout");
    let Error::StartTimeout { stderr_tail, .. } = &err else { panic!("not a start timeout: {err}") };
    assert!(err.to_string().contains("silent-1") && err.to_string().contains("500ms"), "{err}");
    let pid = number_after(stderr_tail, "test plugin pid ").expect("pid in stderr");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn a_missing_cookie_is_reported_with_status_and_stderr() {
    let err = test_plugin("kv-nocookie", "normal")
        .cookie(MagicCookie::new("SOME_OTHER_APP_COOKIE", "x"))
        .env_remove("TETHER_MAGIC_COOKIE")
        .start()
        .await
        .expect_err("no cookie");
    let Error::ExitedBeforeHandshake { exit, .. } = &err else { panic!("{err}") };
    assert_eq!(exit.code, Some(1));
    let text = err.to_string();
    assert!(
        text.starts_with("plugin kv-nocookie exited with status 1 before the handshake: stderr: This program is a Tether plugin"),
        "{text}"
    );
}

#[tokio::test]
async fn a_version_mismatch_names_both_sides() {
    let err = test_plugin("old-1", "normal").interface("kv", [9]).start().await.expect_err("mismatch");
    let Error::VersionMismatch { interface, host, plugin_versions, .. } = &err else { panic!("{err}") };
    assert_eq!(
        (interface.as_str(), host.as_slice(), plugin_versions.as_slice()),
        ("kv", &[9][..], &[1, 2][..])
    );
    assert!(err.to_string().contains("old-1"), "{err}");
}

#[tokio::test]
async fn env_clear_passes_only_what_was_set_and_the_cookie() {
    let plugin = test_plugin("env-1", "normal")
        .env_clear()
        .env("TETHER_TEST_MODE", "normal")
        .env("ONLY_THIS", "yes")
        .start()
        .await
        .expect("start");
    let env = plugin.call_raw("test.env", json!({})).await.expect("env");
    let mut keys: Vec<&String> = env["env"].as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["ONLY_THIS", "TETHER_MAGIC_COOKIE", "TETHER_TEST_MODE"]);
    plugin.shutdown().await;
}

#[tokio::test]
async fn the_plugin_runs_in_the_given_directory() {
    let dir = std::env::temp_dir().canonicalize().expect("temp dir");
    let plugin = test_plugin("cwd-1", "normal").current_dir(&dir).start().await.expect("start");
    let env = plugin.call_raw("test.env", json!({})).await.expect("env");
    assert_eq!(env["cwd"], json!(dir.display().to_string()));
    plugin.shutdown().await;
}

#[tokio::test]
async fn a_pinned_checksum_runs_the_hashed_file() {
    let exe = tether_testkit::test_plugin();
    let digest = tether_host::sha256_file(&exe).expect("hash");
    let plugin = test_plugin("pinned-1", "normal").sha256(&digest).start().await.expect("start");
    session_works(&plugin).await;
    #[cfg(target_os = "linux")]
    {
        // The plugin was executed through the descriptor that was hashed.
        // The plugin was executed through the descriptor that was hashed: the kernel names the
        // process after the executed path's last component (`/proc/self/fd/N`), while argv[0]
        // stays the program's path.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", plugin.pid())).unwrap_or_default();
        assert!(comm.trim().chars().all(|c| c.is_ascii_digit()), "{comm:?}");
        let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", plugin.pid())).unwrap_or_default();
        assert!(cmdline.starts_with(&*exe.to_string_lossy()), "{cmdline:?}");
    }
    assert_eq!(plugin.shutdown().await.exit.code, Some(0));
}

#[tokio::test]
async fn a_checksum_mismatch_refuses_to_start() {
    let exe = tether_testkit::test_plugin();
    let wrong = "ab".repeat(32);
    let err = test_plugin("pinned-2", "normal").sha256(&wrong).start().await.expect_err("mismatch");
    let Error::ChecksumMismatch { expected, actual, .. } = &err else { panic!("{err}") };
    assert_eq!(expected, &wrong);
    assert_eq!(actual, &tether_host::sha256_file(&exe).expect("hash"));
    let text = err.to_string();
    assert!(text.contains("pinned-2") && text.contains(&wrong) && text.contains(actual.as_str()), "{text}");
    let bad = test_plugin("pinned-3", "normal").sha256("not hex").start().await.expect_err("bad digest");
    assert!(matches!(bad, Error::Config { .. }), "{bad}");
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let err = PluginProcess::builder("/nonexistent/plugin").start().await.expect_err("spawn");
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(err.to_string().starts_with("plugin plugin: cannot start /nonexistent/plugin"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_started_from_a_thread_that_ends_outlives_that_thread() {
    // The parent-death signal is tied to the thread that forks: the host forks from a thread
    // of its own, so a plugin started from a short-lived thread is not killed when it ends.
    let runtime = tokio::runtime::Handle::current();
    let builder = test_plugin("thread-1", "normal");
    let plugin =
        std::thread::spawn(move || runtime.block_on(builder.start())).join().expect("thread").expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(plugin.pid()), "{:?}", plugin.try_exited());
    session_works(&plugin).await;
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
}

/// Starts a plugin, retrying while the kernel still sees a file that was just written as busy
/// (ETXTBSY: another test's fork inherited its descriptor for a moment).
async fn start_retrying(builder: tether_host::PluginBuilder) -> Result<PluginProcess, Error> {
    for _ in 0..50 {
        match builder.clone().start().await {
            Err(Error::Spawn { source, .. }) if source.raw_os_error() == Some(26) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => return other,
        }
    }
    builder.start().await
}

#[tokio::test]
async fn a_pinned_script_is_hashed_and_run_by_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let exe = tether_testkit::test_plugin();
    let dir = std::env::temp_dir().join(format!("tether-host-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("plugin.sh");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{}' \"$@\"\n", exe.display())).expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let digest = tether_host::sha256_file(&script).expect("hash");

    let plugin =
        start_retrying(test_plugin_at(&script, "script-1", "normal").sha256(&digest)).await.expect("start");
    session_works(&plugin).await;
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;

    let builder = test_plugin_at(&script, "script-2", "normal").sha256("00".repeat(32));
    let err = start_retrying(builder).await.expect_err("mismatch");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ping_typed_requests_and_kill() {
    let plugin = test_plugin("kill-1", "normal").start().await.expect("start");
    plugin.ping(Duration::from_secs(5)).await.expect("ping");
    let missing = plugin
        .call::<tether_spec::interfaces::kv::Get>(&tether_spec::interfaces::kv::KeyParams {
            key: "no".into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.remote().map(|e| e.code), Some(1001));
    assert!(missing.to_string().starts_with("plugin kill-1: kv.get: key not found: no"), "{missing}");
    let pid = plugin.pid();
    let exit = plugin.kill().await;
    assert_eq!(exit.signal, Some(9));
    assert_reaped(pid).await;
}

#[tokio::test]
async fn with_the_parent_death_signal_a_plugin_starts_and_stops_the_same() {
    // Off by default; on, the host spawns with `fork` and a `pre_exec`.
    let plugin = test_plugin("pdeathsig", "normal").parent_death_signal(true).start().await.expect("start");
    session_works(&plugin).await;
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}
