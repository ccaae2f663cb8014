//! Proves the judge's scenarios (`--scenarios DIR`) and `iface.<name>.messages-valid` on real
//! plugin processes: the example greeter's scenarios fail a greeter broken in one method exactly
//! where it differs, with the file, line, expected and got lines; a result that violates the
//! interface file fails messages-valid with its pointer and the check where it happened; each
//! matcher kind, an unordered group and a time limit can fail (the fixtures of
//! `tests/scenarios/`), and a host-side handle is answered by a scenario.

#![allow(clippy::expect_used, clippy::panic)] // a failed expectation is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const JUDGE: &str = env!("CARGO_BIN_EXE_tether-conformance");
const PYTHON: &str = "/usr/bin/python3";
const GREETER: &str = "examples-python/greeter/greeter.py";
const FILE: &str = "examples-python/greeter/greeter.json";
const SCENARIOS: &str = "examples-python/greeter/scenarios";
const FIXTURES: &str = "conformance/tests/scenarios";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn judge(plugin: &str, extra: &[&str]) -> Output {
    Command::new(JUDGE)
        .args(["--grace-ms", "5000", "--format", "json", "--plugin", plugin])
        .args(extra)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("the judge runs")
}

/// One check of the JSON report.
#[derive(Debug, Clone, Default)]
struct Row {
    id: String,
    status: String,
    reason: String,
    expected: String,
    got: String,
}

fn rows(out: &Output) -> Vec<Row> {
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
            Row {
                id: s("id"),
                status: s("status"),
                reason: s("reason"),
                expected: s("expected"),
                got: s("got"),
            }
        })
        .collect()
}

fn row(rows: &[Row], id: &str) -> Row {
    rows.iter().find(|r| r.id == id).cloned().unwrap_or_else(|| panic!("no check {id} in {rows:?}"))
}

fn statuses(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| format!("{} {}", r.id, r.status)).collect()
}

fn broken(flag: &str) -> String {
    format!("{PYTHON} conformance/tests/broken/greeter.py --break {flag}")
}

