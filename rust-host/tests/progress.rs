//! Progress and trace context (SPEC.md §14, §15) with real plugin processes: the kv examples in
//! Rust and Python report the progress of a large put (§9.1), the time-out restarts on it, and
//! a call made in a host span is handled in a child span of the plugin.

// Test code: a failed assumption is a failed test (helpers included, which clippy.toml does
// not cover).
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{capture_logs, logged};
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::spec::{LogLevel, ProgressParams};
use tether_host::trace::{in_span, SpanContext};
use tether_host::{PluginBuilder, PluginProcess, Stopped};
use tether_testkit::sdk_example;

const LONG: Duration = Duration::from_secs(60);

fn rust_kv(name: &str) -> PluginBuilder {
    PluginProcess::builder(sdk_example("kv")).name(name)
}

fn python_kv(name: &str) -> PluginBuilder {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-python/kv.py");
    PluginProcess::builder("/usr/bin/python3").arg("-u").arg(script).name(name)
}

/// Puts `len` bytes with progress and checks every `$/progress` against SPEC.md §9.1.
async fn put_with_progress(builder: PluginBuilder) {
    let plugin =
        builder.offer::<KvClient>().call_timeout(LONG).start_timeout(LONG).start().await.expect("start");
    let len = 3 * 1024 * 1024 + 5;
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let seen: Arc<Mutex<Vec<ProgressParams>>> = Arc::default();
    let sink = seen.clone();
    let (call, latest) = plugin
        .call::<kv::Put>(&kv::PutParams { key: "big".into(), value: value.clone().into() })
        .on_progress(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone()))
        .watch_progress();
    call.await.expect("put");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dones: Vec<u64> = seen.iter().map(|p| p.done.expect("done")).collect();
    assert_eq!(dones, kv::put_progress_steps(len as u64), "{} progress notifications", seen.len());
    assert!(seen.iter().all(|p| p.total == Some(len as u64)));
    // The progress bar's view: the last one, the whole value.
    assert_eq!(latest.borrow().as_ref().and_then(|p| p.done), Some(len as u64));
    // The same put without asking: the answer, and no progress to anyone.
    plugin.call::<kv::Put>(&kv::PutParams { key: "big".into(), value: value.into() }).await.expect("put");
    let got = plugin.call::<kv::Get>(&kv::KeyParams { key: "big".into() }).await.expect("get");
    assert_eq!(got.value.len(), len);
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
}

#[tokio::test]
async fn the_rust_kv_example_reports_the_progress_of_a_large_put() {
    put_with_progress(rust_kv("kv-progress-rust")).await;
}

#[tokio::test]
async fn the_python_kv_example_reports_the_progress_of_a_large_put() {
    put_with_progress(python_kv("kv-progress-python")).await;
}

/// A call in a host span: the plugin's `$/log` for the put names the host's trace, and a span
/// of its own whose parent is the host's (SPEC.md §15).
async fn logs_name_the_hosts_trace(builder: PluginBuilder, name: &str) {
    capture_logs();
    let plugin = builder
        .offer::<KvClient>()
        .log_level(LogLevel::Debug)
        .call_timeout(LONG)
        .start_timeout(LONG)
        .start()
        .await
        .expect("start");
    let root = SpanContext::new_root();
    let put = kv::PutParams { key: format!("traced-{name}"), value: b"v".to_vec().into() };
    in_span(root.clone(), plugin.call::<kv::Put>(&put)).await.expect("put");
    let trace = root.trace_id();
    let seen = common::eventually(Duration::from_secs(10), || {
        logged(name).iter().any(|l| l.contains(&trace) && l.contains(&format!("traced-{name}")))
    });
    assert!(seen.await, "no log of {name} names trace {trace}: {:?}", logged(name));
    // A call outside any span carries no trace context: its log names none.
    let untraced = kv::PutParams { key: format!("untraced-{name}"), value: b"v".to_vec().into() };
    plugin.call::<kv::Put>(&untraced).await.expect("put");
    let logged_untraced = common::eventually(Duration::from_secs(10), || {
        logged(name).iter().any(|l| l.contains(&format!("untraced-{name}")))
    });
    assert!(logged_untraced.await);
    assert!(logged(&format!("untraced-{name}")).iter().all(|l| !l.contains("trace_id")));
    plugin.shutdown().await;
}

#[tokio::test]
async fn the_rust_plugins_logs_name_the_hosts_trace() {
    logs_name_the_hosts_trace(rust_kv("kv-trace-rust"), "kv-trace-rust").await;
}

#[tokio::test]
async fn the_python_plugins_logs_name_the_hosts_trace() {
    logs_name_the_hosts_trace(python_kv("kv-trace-python"), "kv-trace-python").await;
}
