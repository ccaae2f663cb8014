//! A plugin through a stdio tunnel (issue 11, "Remote plugins"): `tests/relay.py` behaves like
//! `ssh host cmd` as far as the host can tell (the plugin runs detached, in its own session, out
//! of reach of the host's process-group kill). Calls work through it; `shutdown()` ends the remote
//! plugin through end of stdin; `kill()` reaches the tunnel only, and the plugin then exits on its
//! own because its stdin ended (SPEC.md §1.6).

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{alive, assert_reaped, capture_logs, eventually};
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{PluginBuilder, PluginProcess, Stopped};
use tether_testkit::sdk_example;

/// How long a detached plugin may take to notice the end of its stdin and exit: generous, the
/// machine is shared.
const EXIT_BOUND: Duration = Duration::from_secs(20);

/// The relay script committed beside this test.
fn relay_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("relay.py")
}

/// Files in which the relay's remote side reports the plugin's pid and how the plugin ended.
struct Reports {
    dir: PathBuf,
}

impl Reports {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tether-remote-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("report directory");
        Reports { dir }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn exit_file(&self) -> PathBuf {
        self.dir.join("exit")
    }

    /// The plugin's pid. The remote side writes it just after starting the plugin, which may
    /// answer the handshake first: wait for it.
    async fn plugin_pid(&self) -> u32 {
        let file = self.pid_file();
        assert!(eventually(EXIT_BOUND, || file.exists()).await, "the relay did not write the plugin's pid");
        let text = std::fs::read_to_string(self.pid_file()).expect("the relay wrote the plugin's pid");
        text.trim().parse().expect("a pid")
    }

