//! The broker callback (go-plugin's bidirectional example): the host serves an `adder` handle
//! and the `counter` plugin calls back into it on every put.
//!
//! ```sh
//! cargo build --example counter -p tether
//! cargo run --example counter_host -p tether-host -- target/debug/examples/counter
//! ```

use tether_host::interfaces::{Adder, AdderServer, CounterClient};
use tether_host::spec::interfaces::counter;
use tether_host::PluginProcess;

/// The host's `adder`: the plugin asks it for every new value.
struct HostAdder;

impl Adder for HostAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, tether_host::HandlerError> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("tether_host=info").init();
    let program = std::env::args().nth(1).unwrap_or_else(|| "target/debug/examples/counter".into());

    let plugin = PluginProcess::builder(program).offer::<CounterClient>().start().await?;
    let counters = plugin.client::<CounterClient>()?;

    for value in [1, 2, 3] {
        // A handle scoped to the call that carries it: it expires with the answer.
        let adder = plugin.serve_handle(AdderServer::new(HostAdder));
        let put = counter::PutParams { key: "hits".into(), value, adder: adder.clone() };
        counters.put(&put).handle(&adder).await?;
    }
    let total = counters.get(&counter::GetParams { key: "hits".into() }).await?;
    println!("hits = {}", total.value);

    let report = plugin.shutdown().await;
    println!("the plugin stopped {:?} with {}", report.stopped, report.exit);
    Ok(())
}
