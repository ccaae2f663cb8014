//! The plugin side of the lifecycle in memory, with exact wire strings.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{MemKv, Wire};
use tether::interfaces::{CounterServer, KvServer};
use tether::spec::interfaces::counter;
use tether::spec::Empty;
use tether::{Error, Plugin, RequestContext};

struct OneShotCounter;

impl tether::interfaces::Counter for OneShotCounter {
    async fn put(&self, p: counter::PutParams, cx: RequestContext) -> Result<Empty, Error> {
        let sum = cx
            .client::<tether::interfaces::AdderClient>(p.adder)
            .sum(&counter::SumParams { a: 0, b: p.value })
            .await?;
        tracing::info!(result = sum.result, "summed");
        Ok(Empty {})
    }
    async fn get(&self, _: counter::GetParams) -> Result<counter::GetResult, Error> {
        Ok(counter::GetResult { value: 0 })
    }
}

/// A plugin in memory, its `tracing` events forwarded while the guard lives (the test runs on
/// a current-thread runtime: every task runs on this thread).
fn plugin() -> (Wire, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let plugin = Plugin::new("test-plugin", "1.2.3")
        .interface(KvServer::new(MemKv::default()))
        .interface(CounterServer::new(OneShotCounter));
    let layer = plugin.log_layer();
    let _session = plugin.start(xr, xw);
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (Wire::new(yr, yw), guard)
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"interfaces":{"kv":[1],"counter":[1],"other":[3]},"host":{"name":"h","version":"0"},"capabilities":{},"maxFrameSize":33554432,"logLevel":"debug"}}"#;

#[tokio::test]
async fn lifecycle_and_shutdown() {
    let (mut wire, _logs) = plugin();
    wire.send(r#"{"jsonrpc":"2.0","id":0,"method":"tether/ping"}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32002,"message":"the session is not initialized: send tether/initialize first"}}"#
    );
    // Notifications before initialize are ignored.
    wire.send(r#"{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":"error"}}"#).await;
    wire.send(&INIT.replace("33554432", "1000")).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid params: maxFrameSize must be at least 1048576 bytes, got 1000"}}"#
    );
    wire.send(INIT).await;
    let init: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(init["id"], 1);
    let result = &init["result"];
    assert_eq!(result["protocolVersion"], 1);
    assert_eq!(result["plugin"], serde_json::json!({"name": "test-plugin", "version": "1.2.3"}));
    assert_eq!(result["interfaces"]["kv"]["version"], 1);
    assert_eq!(result["interfaces"]["counter"]["methods"]["put"]["params"]["type"], "object");
    assert!(result["interfaces"].get("other").is_none());
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"tether/ping","params":{}}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
    wire.send(r#"{"jsonrpc":"2.0","id":3,"method":"kv.delete","params":{"key":"a"}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"method not found: kv.delete (kv.delete needs kv version 2; this session uses kv version 1)","data":{"method":"kv.delete","reason":"kv.delete needs kv version 2; this session uses kv version 1"}}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":4,"method":"other.x","params":{}}"#).await;
    assert!(wire.recv().await.contains(r#""code":-32601"#));
    wire.send(r#"{"jsonrpc":"2.0","id":5,"method":"tether/nope","params":{}}"#).await;
    assert!(wire.recv().await.contains(r#""code":-32601"#));

    // A put in flight: the plugin invokes `sum` on the host's handle.
    wire.send(r#"{"jsonrpc":"2.0","id":6,"method":"counter.put","params":{"key":"k","value":4,"adder":{"$handle":"h1","interface":"adder"}}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":1,"method":"tether/invoke","params":{"handle":"h1","method":"sum","params":{"a":0,"b":4}}}"#
    );
    // Shutdown waits for it; new requests get -32005 meanwhile.
    wire.send(r#"{"jsonrpc":"2.0","id":7,"method":"tether/shutdown","params":{}}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","id":8,"method":"tether/ping","params":{}}"#).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":8,"error":{"code":-32005,"message":"shutting down: no new requests are accepted"}}"#
    );
    assert!(wire.silent_for(50).await);
    wire.send(r#"{"jsonrpc":"2.0","id":1,"result":{"result":4}}"#).await;
    // The session's log level is debug: the handler's info event is forwarded.
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","method":"$/log","params":{"level":"info","message":"summed","target":"plugin","fields":{"result":4}}}"#
    );
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":6,"result":{}}"#);
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
    // End of input ends the session: the plugin closes its output.
    wire.close().await;
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), wire.next()).await.unwrap(), None);
}

#[tokio::test]
async fn second_initialize_and_log_levels() {
    let (mut wire, _logs) = plugin();
    wire.send(INIT).await;
    wire.recv().await;
    wire.send(INIT).await;
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"invalid request: the session is already initialized"}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":"warn"}}"#).await;
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"counter.put","params":{"key":"k","value":4,"adder":{"$handle":"h1","interface":"adder"}}}"#).await;
    assert!(wire.recv().await.contains(r#""method":"tether/invoke""#));
    wire.send(r#"{"jsonrpc":"2.0","id":1,"result":{"result":4}}"#).await;
    // No $/log: info is below warn.
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
}

#[tokio::test]
async fn a_log_above_the_maximum_frame_size_is_dropped() {
    let (mut wire, _logs) = plugin();
    wire.send(&INIT.replace("33554432", "1048576")).await;
    assert!(wire.recv().await.contains(r#""protocolVersion":1"#));
    // Dropped (and reported on stderr), never written (SPEC.md §2.2); the next one goes out.
    tracing::warn!("{}", "L".repeat(1 << 20));
    tracing::warn!("after the big one");
    assert_eq!(
        wire.recv().await,
        r#"{"jsonrpc":"2.0","method":"$/log","params":{"level":"warn","message":"after the big one","target":"plugin"}}"#
    );
    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"tether/ping"}"#).await;
    assert_eq!(wire.recv().await, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
}
