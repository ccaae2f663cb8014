//! Binaries built on demand with the cargo that runs the tests, in the same profile and target
//! directory (so a suite works on a clean clone and respects `CARGO_TARGET_DIR`), each built
//! once per test process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// What kind of cargo target to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `--example NAME`.
    Example,
    /// `--bin NAME`.
    Bin,
}

/// Builds `name` of `package` and returns the executable cargo reports for it; panics with
/// the cause when it cannot (test helper).
///
/// Uses `$CARGO` (set by `cargo test`), a release build when the tests themselves are
/// optimised, and the workspace of this crate.
pub fn cargo_binary(package: &str, target: Target, name: &str) -> PathBuf {
    cargo_build(package, target, name, !cfg!(debug_assertions)).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds `name` of `package` (in release mode if `release`) with `$CARGO` in this workspace
/// and its target directory (`CARGO_TARGET_DIR` is inherited), once per process, and returns
/// the executable cargo reports, or why it could not.
pub fn cargo_build(package: &str, target: Target, name: &str, release: bool) -> Result<PathBuf, String> {
    static BUILT: Mutex<BTreeMap<(String, String, bool), PathBuf>> = Mutex::new(BTreeMap::new());
    let key = (package.to_owned(), name.to_owned(), release);
    // Held while building, so that parallel tests wait for one build rather than start two.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&key) {
        return Ok(path.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let flag = match target {
        Target::Example => "--example",
        Target::Bin => "--bin",
    };
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", package, flag, name, "--message-format=json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let what = format!("cargo build -p {package} {flag} {name}{}", if release { " --release" } else { "" });
    let output = command.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed ({})", output.status));
    }
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("{what} reported no executable"))?;
    built.insert(key, path.clone());
    Ok(path)
}

/// An example plugin of the Rust SDK (`rust-sdk/examples/NAME.rs`).
pub fn sdk_example(name: &str) -> PathBuf {
    cargo_binary("tether", Target::Example, name)
}

/// The host's misbehaving test plugin (`rust-host/test-plugin/`).
pub fn test_plugin() -> PathBuf {
    cargo_binary("tether-test-plugin", Target::Bin, "tether-test-plugin")
}

/// Builds the library of `package` (a `cdylib`, or a proc-macro crate, which is a shared library
/// too) with `$CARGO` in this workspace, once per process, and returns the shared library cargo
/// reports; panics with the cause when it cannot (test helper).
pub fn cargo_library(package: &str) -> PathBuf {
    cargo_build_library(package, !cfg!(debug_assertions)).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the library of `package` (in release mode if `release`) with `$CARGO` in this
/// workspace and its target directory, once per process, and returns the shared library cargo
/// reports (`.so`, `.dylib`), or why it could not.
pub fn cargo_build_library(package: &str, release: bool) -> Result<PathBuf, String> {
    static BUILT: Mutex<BTreeMap<(String, bool), PathBuf>> = Mutex::new(BTreeMap::new());
    let key = (package.to_owned(), release);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&key) {
        return Ok(path.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", package, "--lib", "--message-format=json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let what = format!("cargo build -p {package} --lib{}", if release { " --release" } else { "" });
    let output = command.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed ({})", output.status));
    }
    let crate_name = package.replace('-', "_");
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == crate_name.as_str())
        .filter_map(|m| m["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "so" || e == "dylib"))
        .ok_or_else(|| format!("{what} reported no shared library"))?;
    built.insert(key, path.clone());
    Ok(path)
}
