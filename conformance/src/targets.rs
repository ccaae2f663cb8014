//! The default run: every example plugin of the repository (`kv`, `counter`, `blob`), in Rust
//! (built with cargo), Python and Node (run with the real interpreters, not a version-manager shim).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::Skipped;

/// A plugin to judge.
#[derive(Debug)]
pub(crate) struct Target {
    /// Its label in the report.
    pub(crate) label: String,
    /// Its command line, or why it is not judged.
    pub(crate) argv: Result<Vec<String>, Skipped>,
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// Cargo's target directory for the workspace, honouring `CARGO_TARGET_DIR`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The real interpreter behind `name`: `/usr/bin/<name>` when present, otherwise what the one on
/// PATH reports as its own executable (a pyenv or nvm shim costs tens of milliseconds per start).
pub(crate) async fn interpreter(name: &str, ask_self: &[&str]) -> Option<PathBuf> {
    let system = PathBuf::from("/usr/bin").join(name);
    if system.is_file() {
        return Some(system);
    }
    let out = tokio::process::Command::new(name)
        .args(ask_self)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// Builds the Rust examples and lists every example plugin.
pub(crate) async fn examples(verbose: bool) -> Vec<Target> {
    let root = workspace_root();
    let mut out = Vec::new();

    // Rust: `cargo build --release -p tether --examples`.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("tether-conformance: building the Rust example plugins (cargo build --release -p tether --examples) ...");
    let build = tokio::process::Command::new(&cargo)
        .args(["build", "--release", "-p", "tether", "--examples"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .await;
    let built = match build {
        Ok(o) if o.status.success() => {
            if verbose {
                eprint!("{}", String::from_utf8_lossy(&o.stderr));
            }
            Ok(())
        }
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            Err(Skipped::Failed {
                id: "setup.rust-build".into(),
                reason: format!("cargo build --release -p tether --examples failed ({})", o.status),
                detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            })
        }
        Err(e) => Err(Skipped::Note(format!("cannot run cargo ({e}): Rust examples not judged"))),
    };
    let examples_dir = target_dir(&root).join("release").join("examples");
    // `blob` (§9.5) is judged once its example exists; until then its row says it was not built.
    for name in ["kv", "counter", "blob"] {
        let label = format!("rust/{name}");
        let argv = match &built {
            Err(e) => Err(e.clone()),
            Ok(()) => {
                let bin = examples_dir.join(name);
                if bin.is_file() {
                    Ok(vec![bin.to_string_lossy().into_owned()])
                } else {
                    Err(Skipped::Note(format!(
                        "{} was not built (is rust-sdk/examples/{name}.rs missing?): skipped",
                        bin.display()
                    )))
                }
            }
        };
        if let Err(Skipped::Failed { .. }) = &argv {
            if name != "kv" {
                // One failing build row is enough.
                continue;
            }
        }
        out.push(Target { label, argv });
    }

    let languages: [(&str, &str, &[&str], &str, &str); 2] = [
        ("python", "python3", &["-c", "import sys; print(sys.executable)"], "examples-python", "py"),
        ("node", "node", &["-e", "console.log(process.execPath)"], "examples-node", "mjs"),
    ];
    for (lang, exe, ask_self, dir, ext) in languages {
        let interp = interpreter(exe, ask_self).await;
        for name in ["kv", "counter", "blob"] {
            let label = format!("{lang}/{name}");
            let file = root.join(dir).join(format!("{name}.{ext}"));
            let argv = match (&interp, file.is_file()) {
                (None, _) => {
                    Err(Skipped::Note(format!("no {exe} interpreter found: {lang} examples skipped")))
                }
                (_, false) => Err(Skipped::Note(format!("{} does not exist: skipped", file.display()))),
                (Some(i), true) => {
                    Ok(vec![i.to_string_lossy().into_owned(), file.to_string_lossy().into_owned()])
                }
            };
            out.push(Target { label, argv });
        }
    }
    out
}
