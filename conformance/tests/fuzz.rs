//! Proves `--fuzz` and `--replay`: the example kv plugins survive a fuzz run; a plugin that
//! crashes on one kind of input is caught, the failure is minimized to a replay file of a few
//! frames, and `--replay` of that file fails it the same way while the correct plugin passes.

#![allow(clippy::expect_used, clippy::panic)] // a failed expectation is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const JUDGE: &str = env!("CARGO_BIN_EXE_tether-conformance");
const PYTHON: &str = "/usr/bin/python3";
const NODE: &str = "/usr/bin/node";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn judge(args: &[&str]) -> Output {
    Command::new(JUDGE)
        .args(args)
        .arg("--format")
        .arg("json")
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("the judge runs")
}

/// The one plugin section of a JSON report, and its one row.
fn report_of(out: &Output) -> (serde_json::Value, serde_json::Value) {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let plugin = doc["plugins"][0].clone();
    let row = plugin["checks"][0].clone();
    (plugin, row)
}

fn explain(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh directory for replay files, under the target directory.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn build_rust_kv() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "tether", "--example", "kv"])
        .current_dir(root())
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release -p tether --example kv failed");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    };
    target.join("release").join("examples").join("kv")
}

/// Runs `--fuzz frames` against a correct plugin and checks that it passes with the figures.
fn passes(plugin: &str, frames: u64, seed: &str) {
    let dir = out_dir("pass");
    let n = frames.to_string();
    let out = judge(&[
        "--plugin",
        plugin,
        "--fuzz",
        &n,
        "--seed",
        seed,
        "--fuzz-out",
        dir.to_str().expect("utf-8"),
    ]);
    let (section, row) = report_of(&out);
    assert_eq!(row["id"], "fuzz.survives");
    assert_eq!(row["status"], "pass", "{plugin}: {}", explain(&out));
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(section["fuzz"]["frames"], frames);
    assert_eq!(section["fuzz"]["bursts"], frames.div_ceil(100));
    assert_eq!(section["fuzz"]["seed"], seed.parse::<u64>().expect("a number"));
    assert!(section["fuzz"]["framesPerSecond"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).ok(), Some(0), "no replay file for a pass");
}

#[test]
fn the_rust_kv_example_passes_2000_fuzzed_frames() {
    let kv = build_rust_kv();
    passes(kv.to_str().expect("utf-8"), 2000, "1");
}

#[test]
fn the_python_and_node_kv_examples_pass_1000_fuzzed_frames() {
    let root = root();
    passes(&format!("{PYTHON} {}", root.join("examples-python/kv.py").display()), 1000, "2");
    passes(&format!("{NODE} {}", root.join("examples-node/kv.mjs").display()), 1000, "3");
}

#[test]
fn a_plugin_that_crashes_on_one_input_is_minimized_to_a_replay_file_that_fails_it_again() {
    let fuzzy = root().join("conformance/tests/broken/fuzzy.py");
    let good = format!("{PYTHON} {}", root().join("examples-python/kv.py").display());
    // What the offending frame holds, whatever the minimizer cut from it: brackets past the
    // depth of 64, or a response (a string id is all the broken plugin looks at).
    fn deep(text: &str) -> bool {
        text.chars().filter(|c| *c == '[' || *c == '{').count() > 64
    }
    fn response(text: &str) -> bool {
        text.contains("\"result\"") || text.contains("\"error\"")
    }
    type Holds = fn(&str) -> bool;
    let cases: [(&str, Holds, &str); 2] =
        [("deep", deep, "exit status: 3"), ("stray", response, "exit status: 4")];
    for (flag, offending, status) in cases {
        let broken = format!("{PYTHON} {} --break {flag}", fuzzy.display());
        let dir = out_dir(flag);
        let out = judge(&[
            "--plugin",
            &broken,
            "--fuzz",
            "3000",
            "--seed",
            "42",
            "--fuzz-out",
            dir.to_str().expect("utf-8"),
        ]);
        let (section, row) = report_of(&out);
        assert_eq!(row["status"], "fail", "{flag}: {}", explain(&out));
        assert_eq!(out.status.code(), Some(1));
        let reason = row["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("exited: ") && reason.contains(status), "{flag}: {reason}");
        let files = section["fuzz"]["replayFiles"].as_array().cloned().unwrap_or_default();
        assert!(!files.is_empty(), "{flag}: no replay file: {}", explain(&out));
        let file = files[0].as_str().expect("a path").to_owned();
        assert!(file.starts_with(dir.to_str().expect("utf-8")), "{file}");
        let got = row["got"].as_str().unwrap_or_default();
        assert!(got.contains(&format!("--replay {file}")), "the command to replay is shown: {got}");

        let replay: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("the replay file")).expect("JSON");
        assert_eq!(replay["format"], "tether-fuzz-replay/1");
        assert_eq!(replay["fault"], "exited");
        let frames = replay["frames"].as_array().cloned().unwrap_or_default();
        let texts: Vec<&str> = frames.iter().filter_map(|f| f["text"].as_str()).collect();
        assert!(
            (1..=3).contains(&frames.len()) && texts.iter().any(|t| offending(t)),
            "{flag}: minimized to {} frames: {texts:?}",
            frames.len()
        );

        let again = judge(&["--plugin", &broken, "--replay", &file]);
        let (_, row) = report_of(&again);
        assert_eq!(row["id"], "fuzz.replay");
        assert_eq!(row["status"], "fail", "{flag}: {}", explain(&again));
        assert!(row["reason"].as_str().is_some_and(|r| r.starts_with("exited: ") && r.contains(status)));
        assert_eq!(again.status.code(), Some(1));

        let fixed = judge(&["--plugin", &good, "--replay", &file]);
        let (_, row) = report_of(&fixed);
        assert_eq!(row["status"], "pass", "{flag}: {}", explain(&fixed));
        assert_eq!(fixed.status.code(), Some(0));
    }
}

#[test]
fn a_file_that_is_not_a_replay_file_fails_with_its_name_and_the_cause() {
    let dir = out_dir("bad");
    let file = dir.join("not-a-replay.json");
    std::fs::write(&file, b"{\"format\": \"something else\"}").expect("written");
    let good = format!("{PYTHON} {}", root().join("examples-python/kv.py").display());
    let out = judge(&["--plugin", &good, "--replay", file.to_str().expect("utf-8")]);
    let (_, row) = report_of(&out);
    assert_eq!(row["status"], "fail");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not-a-replay.json") && r.contains("not a replay file")),
        "{row}"
    );
}
