//! Proves the judge's checks of an application's own interface (`--interface-file`): the
//! example greeter (examples-python/greeter/) passes them, and each broken greeter
//! (`tests/broken/greeter.py --break FLAG`) fails exactly the check of what it breaks, with the
//! cause in the reason; the reference examples of every SDK are judged against the shipped
//! `spec/interfaces/*.json`, with what each verdict is and why.

#![allow(clippy::expect_used, clippy::panic)] // a failed expectation is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const JUDGE: &str = env!("CARGO_BIN_EXE_tether-conformance");
const PYTHON: &str = "/usr/bin/python3";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

const FILE: &str = "examples-python/greeter/greeter.json";

fn judge(plugin: &str, extra: &[&str]) -> Output {
    Command::new(JUDGE)
        .args(["--grace-ms", "5000", "--format", "json", "--plugin", plugin])
        .args(extra)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("the judge runs")
}

/// (id, status, reason) of every check of the one plugin judged.
fn checks(out: &Output) -> Vec<(String, String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["plugins"][0]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("id"), s("status"), s("reason"))
        })
        .collect()
}

fn iface_checks(out: &Output) -> Vec<(String, String, String)> {
    checks(out).into_iter().filter(|(id, _, _)| id.starts_with("iface.")).collect()
}

fn broken(flag: &str) -> String {
    format!("{PYTHON} conformance/tests/broken/greeter.py --break {flag}")
}

#[test]
fn the_example_greeter_passes_every_check_with_its_interface_file() {
    let out = judge(
        &format!("{PYTHON} examples-python/greeter/greeter.py"),
        &[
            "--interface-file",
            FILE,
            "--interface-file",
            "examples-python/greeter/audience.json",
            "--scenarios",
            "examples-python/greeter/scenarios",
        ],
    );
    let all = checks(&out);
    let failed: Vec<_> = all.iter().filter(|(_, s, _)| s == "fail").collect();
    assert!(failed.is_empty(), "failures: {failed:?}");
    assert!(out.status.success());
    let ids: Vec<_> = all
        .into_iter()
        .filter(|(id, _, _)| id.starts_with("iface.") || id.starts_with("scenario."))
        .map(|(id, s, _)| format!("{id} {s}"))
        .collect();
    assert_eq!(
        ids,
        [
            "iface.greeter.declared pass",
            "iface.greeter.schemas-compatible pass",
            "scenario.audience pass",
            "scenario.captures pass",
            "scenario.in-flight pass",
            "scenario.languages pass",
            "iface.greeter.messages-valid pass",
            // audience.json is a handle interface of greeter.json: only the plugin's invokes.
            "iface.audience.messages-valid pass",
        ]
    );
}

#[test]
fn without_an_interface_file_there_are_no_interface_checks() {
    let out =
        judge(&format!("{PYTHON} examples-python/greeter/greeter.py"), &["--filter", "handshake.initialize"]);
    assert!(iface_checks(&out).is_empty());
    assert_eq!(checks(&out).len(), 1);
}

