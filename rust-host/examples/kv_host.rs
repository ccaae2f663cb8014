//! The README's host: start the `kv` example plugin, put a value, read it back, shut it down.
//!
//! ```sh
//! cargo build --example kv -p tether
//! cargo run --example kv_host -p tether-host -- target/debug/examples/kv
//! ```

use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::spec::LogLevel;
use tether_host::PluginProcess;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("tether_host=debug").init(); // the plugin's logs too
    let program = std::env::args().nth(1).unwrap_or_else(|| "target/debug/examples/kv".into());

    let plugin =
        PluginProcess::builder(program).offer::<KvClient>().log_level(LogLevel::Debug).start().await?;
    let store = plugin.client::<KvClient>()?;

    store.put(&kv::PutParams { key: "hello".into(), value: "world".into() }).await?;
    let got = store.get(&kv::KeyParams { key: "hello".into() }).await?;
    println!("hello = {}", String::from_utf8_lossy(&got.value));

    let report = plugin.shutdown().await;
    println!("the plugin stopped {:?} with {}", report.stopped, report.exit);
    Ok(())
}
