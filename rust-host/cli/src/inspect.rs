//! `tether inspect`: what a plugin declares, for a person (indented text) or a program (one JSON
//! document, `--json`; its shape is in `rust-host/cli/README.md`).

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;
use serde_json::Value;
use tether_host::spec::{Capabilities, MethodSchema, PeerInfo};

use crate::launch::LaunchArgs;
use crate::Failure;

/// `tether inspect [options] -- <plugin command line>`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    launch: LaunchArgs,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Do not start the plugin once more per interface to learn every version it speaks.
    #[arg(long)]
    no_probe: bool,
    /// The plugin's command line: program and arguments.
    #[arg(last = true, required = true, value_name = "PLUGIN COMMAND LINE")]
    command: Vec<String>,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    command: Vec<String>,
    plugin: PeerInfo,
    protocol_version: u32,
    start_ms: f64,
    capabilities: Capabilities,
    interfaces: BTreeMap<String, InterfaceReport>,
    stderr: Vec<String>,
    exit: ExitReport,
}

#[derive(Debug, Serialize)]
struct InterfaceReport {
    version: u32,
    /// Every version the plugin speaks, when it said (`--no-probe` leaves it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    supported: Option<Vec<u32>>,
    methods: BTreeMap<String, MethodSchema>,
}

#[derive(Debug, Serialize)]
struct ExitReport {
    code: Option<i32>,
    signal: Option<i32>,
    stopped: String,
}

pub(crate) async fn run(args: InspectArgs) -> Result<u8, Failure> {
    let started = args.launch.start(&args.command).await.map_err(Failure::not_started)?;
    let plugin = started.plugin;
    let init = plugin.initialize_result().clone();
    let report = plugin.shutdown().await;
    let mut interfaces = BTreeMap::new();
    for (name, negotiated) in init.interfaces {
        let supported = match args.no_probe {
            true => None,
            false => args.launch.supported_versions(&args.command, &name).await,
        };
        interfaces.insert(
            name,
            InterfaceReport { version: negotiated.version, supported, methods: negotiated.methods },
        );
    }
    let report = Report {
        command: args.command,
        plugin: init.plugin,
        protocol_version: init.protocol_version,
        start_ms: started.start_time.as_secs_f64() * 1000.0,
        capabilities: init.capabilities,
        interfaces,
        stderr: report.exit.stderr_tail.clone(),
        exit: ExitReport {
            code: report.exit.code,
            signal: report.exit.signal,
            stopped: stopped_text(report.stopped).to_owned(),
        },
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Failure::failed)?;
        println!("{text}");
    } else {
        print!("{}", human(&report));
    }
    Ok(0)
}

fn human(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("plugin        {} {}", report.plugin.name, report.plugin.version));
    line(format!("command       {}", report.command.join(" ")));
    line(format!("protocol      {}", report.protocol_version));
    line(format!("started in    {:.1} ms", report.start_ms));
    line(format!("capabilities  {}", capabilities(&report.capabilities)));
    if report.interfaces.is_empty() {
        line("interfaces    none of those offered".to_owned());
    }
    for (name, interface) in &report.interfaces {
        let supported = match &interface.supported {
            Some(versions) => format!(" (speaks {})", list(versions)),
            None => String::new(),
        };
        line(format!("interface     {name} version {}{supported}", interface.version));
        for (method, schema) in &interface.methods {
            line(format!("  {name}.{method}"));
            line(format!("    params: {}", indented(&schema.params, "    ")));
            line(format!("    result: {}", indented(&schema.result, "    ")));
        }
    }
    match report.stderr.as_slice() {
        [] => line("stderr        (nothing)".to_owned()),
        lines => {
            line(format!("stderr        {} line(s):", lines.len()));
            for text in lines {
                line(format!("  {text}"));
            }
        }
    }
    let status = match (report.exit.code, report.exit.signal) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown".to_owned(),
    };
    line(format!("exit          {status} ({})", report.exit.stopped));
    out
}

fn capabilities(capabilities: &Capabilities) -> String {
    match serde_json::to_value(capabilities) {
        Ok(Value::Object(map)) if map.is_empty() => "none".to_owned(),
        Ok(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| match value {
                Value::Object(o) if o.is_empty() => name.clone(),
                other => format!("{name} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Ok(other) => other.to_string(),
        Err(e) => format!("(cannot show: {e})"),
    }
}

fn list(versions: &[u32]) -> String {
    versions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// Pretty JSON whose lines after the first are indented by `indent`.
fn indented(value: &Value, indent: &str) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.replace('\n', &format!("\n{indent}"))
}

fn stopped_text(stopped: tether_host::Stopped) -> &'static str {
    match stopped {
        tether_host::Stopped::AlreadyExited => "already-exited",
        tether_host::Stopped::Gracefully => "gracefully",
        tether_host::Stopped::Terminated => "terminated",
        tether_host::Stopped::Killed => "killed",
    }
}
