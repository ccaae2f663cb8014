//! [`PluginSet`] with real plugin processes: the test plugin, the Rust, Python and Node kv
//! examples started in parallel and shut down together within one grace period (stubborn
//! plugins included); a member that does not start is named while the others run; dropping the
//! set kills every plugin.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_reaped, python_kv, test_plugin};
use serde_json::json;
use tether_host::{Error, PluginEvent, PluginProcess, PluginSet, Stopped, Supervision};
use tether_testkit::sdk_example;

const KV_MEMBERS: [&str; 3] = ["kv-rust", "kv-python", "kv-node"];
const STUBBORN: [&str; 4] = ["stubborn-1", "stubborn-2", "stubborn-3", "stubborn-4"];

fn set_of_seven() -> PluginSet {
    let node_kv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-node/kv.mjs");
    let mut set = PluginSet::new();
    set.insert("kv-rust", PluginProcess::builder(sdk_example("kv")).interface("kv", [1, 2]))
        .insert("kv-python", python_kv("ignored"))
        .insert_supervised(
            "kv-node",
            PluginProcess::builder("node")
                .arg(node_kv)
                .interface("kv", [1, 2])
                .start_timeout(Duration::from_secs(30)),
            Supervision::new(),
        );
    // Plugins that answer neither `tether/shutdown` nor SIGTERM: only the kill ends them.
    for name in STUBBORN {
        set.insert(name, test_plugin(name, "ignore-sigterm").env("TETHER_TEST_IGNORE_SHUTDOWN", "1"));
    }
    set
}

#[tokio::test]
async fn a_set_starts_its_plugins_together_and_shuts_them_down_within_one_grace_period() {
    let mut set = set_of_seven();
    let mut events = set.subscribe();
    set.start_all().await.expect("every plugin starts");
    let mut started = BTreeSet::new();
    for _ in 0..7 {
        match events.try_recv() {
            Ok(PluginEvent::Started { plugin, .. }) => started.insert(plugin.to_string()),
            other => panic!("expected a start: {other:?}"),
        };
    }
    let expected: BTreeSet<String> =
        KV_MEMBERS.iter().chain(STUBBORN.iter()).map(|s| s.to_string()).collect();
    assert_eq!(started, expected);
    assert_eq!(set.names().count(), 7);
    for name in KV_MEMBERS {
        let plugin = set.get(name).expect("started");
        assert_eq!(plugin.name(), name);
        plugin.call_raw("kv.put", json!({"key": "k", "value": "dg=="})).await.expect("put");
        let got = plugin.call_raw("kv.get", json!({"key": "k"})).await.expect("get");
        assert_eq!(got, json!({"value": "dg=="}), "{name}");
    }
    let pids: Vec<u32> = expected.iter().map(|n| set.get(n).and_then(|p| p.pid()).expect("pid")).collect();
    let grace = Duration::from_secs(2);
    let began = Instant::now();
    let reports = set.shutdown_all(grace).await;
    let took = began.elapsed();
    eprintln!("shutdown_all of 7 plugins (4 stubborn) with a {grace:?} grace took {took:?}");
    // One by one, the four stubborn plugins alone would take 4 x 2 s; together, about 2 s. The
    // bound leaves 4 s for a loaded machine.
    assert!(took < grace + Duration::from_secs(4), "the shutdown took {took:?}");
    assert_eq!(reports.len(), 7);
    for name in KV_MEMBERS {
        let report = reports[name].as_ref().expect("was running");
        assert_eq!((report.stopped, report.exit.code), (Stopped::Gracefully, Some(0)), "{name}: {report:?}");
    }
    for name in STUBBORN {
        let report = reports[name].as_ref().expect("was running");
        assert_eq!((report.stopped, report.exit.signal), (Stopped::Killed, Some(9)), "{name}: {report:?}");
    }
    assert_eq!(set.names().count(), 0);
    for pid in pids {
        assert_reaped(pid).await;
    }
}

#[tokio::test]
async fn a_member_that_does_not_start_is_named_and_the_others_run() {
    let mut set = PluginSet::new();
    set.insert("good", test_plugin("good", "normal"))
        .insert("missing", PluginProcess::builder("/nonexistent/tether-plugin"))
        // The test plugin speaks kv versions 1 and 2 only.
        .insert("too-new", test_plugin("too-new", "normal").interface("kv", [3]));
    let error = set.start_all().await.expect_err("two members fail");
    let Error::SetStart { failed } = &error else { panic!("{error}") };
    let names: Vec<&str> = failed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["missing", "too-new"]);
    assert!(matches!(failed[0].1, Error::Spawn { .. }), "{}", failed[0].1);
    assert!(matches!(failed[1].1, Error::VersionMismatch { .. }), "{}", failed[1].1);
    let text = error.to_string();
    assert!(
        text.starts_with("2 of the plugins did not start: missing: plugin missing: cannot start"),
        "{text}"
    );
    assert!(text.contains("too-new: plugin too-new: no common version for interface kv"), "{text}");
    // The good one runs and answers.
    assert!(set.get("missing").is_none());
    let good = set.get("good").expect("started");
    let echoed = good.call_raw("test.echo", json!({"hi": true})).await.expect("echo");
    assert_eq!(echoed, json!({"hi": true}));
    // Dropping the set kills it.
    let pid = good.pid().expect("running");
    drop(set);
    assert_reaped(pid).await;
}