    /// How the plugin ended ("code 0", "signal 9"), once the remote side wrote it.
    async fn plugin_exit(&self) -> String {
        let file = self.exit_file();
        let written = eventually(EXIT_BOUND, || file.exists()).await;
        assert!(written, "the remote side did not report the plugin's exit within {EXIT_BOUND:?}");
        std::fs::read_to_string(file).expect("exit report")
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process group and session of a process, from `/proc/<pid>/stat`.
fn group_and_session(pid: u32) -> (i64, i64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields[2].parse().expect("pgrp"), fields[3].parse().expect("session"))
}

/// The host's view: the program is `python3 relay.py PLUGIN...`, like `ssh -T host PLUGIN...`.
fn through_relay(name: &str, reports: &Reports, plugin: &[&std::ffi::OsStr]) -> PluginBuilder {
    capture_logs();
    PluginProcess::builder("/usr/bin/python3")
        .arg(relay_script())
        .args(plugin)
        .name(name)
        .offer::<KvClient>()
        .env("TETHER_RELAY_PID_FILE", reports.pid_file())
        .env("TETHER_RELAY_EXIT_FILE", reports.exit_file())
        .call_timeout(Duration::from_secs(30))
        .start_timeout(Duration::from_secs(30))
        .grace_period(Duration::from_secs(5))
}

/// The Rust kv example through the relay.
fn rust_kv(name: &str, reports: &Reports) -> PluginBuilder {
    let kv = sdk_example("kv");
    through_relay(name, reports, &[kv.as_os_str()])
}

/// Asserts that the plugin runs in another session than the relay (so the relay's process-group
/// kill cannot reach it) and returns its pid.
async fn detached_plugin(plugin: &PluginProcess, reports: &Reports) -> u32 {
    let relay = plugin.pid();
    let remote = reports.plugin_pid().await;
    assert_ne!(remote, relay, "the plugin is not the relay");
    let (relay_group, _) = group_and_session(relay);
    let (remote_group, remote_session) = group_and_session(remote);
    assert_eq!(relay_group, i64::from(relay), "the host made the relay a process-group leader");
    assert_ne!(remote_group, relay_group, "the plugin is outside the relay's process group");
    assert_ne!(remote_session, relay_group, "the plugin runs in a session of its own");
    remote
}

#[tokio::test]
async fn handshake_and_calls_work_through_a_relay_with_a_1_mib_value() {
    let reports = Reports::new("calls");
    let plugin = rust_kv("kv-remote-calls", &reports).start().await.expect("start through the relay");
    detached_plugin(&plugin, &reports).await;
    assert_eq!(plugin.interface(kv::NAME).expect("kv").version, 2);
    let store = plugin.client::<KvClient>().expect("client");
    store.put(&kv::PutParams { key: "small".into(), value: "hello".into() }).await.expect("put");
    let got = store.get(&kv::KeyParams { key: "small".into() }).await.expect("get");
    assert_eq!(&got.value[..], b"hello");
    // Every byte value, so a tunnel that altered any byte (a TTY's \n -> \r\n) would show.
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    store.put(&kv::PutParams { key: "big".into(), value: big.clone().into() }).await.expect("put 1 MiB");
    let got = store.get(&kv::KeyParams { key: "big".into() }).await.expect("get 1 MiB");
    assert_eq!(got.value.len(), big.len());
    assert!(got.value[..] == big[..], "the 1 MiB value came back altered");
    let report = plugin.shutdown().await;
    assert_eq!(report.exit.code, Some(0), "{report:?}");
}

#[tokio::test]
async fn shutdown_ends_the_remote_plugin_through_end_of_stdin() {
    let reports = Reports::new("shutdown");
    let plugin = rust_kv("kv-remote-shutdown", &reports).start().await.expect("start through the relay");
    let remote = detached_plugin(&plugin, &reports).await;
    let relay = plugin.pid();
    let report = plugin.shutdown().await;
    // Graceful: the plugin answered `tether/shutdown` through the tunnel, the host closed the
    // relay's stdin, the relay closed the remote stdin, the plugin exited 0, then the relay.
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
    assert_eq!(report.exit.code, Some(0), "the relay passes on the plugin's status: {report:?}");
    assert_eq!(reports.plugin_exit().await, "code 0");
    assert!(eventually(EXIT_BOUND, || !alive(remote)).await, "the remote plugin {remote} still runs");
    assert_reaped(relay).await;
}

#[tokio::test]
async fn kill_reaches_the_relay_and_the_plugin_exits_on_end_of_stdin() {
    let reports = Reports::new("kill");
    let plugin = rust_kv("kv-remote-kill", &reports).start().await.expect("start through the relay");
    let remote = detached_plugin(&plugin, &reports).await;
    let relay = plugin.pid();
    let store = plugin.client::<KvClient>().expect("client");
    store.put(&kv::PutParams { key: "k".into(), value: "v".into() }).await.expect("put");
    drop(store);
    let exit = tokio::time::timeout(Duration::from_secs(10), plugin.kill()).await.expect("kill returns");
    // The process-group kill reached the relay: SIGKILL, and it is reaped by the time kill()
    // returned (the host waited for it).
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(!Path::new(&format!("/proc/{relay}")).exists(), "the relay {relay} was not reaped");
    // It did not reach the plugin: the plugin ends with status 0, which a SIGKILL cannot give,
    // because the relay's death closed its stdin (SPEC.md §1.6).
    assert_eq!(reports.plugin_exit().await, "code 0", "the plugin was killed instead of exiting");
    assert!(eventually(EXIT_BOUND, || !alive(remote)).await, "the remote plugin {remote} still runs");
}

#[tokio::test]
async fn dropping_the_host_handle_reaches_the_relay_and_the_plugin_exits_on_end_of_stdin() {
    let reports = Reports::new("drop");
    let plugin = rust_kv("kv-remote-drop", &reports).start().await.expect("start through the relay");
    let remote = detached_plugin(&plugin, &reports).await;
    let relay = plugin.pid();
    drop(plugin);
    assert!(eventually(EXIT_BOUND, || !alive(relay)).await, "the relay {relay} still runs");
    assert_eq!(reports.plugin_exit().await, "code 0", "the plugin was killed instead of exiting");
    assert!(eventually(EXIT_BOUND, || !alive(remote)).await, "the remote plugin {remote} still runs");
}

#[tokio::test]
async fn the_python_kv_example_works_through_a_relay_and_exits_when_the_relay_is_killed() {
    let reports = Reports::new("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-python/kv.py");
    let plugin = through_relay(
        "kv-remote-python",
        &reports,
        &["/usr/bin/python3".as_ref(), "-u".as_ref(), script.as_os_str()],
    )
    .start()
    .await
    .expect("start through the relay");
    let remote = detached_plugin(&plugin, &reports).await;
    let store = plugin.client::<KvClient>().expect("client");
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    store.put(&kv::PutParams { key: "big".into(), value: big.clone().into() }).await.expect("put 1 MiB");
    let got = store.get(&kv::KeyParams { key: "big".into() }).await.expect("get 1 MiB");
    assert!(got.value[..] == big[..], "the 1 MiB value came back altered");
    drop(store);
    let exit = plugin.kill().await;
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert_eq!(reports.plugin_exit().await, "code 0", "the plugin was killed instead of exiting");
    assert!(eventually(EXIT_BOUND, || !alive(remote)).await, "the remote plugin {remote} still runs");
}
