//! In-process plugins (`rust-host/IN_PROCESS.md`): the `kv` and `counter` examples built as a
//! process and as a library from the same source, called through the same typed clients; a
//! panicking handler; the fast path (a call answered on the first poll of the caller's future)
//! and the slow one (a handler that waits, a cancelled one); progress across the boundary;
//! clients that outlive the plugin; libraries that are not Tether plugins.

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;

use common::{capture_logs, logged};
use tether_host::interfaces::{Adder, AdderServer, CounterClient, KvClient};
use tether_host::spec::interfaces::{counter, kv};
use tether_host::spec::{codes, LogLevel};
use tether_host::{CallError, Error, PluginBuilder, PluginProcess, Stopped};
use tether_testkit::{cargo_library, sdk_example};

/// The same plugin both ways: as a child process and as a library loaded into this process.
fn both_ways(example: &str) -> [(&'static str, PluginBuilder); 2] {
    [
        ("process", PluginProcess::builder(sdk_example(example))),
        ("library", PluginProcess::library(cargo_library(&format!("tether-example-{example}-lib")))),
    ]
}

#[tokio::test]
async fn kv_through_the_same_typed_client_in_a_process_and_in_process() {
    capture_logs();
    for (way, builder) in both_ways("kv") {
        let name = format!("kv-{way}");
        let plugin = builder
            .name(&name)
            .offer::<KvClient>()
            .log_level(LogLevel::Debug)
            .call_timeout(Duration::from_secs(30))
            .start()
            .await
            .unwrap_or_else(|e| panic!("{way}: {e}"));
        assert_eq!(plugin.info().name, "kv-rust", "{way}");
        assert_eq!(plugin.interface(kv::NAME).expect("kv").version, 2, "{way}");
        let store = plugin.client::<KvClient>().expect("client");
        store.put(&kv::PutParams { key: "hello".into(), value: "world".into() }).await.expect("put");
        let got = store.get(&kv::KeyParams { key: "hello".into() }).await.expect("get");
        assert_eq!(&got.value[..], b"world", "{way}");
        let missing = store.get(&kv::KeyParams { key: "nope".into() }).await.expect_err("missing");
        assert_eq!(missing.remote().map(|e| e.code), Some(1001), "{way}");
        // `$/log` works in-process as through a pipe: the put's debug event reaches `tracing`.
        let seen = common::eventually(Duration::from_secs(5), || {
            logged(&name).iter().any(|l| l.contains("DEBUG") && l.contains("hello"))
        });
        assert!(seen.await, "{way}: {:?}", logged(&name));
        let report = plugin.shutdown().await;
        assert_eq!((report.stopped, report.exit.code), (Stopped::Gracefully, Some(0)), "{way}: {report:?}");
    }
}

struct HostAdder;

impl Adder for HostAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, tether_host::HandlerError> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[tokio::test]
async fn counter_calls_back_the_host_adder_in_a_process_and_in_process() {
    capture_logs();
    for (way, builder) in both_ways("counter") {
        let plugin = builder
            .interface(counter::NAME, [1])
            .call_timeout(Duration::from_secs(30))
            .start()
            .await
            .unwrap_or_else(|e| panic!("{way}: {e}"));
        let counters = plugin.client::<CounterClient>().expect("client");
        for value in [1, 2, 3] {
            let adder = plugin.serve_handle(AdderServer::new(HostAdder));
            let put = counter::PutParams { key: "hits".into(), value, adder: adder.clone() };
            counters.put(&put).handle(&adder).await.unwrap_or_else(|e| panic!("{way}: {e}"));
        }
        let total = counters.get(&counter::GetParams { key: "hits".into() }).await.expect("get");
        assert_eq!(total.value, 6, "{way}");
        let report = plugin.shutdown().await;
        assert_eq!((report.stopped, report.exit.code), (Stopped::Gracefully, Some(0)), "{way}: {report:?}");
    }
}

fn test_library() -> PathBuf {
    cargo_library("tether-test-library")
}

#[tokio::test]
async fn a_panicking_in_process_handler_is_an_error_answer_and_the_host_goes_on() {
    capture_logs();
    let plugin = PluginProcess::library(test_library())
        .offer::<KvClient>()
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    let panicked =
        store.put(&kv::PutParams { key: "panic".into(), value: "v".into() }).await.expect_err("panic");
    let error = panicked.remote().expect("an error answer");
    assert_eq!(error.code, codes::INTERNAL_ERROR, "{error:?}");
    assert!(error.message.contains("a panicking in-process handler"), "{error:?}");
    // The same instance answers the next call.
    store.put(&kv::PutParams { key: "calm".into(), value: "v".into() }).await.expect("put after a panic");
    plugin.ping(Duration::from_secs(30)).await.expect("ping");
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
}

#[tokio::test]
async fn a_client_that_outlives_its_in_process_plugin_fails_cleanly() {
    capture_logs();
    let library = cargo_library("tether-example-kv-lib");
    // Dropped without a shutdown: the instance is closed, and the client's calls fail with the
    // end of the session instead of reaching an unloaded library.
    let plugin = PluginProcess::library(&library).offer::<KvClient>().start().await.expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    store.put(&kv::PutParams { key: "a".into(), value: "1".into() }).await.expect("put");
    let exited = plugin.exited();
    drop(plugin);
    let exit = tokio::time::timeout(Duration::from_secs(30), exited).await.expect("closed in time");
    assert_eq!(exit.code, Some(0));
    let after = store.get(&kv::KeyParams { key: "a".into() }).timeout(Duration::from_secs(30)).await;
    let error = after.expect_err("the plugin is gone");
    assert!(error.close_reason().is_some(), "{error}");
    assert!(error.to_string().contains("was closed by the host"), "{error}");

    // After a shutdown, the same; and the library can be loaded again.
    let plugin = PluginProcess::library(&library).offer::<KvClient>().start().await.expect("start again");
    let store = plugin.client::<KvClient>().expect("client");
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
    let error = store.get(&kv::KeyParams { key: "a".into() }).await.expect_err("the plugin is gone");
    assert!(error.close_reason().is_some(), "{error}");
}

#[tokio::test]
async fn a_library_without_the_entry_symbol_is_refused_naming_the_file_and_the_symbol() {
    // A proc-macro crate is a shared library, and not a Tether plugin.
    let not_a_plugin = cargo_library("tether-macros");
    let error = PluginProcess::library(&not_a_plugin).start().await.expect_err("not a plugin");
    assert!(matches!(error, Error::Library { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&not_a_plugin.display().to_string()), "{text}");
    assert!(text.contains("does not export the symbol tether_plugin_entry"), "{text}");
    assert!(text.contains("not a Tether plugin library"), "{text}");
}

#[tokio::test]
async fn a_file_that_is_not_a_library_is_refused() {
    let dir = std::env::temp_dir().join(format!("tether-in-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("libnot-a-library.so");
    std::fs::write(&file, "not an ELF file\n").expect("write");
    let error = PluginProcess::library(&file).name("fake").start().await.expect_err("not a library");
    let text = error.to_string();
    assert!(text.starts_with("plugin fake: cannot load"), "{text}");
    assert!(text.contains("cannot open it"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fast path: a call whose handler completes without waiting is answered inside the first
/// poll of the caller's future (the request is dispatched, and its answer delivered, on the
/// caller's thread before that poll returns), so `now_or_never` sees it. Through a pipe the same
/// call cannot be: its answer needs the plugin process.
#[tokio::test]
async fn an_in_process_call_whose_handler_does_not_wait_is_answered_on_the_first_poll() {
    capture_logs();
    let [(_, process), (_, library)] = both_ways("kv");
    let plugin =
        library.offer::<KvClient>().call_timeout(Duration::from_secs(30)).start().await.expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    let put = store.put(&kv::PutParams { key: "k".into(), value: "v".into() }).into_future().now_or_never();
    assert!(matches!(put, Some(Ok(_))), "{put:?}");
    let got = store.get(&kv::KeyParams { key: "k".into() }).into_future().now_or_never();
    assert_eq!(got.expect("answered on the first poll").expect("get").value.0.as_ref(), b"v");
    let missing = store.get(&kv::KeyParams { key: "nope".into() }).into_future().now_or_never();
    let missing = missing.expect("an error answer on the first poll too").expect_err("missing");
    assert_eq!(missing.remote().map(|e| e.code), Some(1001));
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);

    let plugin =
        process.offer::<KvClient>().call_timeout(Duration::from_secs(30)).start().await.expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    let mut get = store.get(&kv::KeyParams { key: "k".into() }).into_future();
    assert!((&mut get).now_or_never().is_none(), "a pipe cannot answer within the first poll");
    plugin.shutdown().await;
}

/// `counter.put` calls back the host's `adder` handle before it answers: the callback is
/// dispatched on the same thread, inside the plugin's dispatch of the put, and its answer goes
/// back the same way, so the whole exchange completes within the caller's first poll too.
#[tokio::test]
async fn a_callback_to_the_host_is_answered_inline_within_the_callers_first_poll() {
    capture_logs();
    let [_, (_, library)] = both_ways("counter");
    let plugin = library
        .interface(counter::NAME, [1])
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let counters = plugin.client::<CounterClient>().expect("client");
    for value in [4, 5] {
        let adder = plugin.serve_handle(AdderServer::new(HostAdder));
        let put = counter::PutParams { key: "n".into(), value, adder: adder.clone() };
        let done = counters.put(&put).handle(&adder).into_future().now_or_never();
        assert!(matches!(done, Some(Ok(_))), "{done:?}");
    }
    let total = counters.get(&counter::GetParams { key: "n".into() }).await.expect("get");
    assert_eq!(total.value, 9);
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
}

/// The slow path: a handler that waits (a timer of the plugin's runtime) goes on in the
/// instance's own thread and answers from there; a handler waiting for its cancellation gets it
/// when the caller gives up (`$/cancelRequest` across the boundary), and its `$/log` reaches the
/// host's `tracing`.
#[tokio::test]
async fn in_process_handlers_that_wait_answer_later_and_can_be_cancelled() {
    capture_logs();
    let plugin = PluginProcess::library(test_library())
        .name("waits-in-process")
        .offer::<KvClient>()
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let store = plugin.client::<KvClient>().expect("client");
    let mut slow = store.put(&kv::PutParams { key: "slow".into(), value: "v".into() }).into_future();
    assert!((&mut slow).now_or_never().is_none(), "a handler that waits cannot answer on the first poll");
    slow.await.expect("the slow put answers later");

    let hang = store.put(&kv::PutParams { key: "hang".into(), value: "v".into() });
    let error = hang.timeout(Duration::from_millis(200)).await.expect_err("it hangs");
    assert!(matches!(error, CallError::Timeout(_)), "{error:?}");
    let cancelled = common::eventually(Duration::from_secs(10), || {
        logged("waits-in-process").iter().any(|l| l.contains("the hanging put was cancelled"))
    });
    assert!(cancelled.await, "{:?}", logged("waits-in-process"));
    plugin.ping(Duration::from_secs(30)).await.expect("the instance goes on");
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
}

/// `$/progress` crosses the boundary, and the value with it as an attachment (both announced
/// by default): the steps SPEC.md §9.1 fixes, in order, each with the total.
#[tokio::test]
async fn progress_and_attachments_cross_the_in_process_boundary() {
    capture_logs();
    let [_, (_, library)] = both_ways("kv");
    let plugin =
        library.offer::<KvClient>().call_timeout(Duration::from_secs(30)).start().await.expect("start");
    let len = 3 * 1024 * 1024 + 17;
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    plugin
        .call::<kv::Put>(&kv::PutParams { key: "big".into(), value: value.clone().into() })
        .on_progress(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone()))
        .await
        .expect("put");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dones: Vec<u64> = seen.iter().map(|p| p.done.expect("done")).collect();
    assert_eq!(dones, kv::put_progress_steps(len as u64));
    assert!(seen.iter().all(|p| p.total == Some(len as u64)));
    let got = plugin.call::<kv::Get>(&kv::KeyParams { key: "big".into() }).await.expect("get");
    assert!(got.value.0.as_ref() == value.as_slice(), "the value comes back whole");
    assert_eq!(plugin.shutdown().await.stopped, Stopped::Gracefully);
}