#[test]
fn a_plugin_accepting_fewer_params_than_the_file_fails_schemas_compatible_with_the_pointer() {
    let out = judge(&broken("narrow-params"), &["--interface-file", FILE, "--filter", "iface"]);
    assert_eq!(
        iface_checks(&out),
        [
            ("iface.greeter.declared".into(), "pass".into(), String::new()),
            (
                "iface.greeter.schemas-compatible".into(),
                "fail".into(),
                "greeter.hello params at /lang: the value \"fr\" is accepted by one and refused by the other (in branch 1 of a union)".into()
            ),
            (
                "iface.greeter.messages-valid".into(),
                "skip".into(),
                "no message on greeter was seen: no check or scenario called its methods (add scenarios with --scenarios)".into()
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_plugin_speaking_a_version_the_file_does_not_define_fails_declared() {
    let out = judge(&broken("version"), &["--interface-file", FILE, "--filter", "iface"]);
    let got = iface_checks(&out);
    assert_eq!(got[0].0, "iface.greeter.declared");
    assert_eq!(got[0].1, "fail");
    assert!(got[0].2.contains("host speaks [1], plugin speaks [2]"), "{got:?}");
    assert_eq!((got[1].0.as_str(), got[1].1.as_str()), ("iface.greeter.schemas-compatible", "not-run"));
    assert_eq!((got[2].0.as_str(), got[2].1.as_str()), ("iface.greeter.messages-valid", "not-run"));
}

#[test]
fn a_plugin_missing_a_method_of_the_file_fails_schemas_compatible() {
    let out = judge(&broken("missing"), &["--interface-file", FILE, "--filter", "iface"]);
    let got = iface_checks(&out);
    assert_eq!(got[0].1, "pass");
    assert_eq!(got[1].2, "the plugin does not declare greeter.hello (version 1)");
}

#[test]
fn an_unusable_interface_file_stops_the_judge_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("tether-iface-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "greeter", "versions": [{"version": 2, "methods": {}}, {"version": 1, "methods": {}}]}"#,
    )
    .expect("write");
    let out = judge(
        &format!("{PYTHON} examples-python/greeter/greeter.py"),
        &["--interface-file", &bad.display().to_string()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.json: invalid interface document: interface greeter: versions must be positive and increasing, 1 follows 2"), "{stderr}");
}

/// Builds the Rust example plugins (debug) into the target directory this test was built in.
fn rust_examples() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-p", "tether", "--examples"])
        .current_dir(root())
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p tether --examples failed");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    };
    target.join("debug").join("examples")
}

/// The `iface.*` verdicts of `plugin` judged against `spec/interfaces/<name>.json`.
fn against_shipped_file(plugin: &str, name: &str) -> Vec<(String, String, String)> {
    let file = format!("spec/interfaces/{name}.json");
    iface_checks(&judge(plugin, &["--interface-file", &file, "--filter", "iface"]))
}

/// Declared and compatible; with `--filter iface` no generic check calls the interface, so
/// there is nothing for `messages-valid` to judge: a skip that says why, not a pass.
fn passed(name: &str) -> Vec<(String, String, String)> {
    vec![
        (format!("iface.{name}.declared"), "pass".into(), String::new()),
        (format!("iface.{name}.schemas-compatible"), "pass".into(), String::new()),
        (
            format!("iface.{name}.messages-valid"),
            "skip".into(),
            format!(
                "no message on {name} was seen: no check or scenario called its methods (add scenarios with --scenarios)"
            ),
        ),
    ]
}

#[test]
fn the_kv_example_of_every_sdk_is_schema_compatible_with_the_shipped_kv_file() {
    // spec/interfaces/kv.json says a value is base64 or, with attachments, `{"$bytes": i}`
    // (SPEC.md §2.8); every SDK declares bytes with that same schema.
    let rust = rust_examples().join("kv").display().to_string();
    for plugin in [rust, format!("{PYTHON} examples-python/kv.py"), "node examples-node/kv.mjs".into()] {
        assert_eq!(against_shipped_file(&plugin, "kv"), passed("kv"), "{plugin}");
    }
}

#[test]
fn the_rust_counter_and_blob_examples_pass_their_shipped_files() {
    let examples = rust_examples();
    for name in ["counter", "blob"] {
        let plugin = examples.join(name).display().to_string();
        assert_eq!(against_shipped_file(&plugin, name), passed(name), "{plugin}");
    }
}

#[test]
fn the_python_and_node_blob_examples_refuse_a_write_stream_that_blob_json_allows() {
    // blob.json's stream schema (generated from the generic StreamRef type) lets `mode` be
    // "read" or "write" for blob.count; the SDKs declare, and enforce with -32602, "read" only.
    for plugin in [format!("{PYTHON} examples-python/blob.py"), "node examples-node/blob.mjs".into()] {
        let got = against_shipped_file(&plugin, "blob");
        assert_eq!((got[0].1.as_str(), got[1].1.as_str()), ("pass", "fail"), "{plugin}");
        assert_eq!(
            got[1].2,
            "blob.count params at /data/mode: the value \"write\" is accepted by one and refused by the other (in branch 1 of a union)",
            "{plugin}"
        );
    }
}

#[test]
fn what_the_subset_check_cannot_decide_is_a_skip_that_says_so() {
    // counter.json lets a handle's `interface` be any string; the Python counter declares the
    // constant "adder" (so do the Node SDK's). The check does not decide a constant against an
    // open string type.
    for plugin in [format!("{PYTHON} examples-python/counter.py"), "node examples-node/counter.mjs".into()] {
        let got = against_shipped_file(&plugin, "counter");
        assert_eq!(got[0].1, "pass", "{plugin}");
        assert_eq!(
            (got[1].1.as_str(), got[1].2.as_str()),
            ("skip", "cannot decide: counter.put params at /adder/interface: a const or enum against a schema that is not finite"),
            "{plugin}"
        );
    }
}
