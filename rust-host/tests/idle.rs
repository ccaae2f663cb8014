//! Idle stop and lazy start with real plugin processes: a plugin without calls for the idle
//! time-out is shut down gracefully and started again by the next call; a lease keeps it up; a
//! lazy plugin starts on its first call. The test plugin and the Python kv example.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_reaped, next_event, python_kv, test_plugin};
use serde_json::json;
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{PluginEvent, Stopped, Supervised, Supervision};

/// Asserts the plugin was stopped for idleness, gracefully, and returns the pid stopped.
async fn idle_stopped(events: &mut tokio::sync::broadcast::Receiver<PluginEvent>) -> u32 {
    let stopped = next_event(events, "idle stop", |e| matches!(e, PluginEvent::IdleStopped { .. })).await;
    let PluginEvent::IdleStopped { pid, report, .. } = stopped else { unreachable!() };
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
    assert!(report.exit.success(), "{report:?}");
    pid
}

async fn started(events: &mut tokio::sync::broadcast::Receiver<PluginEvent>) -> u32 {
    match next_event(events, "start", |e| matches!(e, PluginEvent::Started { .. })).await {
        PluginEvent::Started { pid, .. } => pid,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_idle_plugin_is_stopped_and_the_next_call_starts_it_again() {
    // Lazy, so that the idle time-out cannot run out between the start and the first call.
    let supervision = Supervision::new().idle_timeout(Duration::from_millis(300)).lazy(true);
    let plugin = Supervised::start(test_plugin("idler", "normal"), supervision).await.expect("start");
    let mut events = plugin.subscribe();
    plugin.call_raw("kv.put", json!({"key": "k", "value": "v"})).await.expect("put");
    let first = started(&mut events).await;
    assert_eq!(idle_stopped(&mut events).await, first);
    assert_reaped(first).await;
    assert_eq!(plugin.pid(), None, "no process while idle");
    // The next call starts a new incarnation (fresh state) and is answered by it.
    let missing = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect_err("fresh state");
    assert_eq!(missing.remote().map(|e| e.code), Some(1001), "{missing}");
    let second = started(&mut events).await;
    assert_ne!(second, first);
    // Not a restart: an idle stop is not a failure.
    let next = next_event(&mut events, "second idle stop", |e| {
        matches!(e, PluginEvent::IdleStopped { .. } | PluginEvent::Restarted { .. })
    });
    assert!(matches!(next.await, PluginEvent::IdleStopped { pid, .. } if pid == second));
    assert!(plugin.shutdown().await.is_none(), "idle: nothing to shut down");
}

#[tokio::test]
async fn a_lease_or_a_call_in_flight_keeps_the_plugin_up() {
    let supervision = Supervision::new().idle_timeout(Duration::from_millis(200)).lazy(true);
    let builder = test_plugin("leased", "never-answer");
    let plugin = Supervised::start(builder, supervision).await.expect("start");
    let mut events = plugin.subscribe();
    let lease = plugin.lease(Some(Duration::from_secs(30))).await.expect("lease");
    let pid = started(&mut events).await;
    assert_eq!(lease.pid(), pid);
    // Five idle time-outs with the lease held: nothing happens.
    let quiet = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
    assert!(quiet.is_err(), "an event while leased: {quiet:?}");
    drop(lease);
    assert_eq!(idle_stopped(&mut events).await, pid);
    // A call that takes five idle time-outs starts the plugin and keeps it up until it ends.
    let slow = plugin.call_raw("test.go", json!({})).timeout(Duration::from_secs(1)).await;
    assert!(slow.expect_err("never answered").is_timeout());
    let second = match events.try_recv() {
        Ok(PluginEvent::Started { pid, .. }) => pid,
        other => panic!("expected the start alone: {other:?}"),
    };
    assert!(events.try_recv().is_err(), "stopped under a call in flight");
    assert_eq!(idle_stopped(&mut events).await, second);
}

#[tokio::test]
async fn a_lazy_plugin_starts_on_its_first_call() {
    let supervision = Supervision::new().lazy(true);
    let plugin = Supervised::start(test_plugin("lazy", "normal"), supervision).await.expect("configured");
    let mut events = plugin.subscribe();
    assert_eq!(plugin.pid(), None, "not started before a call");
    let echoed = plugin.call_raw("test.echo", json!({"x": 1})).await.expect("echo");
    assert_eq!(echoed, json!({"x": 1}));
    let pid = started(&mut events).await;
    assert_eq!(plugin.pid(), Some(pid));
    let report = plugin.shutdown().await.expect("running");
    assert_eq!(report.stopped, Stopped::Gracefully);
    assert_reaped(pid).await;
}

#[tokio::test]
async fn an_idle_python_plugin_is_stopped_and_started_again() {
    let supervision = Supervision::new().idle_timeout(Duration::from_millis(300)).lazy(true);
    let plugin = Supervised::start(python_kv("kv-idle-python"), supervision).await.expect("start");
    let mut events = plugin.subscribe();
    plugin.call_raw("kv.put", json!({"key": "a", "value": "YQ=="})).await.expect("put");
    let first = started(&mut events).await;
    assert_eq!(idle_stopped(&mut events).await, first);
    plugin.call_raw("kv.put", json!({"key": "b", "value": "Yg=="})).await.expect("put after the idle stop");
    let second = started(&mut events).await;
    assert_ne!(second, first);
    // Typed: a call, and a client through a lease.
    let got = plugin.call::<kv::Get>(&kv::KeyParams { key: "b".into() }).await.expect("get");
    assert_eq!(&got.value[..], b"b");
    let lease = plugin.lease(Some(Duration::from_secs(30))).await.expect("lease");
    assert_eq!(lease.pid(), second);
    let store = lease.client::<KvClient>().expect("kv client");
    store.put(&kv::PutParams { key: "c".into(), value: "c".into() }).await.expect("typed put");
    drop((store, lease));
    drop(plugin.shutdown().await);
}

#[tokio::test]
async fn without_an_idle_time_out_the_plugin_stays_up() {
    let plugin = Supervised::start(test_plugin("busy", "normal"), Supervision::new()).await.expect("start");
    let mut events = plugin.subscribe();
    let pid = plugin.pid().expect("running");
    plugin.call_raw("kv.put", json!({"key": "k", "value": "v"})).await.expect("put");
    let quiet = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
    assert!(quiet.is_err(), "an event without an idle time-out: {quiet:?}");
    assert_eq!(plugin.pid(), Some(pid));
    let got = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect("same incarnation, same state");
    assert_eq!(got, json!({"value": "v"}));
    drop(plugin.shutdown().await);
}
