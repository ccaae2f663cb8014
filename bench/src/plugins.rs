//! Finding (and, for Rust, building) the example plugins.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use crate::config::{repo_root, Lang, Options};
use crate::scenario::PluginCmd;

/// The `kv` and `counter` plugins of one language.
#[derive(Debug, Clone)]
pub struct Plugins {
    /// The `kv` plugin.
    pub kv: PluginCmd,
    /// The `counter` plugin, when it exists.
    pub counter: Option<PluginCmd>,
    /// The `blob` plugin (streams), when it exists.
    pub blob: Option<PluginCmd>,
}

/// Builds the Rust example plugins with the cargo that runs this benchmark (`$CARGO`), in the
/// same target directory (`CARGO_TARGET_DIR` is inherited), and returns the paths cargo reports
/// for kv, counter and blob (through the test kit, which the test suites use too).
pub fn build_rust(release: bool) -> anyhow::Result<(PathBuf, Option<PathBuf>, Option<PathBuf>)> {
    eprintln!("building the Rust example plugins ({})...", if release { "release" } else { "dev profile" });
    let build = |name| tether_testkit::cargo_build("tether", tether_testkit::Target::Example, name, release);
    let kv = build("kv").map_err(|e| anyhow!("{e}"))?;
    let counter = build("counter").ok();
    let blob = build("blob").ok();
    Ok((kv, counter, blob))
}

fn binary(path: PathBuf) -> PluginCmd {
    PluginCmd { program: path.clone(), args: Vec::new(), checksum_file: path }
}

fn script(interpreter: &Path, script: PathBuf) -> PluginCmd {
    PluginCmd {
        program: interpreter.to_owned(),
        args: vec![script.to_string_lossy().into_owned()],
        checksum_file: script,
    }
}

/// The plugins of `lang`, or why they cannot run (the caller notes it and skips the language).
pub fn find(lang: Lang, opts: &Options) -> anyhow::Result<Plugins> {
    let root = repo_root();
    match lang {
        Lang::Rust => {
            let (kv, counter, blob) = build_rust(opts.release_plugins)?;
            Ok(Plugins { kv: binary(kv), counter: counter.map(binary), blob: blob.map(binary) })
        }
        Lang::Python | Lang::Node => {
            let (interpreter, dir, ext) = match lang {
                Lang::Python => (&opts.python, "examples-python", "py"),
                _ => (&opts.node, "examples-node", "mjs"),
            };
            if !interpreter.exists() {
                bail!("{} is not installed", interpreter.display());
            }
            let kv = root.join(dir).join(format!("kv.{ext}"));
            if !kv.exists() {
                bail!("{} does not exist", kv.display());
            }
            let counter = root.join(dir).join(format!("counter.{ext}"));
            let blob = root.join(dir).join(format!("blob.{ext}"));
            Ok(Plugins {
                kv: script(interpreter, kv),
                counter: counter.exists().then(|| script(interpreter, counter)),
                blob: blob.exists().then(|| script(interpreter, blob)),
            })
        }
    }
}

/// Builds the `kv` and `counter` example plugins as libraries (`rust-sdk/examples-cdylib/`) and
/// returns them as commands whose program is the library, for the in-process rows.
pub fn build_rust_libraries(release: bool) -> anyhow::Result<(PluginCmd, Option<PluginCmd>)> {
    eprintln!("building the Rust example plugin libraries...");
    let build =
        |package: &str| tether_testkit::cargo_build_library(package, release).map_err(|e| anyhow!("{e}"));
    let kv = binary(build("tether-example-kv-lib")?);
    let counter = build("tether-example-counter-lib").ok().map(binary);
    Ok((kv, counter))
}