#[test]
fn a_greeter_broken_in_french_fails_exactly_the_french_scenarios_with_the_differing_line() {
    let out = judge(
        &broken("french"),
        &["--interface-file", FILE, "--scenarios", SCENARIOS, "--filter", "iface", "--filter", "scenario"],
    );
    let all = rows(&out);
    assert_eq!(
        statuses(&all),
        [
            "iface.greeter.declared pass",
            "iface.greeter.schemas-compatible pass",
            "scenario.audience pass",
            "scenario.captures pass",
            "scenario.in-flight fail",
            "scenario.languages fail",
            // A wrong greeting is still a string: the file's schema allows it.
            "iface.greeter.messages-valid pass",
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    // In order: the file and line, the pointer, both values; the lines as written and as sent.
    let languages = row(&all, "scenario.languages");
    assert_eq!(
        languages.reason,
        "examples-python/greeter/scenarios/languages.tether:15: at \"/result/greeting\": expected \"Bonjour, Ada!\", got \"Bonjour Ada\""
    );
    assert_eq!(
        languages.expected,
        r#"examples-python/greeter/scenarios/languages.tether:15: "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"greeting\":\"Bonjour, Ada!\"}}""#
    );
    assert!(
        languages
            .got
            .starts_with(r#""{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"greeting\":\"Bonjour Ada\"}}""#),
        "{}",
        languages.got
    );
    // In an unordered group: the group's lines, and the line that came closest.
    let in_flight = row(&all, "scenario.in-flight");
    assert!(
        in_flight.reason.starts_with(
            "examples-python/greeter/scenarios/in-flight.tether:18-22: a line that matches none of the "
        ),
        "{}",
        in_flight.reason
    );
    assert!(
        in_flight.reason.ends_with("(examples-python/greeter/scenarios/in-flight.tether:20: at \"/result/greeting\": expected \"Bonjour, Grace!\", got \"Bonjour Grace\")"),
        "{}",
        in_flight.reason
    );
    assert!(in_flight.expected.contains("in-flight.tether:20: "), "{}", in_flight.expected);
    assert!(in_flight.got.contains(r#"\"greeting\":\"Bonjour Grace\""#), "{}", in_flight.got);
}

#[test]
fn a_result_that_violates_the_interface_file_fails_messages_valid_with_its_pointer_and_check() {
    let out = judge(
        &broken("result"),
        &[
            "--interface-file",
            FILE,
            "--scenarios",
            SCENARIOS,
            "--filter",
            "iface",
            "--filter",
            "scenario.captures",
        ],
    );
    let all = rows(&out);
    let valid = row(&all, "iface.greeter.messages-valid");
    assert_eq!(valid.status, "fail");
    assert!(
        valid.reason.starts_with("in scenario.captures: the result of greeter.hello at \"/greeting\": "),
        "{}",
        valid.reason
    );
    assert!(valid.got.contains(r#"{\"greeting\":{\"text\":\"Hello, Ada!\"}}"#), "{}", valid.got);
    assert_eq!(row(&all, "scenario.captures").status, "fail");
}

#[test]
fn an_invoke_of_a_host_handle_that_violates_its_interface_file_fails_that_files_messages_valid() {
    let out = judge(
        &broken("invoke"),
        &[
            "--interface-file",
            FILE,
            "--interface-file",
            "examples-python/greeter/audience.json",
            "--scenarios",
            SCENARIOS,
            "--filter",
            "iface",
            "--filter",
            "scenario.audience",
        ],
    );
    let all = rows(&out);
    // The plugin does not serve audience: no declared or schemas-compatible check for it.
    assert!(!all.iter().any(|r| r.id == "iface.audience.declared"), "{all:?}");
    let invoke = row(&all, "iface.audience.messages-valid");
    assert_eq!(invoke.status, "fail");
    assert!(
        invoke.reason.starts_with(
            "in scenario.audience: the params of the plugin's invoke of audience.hear at \"\": "
        ),
        "{}",
        invoke.reason
    );
    assert!(invoke.got.contains("tether/invoke"), "{}", invoke.got);
    let scenario = row(&all, "scenario.audience");
    assert!(
        scenario.reason.starts_with(
            "examples-python/greeter/scenarios/audience.tether:15: at \"/params/params/greeting\": missing"
        ),
        "{}",
        scenario.reason
    );
}

#[test]
fn without_a_scenario_nothing_on_the_interface_is_seen_and_messages_valid_is_a_skip_not_a_pass() {
    let out = judge(&format!("{PYTHON} {GREETER}"), &["--interface-file", FILE, "--filter", "iface"]);
    let valid = row(&rows(&out), "iface.greeter.messages-valid");
    assert_eq!(valid.status, "skip");
}

/// Runs one fixture of `tests/scenarios/` against a plugin.
fn fixture(plugin: &str, stem: &str, extra: &[&str]) -> Row {
    let filter = format!("scenario.{stem}");
    let mut args = vec!["--scenarios", FIXTURES, "--filter", filter.as_str()];
    args.extend_from_slice(extra);
    let out = judge(&format!("{PYTHON} {plugin}"), &args);
    row(&rows(&out), &filter)
}

#[test]
fn a_scenario_answers_the_plugins_invoke_of_a_host_handle_through_a_captured_id() {
    let out = judge(
        &format!("{PYTHON} examples-python/counter.py"),
        &[
            "--scenarios",
            FIXTURES,
            "--filter",
            "scenario.counter-handle",
            "--filter",
            "iface",
            "--interface-file",
            "spec/interfaces/counter.json",
        ],
    );
    let all = rows(&out);
    let r = row(&all, "scenario.counter-handle");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("pass", ""));
    // The answers to counter.put and counter.get were judged against counter.json.
    assert_eq!(row(&all, "iface.counter.messages-valid").status, "pass");
}

#[test]
fn a_time_limit_that_runs_out_fails_with_the_line_waited_for() {
    let r = fixture(GREETER, "never-answered", &[]);
    assert_eq!(r.status, "fail");
    assert_eq!(
        r.reason,
        "conformance/tests/scenarios/never-answered.tether:11: nothing within the time limit (@within 1 s)"
    );
    assert!(r.expected.contains(r#"\"greeting\":\"Hello, Ada!\""#), "{}", r.expected);
}

#[test]
fn an_unordered_group_with_a_line_never_sent_fails_naming_that_line() {
    let r = fixture(GREETER, "group-missing", &[]);
    assert_eq!(
        r.reason,
        "conformance/tests/scenarios/group-missing.tether:18: nothing within the time limit (@within 2 s) (1 of the 3 lines of the unordered group at lines 14-18 still expected)"
    );
    assert_eq!(
        r.expected,
        r#"conformance/tests/scenarios/group-missing.tether:18: "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"greeting\":\"Hello, Grace!\"}}""#
    );
}

#[test]
fn a_type_matcher_fails_on_another_type() {
    let r = fixture(GREETER, "wrong-type", &[]);
    assert_eq!(
        r.reason,
        "conformance/tests/scenarios/wrong-type.tether:10: at \"/result/greeting\": expected any integer, got the string \"Hello, Ada!\""
    );
}

#[test]
fn a_captured_value_expected_again_fails_when_the_plugin_sends_another() {
    let r = fixture(GREETER, "capture-reuse", &[]);
    assert_eq!(
        r.reason,
        "conformance/tests/scenarios/capture-reuse.tether:14: at \"/result/greeting\": expected ${g} = \"Hello, Ada!\", got \"Hello, Alan!\""
    );
}

#[test]
fn a_file_that_is_not_a_scenario_stops_the_judge_naming_its_line() {
    let out = judge(&format!("{PYTHON} {GREETER}"), &["--scenarios", "conformance/tests/scenarios-bad"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conformance/tests/scenarios-bad/misspelt.tether:5: \"$any\" takes true or one of"),
        "{stderr}"
    );
}

#[test]
fn a_line_after_the_scenarios_last_line_fails_it() {
    let r = fixture(GREETER, "extra-line", &[]);
    assert_eq!(
        r.reason,
        "conformance/tests/scenarios/extra-line.tether: after the scenario's last line the plugin sent a line it does not expect"
    );
    assert!(r.got.contains(r#"\"greeting\":\"Hello, Ada!\""#), "{}", r.got);
}
