//! Runs the Python and Node SDK suites (which replay this crate's transcripts against their
//! example plugins) from `cargo test`, so that the README's one test command runs every test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real interpreter: Debian's path first, since a pyenv or nvm shim on PATH adds tens of
/// milliseconds to every plugin start the suites make; then whatever PATH offers.
fn interpreter(fixed: &str, name: &str) -> String {
    if Path::new(fixed).exists() {
        return fixed.to_owned();
    }
    name.to_owned()
}

fn run_suite(dir: &str, program: String, args: &[&str]) -> Result<(), String> {
    let cwd = repo_root().join(dir);
    let output = Command::new(&program).args(args).current_dir(&cwd).output().map_err(|e| {
        format!("cannot run {program} for the {dir} suite ({e}); install it or put it on PATH")
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "the {dir} suite failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            output.status
        ));
    }
    // Show the runner's own summary in `cargo test -- --nocapture` output.
    let summary: Vec<&str> = stdout.lines().chain(stderr.lines()).rev().take(10).collect();
    println!("{dir}: {}", summary.into_iter().rev().collect::<Vec<_>>().join("\n"));
    Ok(())
}

#[test]
fn python_sdk_suite_passes() -> Result<(), String> {
    let python = interpreter("/usr/bin/python3", "python3");
    run_suite("examples-python", python, &["-m", "unittest", "discover", "-s", "tests"])
}

#[test]
fn node_sdk_suite_passes() -> Result<(), String> {
    let node = interpreter("/usr/bin/node", "node");
    run_suite("examples-node", node, &["--test", "tests/"])
}
