//! The `fds` transport (SPEC.md §13) with real plugins (the Rust, Python and Node kv examples,
//! and `tests/tty_plugin.py` on the Python SDK): frames on descriptors 3 and 4, the plugin's
//! stdin, stdout and stderr a pseudo-terminal that it keeps, the session's pipes close-on-exec,
//! the end of the read descriptor ending the plugin with status 0.

// Test code: a failed assumption is a failed test (helpers included, which clippy.toml does
// not cover).
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_reaped, capture_logs, eventually};
use serde_json::json;
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{ChildStdio, Error, PluginBuilder, PluginProcess, Stopped, Transport};
use tether_testkit::sdk_example;

/// A pseudo-terminal: the master end read by a thread into `screen`, the slave end given to
/// plugins as their stdin, stdout and stderr.
struct Pty {
    slave: OwnedFd,
    slave_path: PathBuf,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn open() -> Pty {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name: CString = ptsname(&master, Vec::new()).expect("ptsname");
        let slave_path = PathBuf::from(name.to_str().expect("a UTF-8 pts path"));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(&slave_path)
            .expect("open the pty slave");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = File::from(master);
        let shown = screen.clone();
        // Ends with EIO once every process closed the slave (the test included).
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                shown.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
            }
        });
        Pty { slave: slave.into(), slave_path, screen }
    }

    fn stdio(&self) -> ChildStdio {
        ChildStdio::from(self.slave.try_clone().expect("dup the slave"))
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The plugin on this terminal: its stdin, stdout and stderr are the slave.
    fn attach(&self, builder: PluginBuilder) -> PluginBuilder {
        builder
            .transport(Transport::Fds)
            .child_stdin(self.stdio())
            .child_stdout(self.stdio())
            .child_stderr(self.stdio())
            .start_timeout(Duration::from_secs(30))
            .call_timeout(Duration::from_secs(30))
    }
}

fn python(script: &str) -> PluginBuilder {
    PluginProcess::builder("python3").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
}

fn node(script: &str) -> PluginBuilder {
    PluginProcess::builder("node").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
}

/// Where each of a process's descriptors leads (`/dev/pts/3`, `pipe:[1234]`).
fn fd_links(pid: u32) -> Vec<(u32, String)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the plugin's descriptors");
    let mut links: Vec<(u32, String)> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            Some((fd, link.display().to_string()))
        })
        .collect();
    links.sort();
    links
}

/// Whether a descriptor of `pid` is close-on-exec (`O_CLOEXEC` in the octal `flags:` line of
/// `/proc/<pid>/fdinfo/<fd>`); `None` when it was closed meanwhile.
fn close_on_exec(pid: u32, fd: u32) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).expect("a flags line");
    Some(u32::from_str_radix(flags.trim(), 8).expect("octal flags") & 0o2_000_000 != 0)
}

/// What this test process hands down to every child it starts (descriptors without
/// close-on-exec that it inherited itself, such as a build tool's jobserver pipe): not Tether's
/// doing, so not counted against a plugin.
fn handed_down_by_the_test_runner() -> Vec<String> {
    let me = std::process::id();
    fd_links(me)
        .into_iter()
        .filter(|(fd, _)| close_on_exec(me, *fd) == Some(false))
        .map(|(_, link)| link)
        .collect()
}

/// The plugin kept the terminal (0, 1 and 2 are the pty's slave) and every pipe it holds, the
/// frames' among them, is close-on-exec (its children inherit none).
fn assert_terminal_kept_and_pipes_private(pid: u32, pty: &Pty) {
    let outside = handed_down_by_the_test_runner();
    let links: Vec<(u32, String)> = fd_links(pid).into_iter().filter(|(_, l)| !outside.contains(l)).collect();
    let slave = pty.slave_path.display().to_string();
    for fd in 0..3 {
        assert_eq!(
            links.iter().find(|(n, _)| *n == fd).map(|(_, l)| l.as_str()),
            Some(slave.as_str()),
            "{links:?}"
        );
    }
    let pipes: Vec<u32> = links.iter().filter(|(_, l)| l.starts_with("pipe:")).map(|(fd, _)| *fd).collect();
    assert!(pipes.len() >= 2, "the two frame pipes are not among {links:?}");
    for fd in pipes {
        assert_ne!(
            close_on_exec(pid, fd),
            Some(false),
            "descriptor {fd} of the plugin is inherited by its children: {links:?}"
        );
    }
}

