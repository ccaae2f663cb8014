//! The host against the real example plugins of the SDK (`rust-sdk/examples/kv.rs`,
//! `counter.rs`), built on demand with the same cargo, profile and target directory as this
//! test (so `cargo test --workspace` works on a clean clone, CARGO_TARGET_DIR respected).

// Test code: a failed assumption is a failed test (helpers included, which clippy.toml does
// not cover).
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_reaped, capture_logs, logged};
use tether_host::interfaces::{Adder, AdderServer, CounterClient, KvClient};
use tether_host::spec::interfaces::{counter, kv};
use tether_host::spec::LogLevel;
use tether_host::{PluginProcess, Stopped};
use tether_testkit::sdk_example;

#[tokio::test]
async fn kv_round_trip_through_the_typed_client() {
    capture_logs();
    let plugin = PluginProcess::builder(sdk_example("kv"))
        .name("kv-example")
        .offer::<KvClient>() // kv versions 1 and 2, from the one declaration
        .log_level(LogLevel::Debug)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    assert_eq!(plugin.interface(kv::NAME).expect("kv").version, 2);
    let store = plugin.client::<KvClient>().expect("client");
    store.put(&kv::PutParams { key: "hello".into(), value: "world".into() }).await.expect("put");
    let got = store.get(&kv::KeyParams { key: "hello".into() }).await.expect("get");
    assert_eq!(&got.value[..], b"world");
    let missing = store.get(&kv::KeyParams { key: "nope".into() }).await.expect_err("missing");
    assert_eq!(missing.remote().map(|e| e.code), Some(1001));
    // The plugin's debug `$/log` for the put reached `tracing`, tagged with its name.
    let seen = common::eventually(Duration::from_secs(5), || {
        logged("kv-example").iter().any(|l| l.contains("DEBUG") && l.contains("hello"))
    });
    assert!(seen.await, "{:?}", logged("kv-example"));
    let wrong = plugin.client::<CounterClient>().expect_err("not declared");
    assert!(wrong.to_string().contains("it declares kv v2"), "{wrong}");
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
    assert_eq!(report.exit.code, Some(0));
    assert_reaped(pid).await;
}

struct HostAdder;

impl Adder for HostAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, tether_host::HandlerError> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[tokio::test]
async fn counter_calls_back_the_host_adder() {
    capture_logs();
    let plugin = PluginProcess::builder(sdk_example("counter"))
        .interface(counter::NAME, [1])
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let counters = plugin.client::<CounterClient>().expect("client");
    for value in [1, 2, 3] {
        let adder = plugin.serve_handle(AdderServer::new(HostAdder));
        let put = counter::PutParams { key: "hits".into(), value, adder: adder.clone() };
        counters.put(&put).handle(&adder).await.expect("put");
        assert!(!plugin.peer().serves_handle(&adder), "the scoped handle outlived its call");
    }
    let total = counters.get(&counter::GetParams { key: "hits".into() }).await.expect("get");
    assert_eq!(total.value, 6);
    let pid = plugin.pid();
    let report = plugin.shutdown().await;
    assert_eq!((report.stopped, report.exit.code), (Stopped::Gracefully, Some(0)), "{report:?}");
    assert_reaped(pid).await;
}

#[tokio::test]
async fn kv_version_1_has_no_delete_and_log_levels_can_change() {
    capture_logs();
    let plugin = PluginProcess::builder(sdk_example("kv"))
        .name("kv-example-v1")
        .interface(kv::NAME, [1])
        .start()
        .await
        .expect("start");
    assert_eq!(plugin.interface(kv::NAME).expect("kv").version, 1);
    assert!(!plugin.interface(kv::NAME).expect("kv").methods.contains_key("delete"));
    let store = plugin.client::<KvClient>().expect("client");
    let err = store.delete(&kv::KeyParams { key: "a".into() }).await.expect_err("not in v1");
    assert_eq!(err.remote().map(|e| e.code), Some(tether_host::spec::codes::METHOD_NOT_FOUND));

    // At the default level `info`, the plugin's debug log for a put is not even sent...
    store.put(&kv::PutParams { key: "quiet".into(), value: "v".into() }).await.expect("put");
    // ...after `$/setLogLevel debug`, it is, and reaches `tracing` with the plugin's name.
    plugin.set_log_level(LogLevel::Debug).expect("set level");
    store.put(&kv::PutParams { key: "loud".into(), value: "v".into() }).await.expect("put");
    let seen = common::eventually(Duration::from_secs(5), || {
        logged("kv-example-v1").iter().any(|l| l.contains("DEBUG") && l.contains("loud"))
    });
    assert!(seen.await, "{:?}", logged("kv-example-v1"));
    assert!(!logged("kv-example-v1").iter().any(|l| l.contains("quiet")));
    let pid = plugin.pid();
    assert_eq!(plugin.shutdown().await.exit.code, Some(0));
    assert_reaped(pid).await;
}
