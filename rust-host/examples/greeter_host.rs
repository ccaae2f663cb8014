//! The greeter application's host: declares the application's own `greeter` interface, and the
//! `audience` it serves to the plugin as a handle, with `#[tether_host::interface]`; calls a
//! greeter plugin through the typed client; and exports the interface files plugin authors and
//! the judge use (`examples-python/greeter/greeter.json` and `audience.json`).
//!
//! ```sh
//! cargo run --example greeter_host -p tether-host -- --export-interface > examples-python/greeter/greeter.json
//! cargo run --example greeter_host -p tether-host -- --export-interface audience > examples-python/greeter/audience.json
//! cargo run --example greeter_host -p tether-host -- python3 examples-python/greeter/greeter.py
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_host::spec::InterfaceDocument;
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

/// Params of `audience.hear`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HearParams {
    /// What the plugin says to the audience.
    pub greeting: String,
}

/// Result of `audience.hear`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HearResult {
    /// How many people applauded.
    pub applause: i64,
}

/// The host's audience, which the plugin greets through a handle (SPEC.md §6).
#[tether_host::interface(name = "audience", versions = [1])]
pub trait Audience {
    /// `hear`: the audience hears a greeting and applauds.
    async fn hear(&self, params: HearParams) -> Result<HearResult, HandlerError>;
}

/// The one interface a handle to the audience names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum AudienceInterface {
    /// `audience`.
    #[serde(rename = "audience")]
    Audience,
}

/// A handle to the host's audience, as written in params: `{"$handle": "h1", "interface":
/// "audience"}` (the interface is fixed, so that the file says which handle is expected).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceRef {
    /// The id the host gave the handle.
    #[serde(rename = "$handle")]
    #[schemars(length(min = 1))]
    pub handle: String,
    /// Always `audience`.
    pub interface: AudienceInterface,
}

impl From<&tether_host::spec::HandleRef> for AudienceRef {
    fn from(h: &tether_host::spec::HandleRef) -> Self {
        AudienceRef { handle: h.handle.clone(), interface: AudienceInterface::Audience }
    }
}

/// Params of `greeter.announce`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceParams {
    /// Who to greet.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The host's audience, which hears the greeting.
    pub audience: AudienceRef,
}

/// Result of `greeter.announce`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AnnounceResult {
    /// The greeting the audience heard.
    pub greeting: String,
    /// The audience's applause.
    pub applause: i64,
}

/// Greets people by name: the application's own interface.
#[tether_host::interface(name = "greeter", versions = [1])]
pub trait Greeter {
    /// `greeter.hello`: a greeting for `name`; error 2001 for a language the plugin does not know.
    async fn hello(&self, params: HelloParams) -> Result<HelloResult, HandlerError>;
    /// `greeter.announce`: greets `name` in English to the host's `audience` (one
    /// `audience.hear` through the handle) and answers with what the audience did.
    async fn announce(&self, params: AnnounceParams) -> Result<AnnounceResult, HandlerError>;
}

/// The interface file of `greeter`: what the declaration gives, plus what it cannot know (the
/// error code the application defines, the handle interface it passes).
pub fn interface_file() -> String {
    GreeterClient::interface_document()
        .with_description("Greets people by name: the example of an application's own interface.")
        .with_error(
            2001,
            "greeter.hello in a language the plugin does not know",
            Some(serde_json::json!({ "type": "object", "properties": { "lang": { "type": "string" } }, "required": ["lang"] })),
        )
        .with_handle("audience")
        .to_text()
}

/// The interface file of `audience`, the handle the host serves: the judge validates the
/// plugin's invokes of it (`iface.audience.messages-valid`).
pub fn audience_file() -> String {
    let doc: InterfaceDocument = AudienceClient::interface_document();
    doc.with_description("The greeter host's audience, served to the plugin as a handle by greeter.announce.")
        .to_text()
}

/// The host's audience: everyone applauds.
struct Everyone(i64);

impl Audience for Everyone {
    async fn hear(&self, _params: HearParams) -> Result<HearResult, HandlerError> {
        Ok(HearResult { applause: self.0 })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--export-interface") {
        match args.get(1).map(String::as_str) {
            None | Some("greeter") => print!("{}", interface_file()),
            Some("audience") => print!("{}", audience_file()),
            Some(other) => return Err(format!("no interface {other:?}: greeter or audience").into()),
        }
        return Ok(());
    }
    let Some((program, rest)) = args.split_first() else {
        return Err(
            "usage: greeter_host --export-interface [greeter|audience] | greeter_host PROGRAM [ARGS...]"
                .into(),
        );
    };
    let plugin = PluginProcess::builder(program).args(rest).offer::<GreeterClient>().start().await?;
    let greeter = plugin.client::<GreeterClient>()?;
    for lang in [Lang::En, Lang::Fr] {
        let answer = greeter.hello(&HelloParams { name: "Ada".into(), lang }).await?;
        println!("{}", answer.greeting);
    }
    // A handle scoped to the call that carries it: it expires with the answer.
    let audience = plugin.serve_handle(AudienceServer::new(Everyone(3)));
    let params = AnnounceParams { name: "Ada".into(), audience: AudienceRef::from(&audience) };
    let announced = greeter.announce(&params).handle(&audience).await?;
    println!("{} ({} applauded)", announced.greeting, announced.applause);
    let report = plugin.shutdown().await;
    println!("the plugin stopped {:?} with {}", report.stopped, report.exit);
    Ok(())
}
