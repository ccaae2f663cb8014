//! The greeter application's host: declares the application's own `greeter` interface with
//! `#[tether_host::interface]`, calls a greeter plugin through the typed client, and exports the
//! interface file plugin authors and the judge use (`examples-python/greeter/greeter.json`).
//!
//! ```sh
//! cargo run --example greeter_host -p tether-host -- --export-interface > examples-python/greeter/greeter.json
//! cargo run --example greeter_host -p tether-host -- python3 examples-python/greeter/greeter.py
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_host::{HandlerError, PluginProcess};

/// Params of `greeter.hello`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// Who to greet.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The language; English when absent.
    #[serde(default)]
    pub lang: Lang,
}

/// The languages a greeter speaks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

/// Result of `greeter.hello`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HelloResult {
    /// The greeting.
    pub greeting: String,
}

/// Greets people by name: the application's own interface.
#[tether_host::interface(name = "greeter", versions = [1])]
pub trait Greeter {
    /// `greeter.hello`: a greeting for `name`; error 2001 for a language the plugin does not know.
    async fn hello(&self, params: HelloParams) -> Result<HelloResult, HandlerError>;
}

/// The interface file of `greeter`: what the declaration gives, plus what it cannot know (the
/// error code the application defines).
pub fn interface_file() -> String {
    GreeterClient::interface_document()
        .with_description("Greets people by name: the example of an application's own interface.")
        .with_error(
            2001,
            "greeter.hello in a language the plugin does not know",
            Some(serde_json::json!({ "type": "object", "properties": { "lang": { "type": "string" } }, "required": ["lang"] })),
        )
        .to_text()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--export-interface") {
        print!("{}", interface_file());
        return Ok(());
    }
    let Some((program, rest)) = args.split_first() else {
        return Err("usage: greeter_host --export-interface | greeter_host PROGRAM [ARGS...]".into());
    };
    let plugin = PluginProcess::builder(program).args(rest).offer::<GreeterClient>().start().await?;
    let greeter = plugin.client::<GreeterClient>()?;
    for lang in [Lang::En, Lang::Fr] {
        let answer = greeter.hello(&HelloParams { name: "Ada".into(), lang }).await?;
        println!("{}", answer.greeting);
    }
    let report = plugin.shutdown().await;
    println!("the plugin stopped {:?} with {}", report.stopped, report.exit);
    Ok(())
}
