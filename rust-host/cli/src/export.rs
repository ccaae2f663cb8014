//! `tether interface export`: the interface file of what a running plugin declares, so that an
//! author can turn a reference plugin in any language into the document its peers are judged
//! against (`spec/schema/interface.schema.json`, the judge's `--interface-file`).
//!
//! A handshake carries, per interface, one version and its methods' params and result schemas
//! (SPEC.md §4.4). The plugin is started once to learn every version it speaks (the -32001
//! answer to a version nobody speaks, as `inspect` does), then once per version, offered that
//! version alone. What a handshake does not carry is not in the document: the interface's
//! description, its error codes, and the interfaces of the handles it passes (`rust-host/cli/
//! README.md` says how to add them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use tether_spec::{InterfaceDocument, InterfaceVersion};

use crate::launch::LaunchArgs;
use crate::Failure;

/// `tether interface export [--interface NAME] [--version N] [--out FILE] -- <plugin>`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    launch: LaunchArgs,
    /// Export only this version (repeatable); default: every version the plugin speaks.
    #[arg(long = "version", value_name = "N")]
    versions: Vec<u32>,
    /// Write the document to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The plugin's command line: program and arguments.
    #[arg(last = true, required = true, value_name = "PLUGIN COMMAND LINE")]
    command: Vec<String>,
}

pub(crate) async fn run(args: ExportArgs) -> Result<u8, Failure> {
    let name = interface_name(&args).await?;
    let versions = match args.versions.is_empty() {
        false => {
            let mut v = args.versions.clone();
            v.sort_unstable();
            v.dedup();
            v
        }
        true => args.launch.supported_versions(&args.command, &name).await.ok_or_else(|| {
            Failure::failed(anyhow::anyhow!(
                "the plugin did not say which versions of {name} it speaks (no -32001 answer to an \
                 offer of version {}); name them with --version",
                u32::MAX
            ))
        })?,
    };
    let mut document = InterfaceDocument { name: name.clone(), description: None, versions: Vec::new() };
    for version in versions {
        document.versions.push(InterfaceVersion {
            version,
            methods: declared_methods(&args, &name, version).await?,
            errors: Vec::new(),
            handles: Vec::new(),
        });
    }
    document.check().map_err(|e| Failure::failed(anyhow::anyhow!("the plugin's declaration: {e}")))?;
    let text = document.to_text();
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::failed(anyhow::anyhow!("cannot write {}: {e}", path.display())))?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// The interface to export: `--interface NAME`, or the only one the plugin declares.
async fn interface_name(args: &ExportArgs) -> Result<String, Failure> {
    if let [one] = args.launch.interfaces() {
        return Ok(one.clone());
    }
    if args.launch.interfaces().len() > 1 {
        return Err(Failure::failed(anyhow::anyhow!(
            "export one interface at a time: give --interface once"
        )));
    }
    let started = args.launch.start(&args.command).await.map_err(Failure::not_started)?;
    let declared: Vec<String> = started.plugin.initialize_result().interfaces.keys().cloned().collect();
    let _ = started.plugin.shutdown().await;
    match declared.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::failed(anyhow::anyhow!(
            "the plugin declares none of the interfaces offered; name yours with --interface NAME"
        ))),
        several => Err(Failure::failed(anyhow::anyhow!(
            "the plugin declares {}: choose one with --interface NAME",
            several.join(", ")
        ))),
    }
}

/// The methods the plugin declares for `name` when offered `version` alone.
async fn declared_methods(
    args: &ExportArgs,
    name: &str,
    version: u32,
) -> Result<BTreeMap<String, tether_spec::MethodSchema>, Failure> {
    let builder = args.launch.builder(&args.command).map_err(Failure::not_started)?;
    let plugin = builder.interface(name, [version]).start().await.map_err(|e| {
        Failure::not_started(anyhow::anyhow!("starting the plugin offered {name} version {version}: {e}"))
    })?;
    let declared = plugin.initialize_result().interfaces.get(name).cloned();
    let _ = plugin.shutdown().await;
    match declared {
        Some(d) if d.version == version => Ok(d.methods),
        Some(d) => Err(Failure::failed(anyhow::anyhow!(
            "offered {name} version {version} alone, the plugin declared version {}",
            d.version
        ))),
        None => Err(Failure::failed(anyhow::anyhow!(
            "offered {name} version {version}, the plugin did not declare it"
        ))),
    }
}