/// Puts and gets a value through the fds transport, checks the descriptors, and shuts down: the
/// plugin exits 0 on the end of its read descriptor while its stdin (the pty) stays open.
async fn kv_over_fds(name: &str, builder: PluginBuilder) {
    capture_logs();
    let pty = Pty::open();
    let plugin = pty.attach(builder.name(name).offer::<KvClient>()).start().await.expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    store.put(&kv::PutParams { key: "hello".into(), value: "world".into() }).await.expect("put");
    let got = store.get(&kv::KeyParams { key: "hello".into() }).await.expect("get");
    assert_eq!(&got.value[..], b"world");
    let pid = plugin.pid();
    assert_terminal_kept_and_pipes_private(pid, &pty);
    let report = plugin.shutdown().await;
    assert_eq!((report.stopped, report.exit.code), (Stopped::Gracefully, Some(0)), "{report:?}");
    assert!(report.exit.stderr_tail.is_empty(), "stderr is the terminal, not captured: {report:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn the_rust_kv_example_serves_over_fds_and_keeps_the_terminal() {
    kv_over_fds("kv-rust-fds", PluginProcess::builder(sdk_example("kv"))).await;
}

#[tokio::test]
async fn the_python_kv_example_serves_over_fds_and_keeps_the_terminal() {
    kv_over_fds("kv-python-fds", python("../examples-python/kv.py")).await;
}

#[tokio::test]
async fn the_node_kv_example_serves_over_fds_and_keeps_the_terminal() {
    kv_over_fds("kv-node-fds", node("../examples-node/kv.mjs")).await;
}

#[tokio::test]
async fn a_plugin_over_fds_sees_a_terminal_and_its_prints_reach_it_not_the_protocol() {
    capture_logs();
    let pty = Pty::open();
    let plugin = pty
        .attach(python("tests/tty_plugin.py").name("tty-python").interface("tty", [1]))
        .start()
        .await
        .expect("start");
    let report = plugin.call_raw("tty.report", json!({})).await.expect("report");
    // The announcement is consumed: the plugin's own children do not see it.
    assert_eq!(report, json!({"isatty": [true, true, true], "transport": ""}));

    let text = "hello from the plugin, on its terminal";
    plugin.call_raw("tty.say", json!({ "text": text })).await.expect("say");
    assert!(eventually(Duration::from_secs(10), || pty.screen().contains(text)).await, "{:?}", pty.screen());
    // The print did not reach the frames: the session goes on, with nothing reported.
    let again = plugin.call_raw("tty.report", json!({})).await.expect("report after the print");
    assert_eq!(again["isatty"], json!([true, true, true]));
    assert!(
        common::logged("tty-python").iter().all(|l| !l.contains(text)),
        "{:?}",
        common::logged("tty-python")
    );

    // A child of the plugin inherits no pipe: not the frames', not any other.
    let child =
        plugin.call_raw("tty.child_fds", json!({})).timeout(Duration::from_secs(60)).await.expect("child");
    let fds = child["fds"].as_object().expect("an object of descriptors");
    let outside = handed_down_by_the_test_runner();
    let leaked: Vec<&str> = fds
        .values()
        .filter_map(|link| link.as_str())
        .filter(|link| link.starts_with("pipe:") && !outside.iter().any(|o| o == link))
        .collect();
    assert!(leaked.is_empty(), "the child inherited {leaked:?} (all: {fds:?})");

    let pid = plugin.pid();
    let stop = plugin.shutdown().await;
    assert_eq!((stop.stopped, stop.exit.code), (Stopped::Gracefully, Some(0)), "{stop:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn the_same_plugin_over_stdio_has_no_terminal() {
    capture_logs();
    let plugin = python("tests/tty_plugin.py")
        .name("tty-python-stdio")
        .interface("tty", [1])
        .start_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let report =
        plugin.call_raw("tty.report", json!({})).timeout(Duration::from_secs(30)).await.expect("report");
    assert_eq!(report, json!({"isatty": [false, false, false], "transport": ""}));
    let stop = plugin.shutdown().await;
    assert_eq!(stop.exit.code, Some(0), "{stop:?}");
}

#[tokio::test]
async fn a_plugin_that_does_not_know_the_fds_transport_fails_at_the_start_time_out() {
    // The test plugin reads frames from stdin only: told `fds:3,4`, it waits on a stdin that
    // stays open (the test holds the pipe's other end) for frames that never come.
    let (stdin, _held_open) = rustix::pipe::pipe().expect("pipe");
    let started = common::test_plugin("stdio-only", "normal")
        .transport(Transport::Fds)
        .child_stdin(stdin)
        .child_stdout(ChildStdio::Null)
        .child_stderr(ChildStdio::Null)
        .start_timeout(Duration::from_secs(2))
        .start()
        .await;
    match started {
        Err(error @ Error::StartTimeout { .. }) => {
            let message = error.to_string();
            assert!(
                message.starts_with("plugin stdio-only did not complete the handshake within 2s"),
                "{message}"
            );
        }
        other => panic!("expected a start time-out, got {other:?}"),
    }
}

#[tokio::test]
async fn child_stdio_needs_the_fds_transport() {
    let started =
        PluginProcess::builder(sdk_example("kv")).name("kv").child_stdout(ChildStdio::Null).start().await;
    match started {
        Err(Error::Config { plugin, reason }) => {
            assert_eq!(plugin, "kv");
            assert!(reason.contains("need the fds transport"), "{reason}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// Each SDK refuses a transport it does not know: exit status 1 and a sentence on stderr, without
/// waiting on stdin (which stays open here).
#[tokio::test]
async fn the_sdks_refuse_an_unknown_transport_with_status_1() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugins: [(&str, Vec<PathBuf>); 3] = [
        ("rust", vec![sdk_example("kv")]),
        ("python", vec!["python3".into(), root.join("examples-python/kv.py")]),
        ("node", vec!["node".into(), root.join("examples-node/kv.mjs")]),
    ];
    for (language, argv) in plugins {
        for value in ["socket", "fds:3", "fds:1,2"] {
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .env("TETHER_MAGIC_COOKIE", "7c1e4b9a-tether-reference-plugin")
                .env("TETHER_TRANSPORT", value)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let child = command.spawn().expect("spawn");
            let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("{language} waited with TETHER_TRANSPORT={value}"))
                .expect("output");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{language} {value}: {stderr}");
            assert!(output.stdout.is_empty(), "{language} {value} wrote on stdout");
            let expected = format!("unknown transport \"{value}\" in TETHER_TRANSPORT");
            assert!(stderr.contains(&expected), "{language} {value}: {stderr}");
        }
    }
}
