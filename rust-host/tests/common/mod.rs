//! Helpers shared by the integration tests: the test plugin, a log capture, the process table.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tether_host::{PluginBuilder, PluginProcess};

/// The test plugin of this crate, in `mode`, with short grace periods, offering `kv` and `test`.
pub fn test_plugin(name: &str, mode: &str) -> PluginBuilder {
    test_plugin_at(tether_testkit::test_plugin(), name, mode)
}

/// The same, run as `program` (a wrapper script, for example).
pub fn test_plugin_at(program: impl Into<std::path::PathBuf>, name: &str, mode: &str) -> PluginBuilder {
    capture_logs();
    PluginProcess::builder(program)
        .name(name)
        .env("TETHER_TEST_MODE", mode)
        .interface("kv", [1, 2])
        .interface("test", [1])
        .grace_period(Duration::from_millis(500))
}

/// Log lines captured from `tracing` (short ones only, so that a flood does not fill memory).
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// How many log lines were written in all, kept or not.
static LINES: AtomicUsize = AtomicUsize::new(0);

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.fetch_add(1, Ordering::Relaxed);
        if buf.len() <= 1024 {
            let line = String::from_utf8_lossy(buf).into_owned();
            CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture as the global subscriber (once).
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The captured lines that mention `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// How many lines were logged in all.
pub fn lines_logged() -> usize {
    LINES.load(Ordering::Relaxed)
}

/// Waits until `f` holds, up to `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Whether a process runs (a zombie that init has not reaped yet counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
    }
}

/// Asserts that a process is gone, polling the process table for up to 10 s.
pub async fn assert_gone(pid: u32) {
    assert!(eventually(Duration::from_secs(10), || !alive(pid)).await, "process {pid} is still running");
}

/// Asserts that a plugin (a child of this process) was reaped: not even a zombie is left.
pub async fn assert_reaped(pid: u32) {
    let gone =
        eventually(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(
        gone.await,
        "plugin {pid} was not reaped: {:?}",
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
    );
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// The resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The first number after `prefix` in the lines.
pub fn number_after(lines: &[String], prefix: &str) -> Option<u32> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find(prefix)? + prefix.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The Python kv example (`examples-python/kv.py`), run by `/usr/bin/python3`, offering kv.
pub fn python_kv(name: &str) -> PluginBuilder {
    capture_logs();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-python/kv.py");
    PluginProcess::builder("/usr/bin/python3")
        .arg("-u")
        .arg(script)
        .name(name)
        .interface("kv", [1, 2])
        .start_timeout(Duration::from_secs(30))
        .grace_period(Duration::from_secs(2))
}

/// The next event that `matches`, skipping others, within a generous 30 s; panics (a failed
/// test) with the events seen when none comes.
pub async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<tether_host::PluginEvent>,
    what: &str,
    mut matches: impl FnMut(&tether_host::PluginEvent) -> bool,
) -> tether_host::PluginEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(event) if matches(&event) => return Some(event),
                Ok(event) => seen.push(event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    panic!("the test fell {n} events behind; seen: {seen:#?}")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    match found.await {
        Ok(Some(event)) => event,
        _ => panic!("no {what} event; seen: {seen:#?}"),
    }
}
