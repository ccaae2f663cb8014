//! The `tether` binary against real plugin processes: the Rust examples (`rust-sdk/examples/`),
//! the Python and Node kv examples, and the host's test plugin; each subcommand, human and JSON
//! output, exit statuses, and the conformance judge run through `tether trace`.

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use tether_testkit::{cargo_binary, sdk_example, test_plugin, Target};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kv example in Rust, Python and Node, as command lines.
fn kv_plugins() -> Vec<Vec<String>> {
    let repo = repo();
    vec![
        vec![sdk_example("kv").display().to_string()],
        vec!["python3".into(), "-u".into(), repo.join("examples-python/kv.py").display().to_string()],
        vec!["node".into(), repo.join("examples-node/kv.mjs").display().to_string()],
    ]
}

fn tether(args: &[&str], plugin: &[String], tail: &[&str]) -> Output {
    Command::new(TETHER)
        .args(args)
        .arg("--")
        .args(plugin)
        .args(tail)
        .stdin(Stdio::null())
        .output()
        .expect("run tether")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn inspect_prints_what_the_rust_kv_example_declares() {
    let out = tether(&["inspect"], &kv_plugins()[0], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("plugin        kv-rust "), "{stdout}");
    assert!(stdout.contains("protocol      1"), "{stdout}");
    assert!(stdout.contains("interface     kv version 2 (speaks 1, 2)"), "{stdout}");
    for method in ["kv.put", "kv.get", "kv.delete"] {
        assert!(stdout.contains(&format!("  {method}\n    params: {{\n")), "{method}: {stdout}");
    }
    assert!(stdout.contains("capabilities  attachments"), "{stdout}");
    assert!(stdout.contains("started in    "), "{stdout}");
    assert!(stdout.contains("exit          status 0 (gracefully)"), "{stdout}");
}

#[test]
fn inspect_json_describes_each_kv_example() {
    for plugin in kv_plugins() {
        let out = tether(&["inspect", "--json"], &plugin, &[]);
        assert!(out.status.success(), "{plugin:?}: {out:?}");
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(report["protocolVersion"], 1, "{report}");
        assert!(report["plugin"]["name"].as_str().is_some_and(|n| n.starts_with("kv")), "{report}");
        assert!(report["startMs"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
        let kv = &report["interfaces"]["kv"];
        assert_eq!(kv["version"], 2, "{report}");
        assert_eq!(kv["supported"], serde_json::json!([1, 2]), "{report}");
        for method in ["put", "get", "delete"] {
            assert_eq!(kv["methods"][method]["params"]["type"], "object", "{method}: {report}");
        }
        assert_eq!(report["interfaces"].as_object().map(|i| i.len()), Some(1), "{report}");
        assert_eq!(report["exit"]["code"], 0, "{report}");
        assert!(report["stderr"].is_array(), "{report}");
        assert_eq!(report["command"][0].as_str(), plugin.first().map(String::as_str));
    }
}

#[test]
fn inspect_offers_what_it_is_told() {
    let out = tether(&["inspect", "--json", "--no-probe", "--offer", "kv=1"], &kv_plugins()[1], &[]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kv = &report["interfaces"]["kv"];
    assert_eq!(kv["version"], 1, "{report}");
    assert!(kv["methods"].get("delete").is_none(), "version 1 has no delete: {report}");
    assert!(kv.get("supported").is_none(), "--no-probe: {report}");
}

#[test]
fn inspect_finds_an_interface_named_with_the_flag_and_shows_stderr() {
    // The test plugin's `test` interface is not a reference one: named with --interface. A shell
    // in front of it writes a line on stderr first.
    let line = format!("echo hello from stderr >&2; exec {}", test_plugin().display());
    let plugin = vec!["sh".to_owned(), "-c".to_owned(), line];
    let out = tether(&["inspect", "--json", "--interface", "test"], &plugin, &[]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(report["interfaces"]["test"]["methods"]["echo"].is_object(), "{report}");
    assert_eq!(report["stderr"][0], "hello from stderr", "{report}");
    let out = tether(&["inspect", "--interface", "test"], &plugin, &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(" line(s):\n  hello from stderr\n"), "{stdout}");
}

#[test]
fn call_prints_the_result_and_an_error_with_its_code() {
    for plugin in kv_plugins() {
        let out = tether(&["call"], &plugin, &["kv.put", r#"{"key":"k","value":"aGk="}"#]);
        assert!(out.status.success(), "{plugin:?}: {out:?}");
        assert_eq!(serde_json::from_slice::<Value>(&out.stdout).ok(), Some(serde_json::json!({})));

        let out = tether(&["call"], &plugin, &["kv.get", r#"{"key":"missing"}"#]);
        assert_eq!(out.status.code(), Some(1), "{plugin:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("kv.get failed: error 1001: key not found: missing"), "{stderr}");
        assert!(stderr.contains("data: {\n  \"key\": \"missing\"\n}"), "{stderr}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

#[test]
fn call_reads_params_from_stdin() {
    let mut child = Command::new(TETHER)
        .args(["call", "--"])
        .args(&kv_plugins()[2])
        .args(["kv.delete", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tether");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), br#"{"key":"nothing"}"#)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).ok(),
        Some(serde_json::json!({"existed": false}))
    );
}

#[test]
fn call_that_cannot_start_the_plugin_has_its_own_status() {
    let wrong_cookie = tether(&["call", "--cookie", "SOME_APP=nope"], &kv_plugins()[0], &["kv.get", "{}"]);
    assert_eq!(wrong_cookie.status.code(), Some(3), "{wrong_cookie:?}");
    let stderr = text(&wrong_cookie.stderr);
    assert!(stderr.contains("exited with status 1 before the handshake"), "{stderr}");
    let missing = tether(&["call"], &["/nonexistent/plugin".to_owned()], &["kv.get", "{}"]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    assert!(text(&missing.stderr).contains("cannot start /nonexistent/plugin"), "{missing:?}");
}

#[test]
fn call_repeat_prints_latency_percentiles() {
    let out = tether(&["call", "--repeat", "20"], &kv_plugins()[0], &["kv.put", r#"{"key":"k","value":""}"#]);
    assert!(out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("n=20 ")).unwrap_or_else(|| panic!("{stderr}"));
    for field in ["p50=", "p90=", "p99=", "max="] {
        assert!(line.contains(field), "{line}");
    }
}

#[test]
fn call_bytes_round_trip_through_a_plugin() {
    let file = temp_file("payload.bin");
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &payload).expect("write payload");
    // The test plugin's `test.echo` answers its params: the bytes come back as base64.
    let plugin = vec![test_plugin().display().to_string()];
    let bytes = format!("data={}", file.display());
    let out =
        tether(&["call", "--offer", "test=1", "--bytes", &bytes], &plugin, &["test.echo", r#"{"tag":"x"}"#]);
    assert!(out.status.success(), "{out:?}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(result["tag"], "x");
    let back = STANDARD.decode(result["data"].as_str().expect("base64 data")).expect("base64");
    assert_eq!(back, payload);
}

#[test]
fn call_shows_the_progress_each_kv_example_reports_on_a_large_put() {
    // SPEC.md §9.1: one `$/progress` per 16384 bytes stored and one at the end.
    let file = temp_file("progress.bin");
    std::fs::write(&file, vec![0x5Au8; 40_000]).expect("write value");
    let bytes = format!("value={}", file.display());
    for plugin in kv_plugins() {
        let out = tether(
            &["call", "--progress", "lines", "--bytes", &bytes],
            &plugin,
            &["kv.put", r#"{"key":"big"}"#],
        );
        assert!(out.status.success(), "{plugin:?}: {out:?}");
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress:")).collect();
        assert_eq!(
            lines,
            ["progress: 16384/40000", "progress: 32768/40000", "progress: 40000/40000"],
            "{plugin:?}: {stderr}"
        );
        let quiet = tether(
            &["call", "--progress", "off", "--bytes", &bytes],
            &plugin,
            &["kv.put", r#"{"key":"big"}"#],
        );
        assert!(quiet.status.success(), "{plugin:?}: {quiet:?}");
        assert!(!text(&quiet.stderr).contains("progress:"), "{plugin:?}: progress shown with --progress off");
    }
}

#[test]
fn call_bytes_travel_as_an_attachment_when_negotiated() {
    let file = temp_file("value.bin");
    std::fs::write(&file, vec![0xABu8; 50_000]).expect("write value");
    let trace = temp_file("attachment.jsonl");
    let trace_arg = trace.display().to_string();
    let mut plugin =
        vec![TETHER.to_owned(), "trace".into(), "--json".into(), "--out".into(), trace_arg, "--".into()];
    plugin.extend(kv_plugins().remove(0));
    let bytes = format!("value={}", file.display());
    let out = tether(&["call", "--bytes", &bytes], &plugin, &["kv.put", r#"{"key":"big"}"#]);
    assert!(out.status.success(), "{out:?}");
    let lines = trace_lines(&trace);
    let put = lines.iter().find(|l| l["method"] == "kv.put" && l["kind"] == "request").expect("the put");
    assert_eq!(put["attachments"], 1, "{put}");
    assert!(put["bytes"].as_u64().is_some_and(|b| b > 50_000), "{put}");
}

#[test]
fn call_serves_a_handle_for_the_counter_callback() {
    let counter = vec![sdk_example("counter").display().to_string()];
    let out = tether(&["call", "--handle", "adder"], &counter, &["counter.put", r#"{"key":"a","value":5}"#]);
    assert!(out.status.success(), "{out:?}");
    // Without the handle, the plugin refuses the params.
    let out = tether(&["call"], &counter, &["counter.put", r#"{"key":"a","value":5}"#]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("error -32602"), "{out:?}");
}

#[test]
fn call_serves_the_handle_to_the_python_counter_and_the_trace_shows_the_invoke() {
    let trace = temp_file("counter.jsonl");
    let mut plugin = vec![TETHER.to_owned(), "trace".into(), "--json".into(), "--out".into()];
    plugin.push(trace.display().to_string());
    plugin.push("--".into());
    plugin.extend([
        "python3".to_owned(),
        "-u".to_owned(),
        repo().join("examples-python/counter.py").display().to_string(),
    ]);
    let out =
        tether(&["call", "--handle", "adder=adder"], &plugin, &["counter.put", r#"{"key":"a","value":2}"#]);
    assert!(out.status.success(), "{out:?}");
    let lines = trace_lines(&trace);
    let invoke = lines.iter().find(|l| l["method"] == "tether/invoke" && l["kind"] == "request");
    assert_eq!(invoke.map(|l| l["dir"].clone()), Some(Value::from("plugin->host")), "{lines:?}");
    let answer = lines.iter().find(|l| l["method"] == "tether/invoke" && l["kind"] == "response");
    assert!(answer.is_some_and(|l| l["dir"] == "host->plugin" && l.get("error").is_none()), "{lines:?}");
}

/// A Python plugin (on the repository's one-file SDK) whose `probe.run` invokes `echo` and then
/// `mul` on the handle it is given, and answers what came back.
const PROBE_PLUGIN: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import tether

def run(target):
    echoed = target.echo(x=1, note="hi")
    try:
        target.mul(a=2, b=3)
        refused = None
    except tether.RemoteError as e:
        refused = e.to_json()
    return {"echoed": echoed, "refused": refused}

V1 = {"run": ({"target": tether.handle("target")}, {"echoed": dict, "refused": dict})}
tether.serve("probe-python", "0.1.0", tether.Interface("probe", {1: V1}, globals()))
"#;

#[test]
fn call_builtin_handle_echoes_and_refuses_other_methods() {
    let script = temp_file("probe.py");
    std::fs::write(&script, PROBE_PLUGIN).expect("write the probe plugin");
    let sdk = repo().join("examples-python").display().to_string();
    let plugin = vec!["python3".to_owned(), "-u".to_owned(), script.display().to_string(), sdk];
    let out = tether(&["call", "--interface", "probe", "--handle", "target"], &plugin, &["probe.run", "{}"]);
    assert!(out.status.success(), "{out:?}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(result["echoed"], serde_json::json!({"x": 1, "note": "hi"}), "{result}");
    assert_eq!(result["refused"]["code"], -32601, "{result}");
    let message = result["refused"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("answers only sum and echo"), "{result}");
}

fn trace_lines(path: &Path) -> Vec<Value> {
    let content = std::fs::read_to_string(path).expect("trace file");
    content.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn trace_relays_a_host_session_and_logs_every_frame() {
    for (i, real) in kv_plugins().into_iter().enumerate() {
        let trace = temp_file(&format!("session-{i}.jsonl"));
        let mut plugin = vec![TETHER.to_owned(), "trace".into(), "--json".into(), "--out".into()];
        plugin.push(trace.display().to_string());
        plugin.push("--".into());
        plugin.extend(real.clone());
        let out = tether(&["call"], &plugin, &["kv.get", r#"{"key":"missing"}"#]);
        assert_eq!(out.status.code(), Some(1), "{real:?}: {out:?}");
        assert!(text(&out.stderr).contains("error 1001"), "{out:?}");

        let lines = trace_lines(&trace);
        let find = |dir: &str, kind: &str, method: &str| {
            lines
                .iter()
                .find(|l| l["dir"] == dir && l["kind"] == kind && l["method"] == method)
                .unwrap_or_else(|| panic!("no {dir} {kind} {method} in {lines:?}"))
        };
        let init = find("host->plugin", "request", "tether/initialize");
        let init_answer = find("plugin->host", "response", "tether/initialize");
        assert_eq!(init["id"], init_answer["id"]);
        let get = find("host->plugin", "request", "kv.get");
        let answer = find("plugin->host", "response", "kv.get");
        assert_eq!(get["id"], answer["id"], "{lines:?}");
        assert_eq!(answer["error"], 1001, "{answer}");
        assert!(answer["rttMs"].as_f64().is_some_and(|ms| ms >= 0.0), "{answer}");
        assert!(get["bytes"].as_u64().is_some_and(|b| b > 20), "{get}");
        assert!(get["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{get}");
        find("host->plugin", "request", "tether/shutdown");
        find("plugin->host", "response", "tether/shutdown");
        assert!(lines
            .iter()
            .all(|l| !["garbage", "invalid", "truncated"].contains(&l["kind"].as_str().unwrap_or(""))));
    }
}

#[test]
fn trace_relays_bytes_that_are_not_frames_and_logs_them() {
    // The test plugin writes a stray line on stdout before its answer to `test.go`: the host
    // sees it through the proxy (and goes on), the trace shows it as garbage.
    let trace = temp_file("garbage.jsonl");
    let mut plugin = vec![TETHER.to_owned(), "trace".into(), "--json".into(), "--out".into()];
    plugin.push(trace.display().to_string());
    plugin.push("--".into());
    plugin.push(test_plugin().display().to_string());
    let out = Command::new(TETHER)
        .args(["call", "--offer", "test=1", "--"])
        .args(&plugin)
        .arg("test.go")
        .env("TETHER_TEST_MODE", "garbage-stdout")
        .stdin(Stdio::null())
        .output()
        .expect("run tether");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).ok(), Some(serde_json::json!({"ok": true})));
    let lines = trace_lines(&trace);
    let garbage = lines.iter().find(|l| l["kind"] == "garbage").unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(garbage["dir"], "plugin->host");
    assert!(garbage["note"].as_str().is_some_and(|n| n.contains("hello from a stray print")), "{garbage}");
    assert!(lines.iter().any(|l| l["kind"] == "response" && l["method"] == "test.go"), "{lines:?}");
}

#[test]
fn trace_prints_text_lines_on_stderr_by_default() {
    // A host keeps the plugin's stderr, so run the proxy by hand: one initialize, end of stdin.
    let mut child = Command::new(TETHER)
        .args(["trace", "--"])
        .args(&kv_plugins()[0])
        .env("TETHER_MAGIC_COOKIE", "7c1e4b9a-tether-reference-plugin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trace");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"interfaces":{"kv":[1]},"host":{"name":"t","version":"0"},"capabilities":{},"maxFrameSize":33554432}}"#;
    let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    frame.extend_from_slice(body);
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &frame).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Content-Length: "), "relayed unchanged: {stdout}");
    assert!(stdout.contains(r#""protocolVersion":1"#), "{stdout}");
    let stderr = text(&out.stderr);
    let request = format!(" host->plugin request      tether/initialize id=1 {}B", frame.len());
    assert!(stderr.contains(&request), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" plugin->host response     tether/initialize id=1 ") && l.contains(" rtt=")),
        "{stderr}"
    );
}

#[test]
fn trace_exits_with_the_plugin_status() {
    // Without the cookie the kv example exits 1 at once; the proxy passes that on.
    let out = Command::new(TETHER)
        .args(["trace", "--"])
        .args(&kv_plugins()[0])
        .env_remove("TETHER_MAGIC_COOKIE")
        .stdin(Stdio::null())
        .output()
        .expect("run trace");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("plugin"), "the plugin's own message: {out:?}");
    let out = Command::new(TETHER)
        .args(["trace", "--", "sh", "-c", "exit 7"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = Command::new(TETHER)
        .args(["trace", "--", "sh", "-c", "kill -9 $$"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
}

#[test]
fn trace_passes_sigterm_on_to_the_plugin() {
    let mut child = Command::new(TETHER)
        .args([
            "trace",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready >&2; while :; do sleep 0.05; done",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trace");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("ready");
    assert_eq!(line, "ready\n");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(42), "{status:?}");
}

#[test]
fn the_judge_passes_the_rust_kv_example_through_trace() {
    let judge = cargo_binary("tether-conformance", Target::Bin, "tether-conformance");
    let line = format!("{TETHER} trace -- {}", sdk_example("kv").display());
    let out = Command::new(judge).args(["--jobs", "2", "--plugin", &line]).output().expect("run the judge");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.contains(" passed, 0 failed"), "{summary}");
}

/// `spec/interfaces/kv.json` without what a handshake cannot carry: the description and the
/// error codes (`rust-host/cli/README.md`, "tether interface export").
fn shipped_kv_as_a_handshake_shows_it() -> tether_spec::InterfaceDocument {
    let text = std::fs::read_to_string(repo().join("spec/interfaces/kv.json")).expect("kv.json");
    let mut doc = tether_spec::InterfaceDocument::from_json(&text).expect("the shipped file is valid");
    doc.description = None;
    for version in &mut doc.versions {
        version.errors.clear();
    }
    doc
}

/// Runs `tether interface export` with `args` and returns the document it wrote to `--out`,
/// after checking it against `spec/schema/interface.schema.json`.
fn export(args: &[&str], plugin: &[String], file: &str) -> tether_spec::InterfaceDocument {
    let out_file = temp_file(file);
    let out_arg = out_file.display().to_string();
    let mut all = vec!["interface", "export", "--out", out_arg.as_str()];
    all.extend_from_slice(args);
    let out = tether(&all, plugin, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "", "the document goes to --out only");
    let written = std::fs::read_to_string(&out_file).expect("the document was written");
    let schema_text =
        std::fs::read_to_string(repo().join("spec/schema/interface.schema.json")).expect("the schema");
    let schema: Value = serde_json::from_str(&schema_text).expect("the schema is JSON");
    let value: Value = serde_json::from_str(&written).expect("the document is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let problems: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}\n{written}");
    tether_spec::InterfaceDocument::from_json(&written).expect("a valid interface document")
}

#[test]
fn interface_export_of_the_rust_kv_example_is_the_shipped_file_but_for_descriptions_and_errors() {
    let doc = export(&[], &kv_plugins()[0], "rust-kv.json");
    assert_eq!(doc, shipped_kv_as_a_handshake_shows_it());
}

#[test]
fn interface_export_of_the_python_kv_example_is_a_valid_document_of_both_versions() {
    let doc = export(&[], &kv_plugins()[1], "python-kv.json");
    let shipped = shipped_kv_as_a_handshake_shows_it();
    assert_eq!(doc.name, "kv");
    assert_eq!(doc.version_numbers(), [1, 2]);
    for (exported, file) in doc.versions.iter().zip(&shipped.versions) {
        assert!(exported.methods.keys().eq(file.methods.keys()), "{exported:?}");
    }
    // Its bytes are the spec's Bytes schema (written inline, where the file has a $ref).
    let bytes = &shipped.versions[0].methods["put"].params["$defs"]["Bytes"]["anyOf"];
    assert_eq!(&doc.versions[0].methods["put"].params["properties"]["value"]["anyOf"], bytes);
}

#[test]
fn interface_export_of_one_version_of_the_node_kv_example_and_to_stdout() {
    let doc = export(&["--version", "1"], &kv_plugins()[2], "node-kv.json");
    assert_eq!(doc.name, "kv");
    assert_eq!(doc.version_numbers(), [1]);
    let methods: Vec<&String> = doc.versions[0].methods.keys().collect();
    assert_eq!(methods, ["get", "put"]);
    // Without --out the document is printed, the same text.
    let out = tether(&["interface", "export", "--version", "1"], &kv_plugins()[2], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), doc.to_text());
}

#[test]
fn interface_export_names_what_it_cannot_export() {
    let greeter =
        vec!["python3".to_owned(), repo().join("examples-python/greeter/greeter.py").display().to_string()];
    let out = tether(&["interface", "export"], &greeter, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr).lines().last(),
        Some("tether: the plugin declares none of the interfaces offered; name yours with --interface NAME")
    );
    let out = tether(&["interface", "export", "--version", "9"], &kv_plugins()[0], &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).contains("starting the plugin offered kv version 9"), "{out:?}");
}
