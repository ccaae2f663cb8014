//! Proves the judge: every example plugin of the repository passes every check, and each
//! deliberately broken plugin (`tests/broken/plugin.py --break FLAG`) fails exactly the checks
//! of the rule it breaks.

#![allow(clippy::expect_used, clippy::panic)] // a failed expectation is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

const JUDGE: &str = env!("CARGO_BIN_EXE_tether-conformance");
const PYTHON: &str = "/usr/bin/python3";
const NODE: &str = "/usr/bin/node";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn broken() -> String {
    root().join("conformance/tests/broken/plugin.py").display().to_string()
}

/// Set in the environment of every judge this test binary runs, and so inherited by its plugins
/// and their children: tells our processes from those of another judge run on the same machine
/// (a second CI job, a developer's run).
const RUN_TAG_VAR: &str = "TETHER_JUDGE_TEST_RUN";

fn run_tag() -> String {
    format!("{}-{}", std::process::id(), env!("CARGO_PKG_VERSION"))
}

/// Runs the judge with a generous grace period: these tests share 2 busy cores with the rest of
/// the suite, and a plugin that never exits still fails, only later.
fn judge(args: &[&str]) -> Output {
    Command::new(JUDGE)
        .args(["--grace-ms", "5000"])
        .args(args)
        .env(RUN_TAG_VAR, run_tag())
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("the judge runs")
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the judge's --format json output is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The ids of the checks with `status` in one plugin's JSON report.
fn ids_with(plugin: &serde_json::Value, status: &str) -> BTreeSet<String> {
    plugin["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == status)
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

fn details(plugin: &serde_json::Value) -> String {
    plugin["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!("  {}: {}\n    fix: {}\n    stderr: {}", c["id"], c["reason"], c["fix"], c["stderr"])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Processes started by this test binary's judges, still alive, whose command line contains
/// `marker`.
fn alive_with(marker: &str) -> Vec<String> {
    alive_tagged(&run_tag(), marker)
}

/// Processes alive with `RUN_TAG_VAR` set to `tag` whose command line contains `marker`.
fn alive_tagged(tag: &str, marker: &str) -> Vec<String> {
    let tag = format!("{RUN_TAG_VAR}={tag}").into_bytes();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(environ) = std::fs::read(path.join("environ")) else { continue };
        if !environ.split(|&b| b == 0).any(|var| var == tag.as_slice()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(true);
        if cmdline.contains(marker) && !zombie {
            out.push(format!("{}: {cmdline}", path.display()));
        }
    }
    out
}

/// Builds the Rust example plugins with cargo, into the target directory this test was built in.
fn build_rust_examples() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "tether", "--examples"])
        .current_dir(root())
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release -p tether --examples failed");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    };
    target.join("release").join("examples")
}

#[test]
fn every_example_plugin_passes_every_check() {
    let examples = build_rust_examples();
    let root = root();
    let plugins = [
        ("rust/kv", vec![examples.join("kv")]),
        ("rust/counter", vec![examples.join("counter")]),
        ("rust/blob", vec![examples.join("blob")]),
        ("python/kv", vec![PathBuf::from(PYTHON), root.join("examples-python/kv.py")]),
        ("python/counter", vec![PathBuf::from(PYTHON), root.join("examples-python/counter.py")]),
        ("node/kv", vec![PathBuf::from(NODE), root.join("examples-node/kv.mjs")]),
        ("node/counter", vec![PathBuf::from(NODE), root.join("examples-node/counter.mjs")]),
        ("python/blob", vec![PathBuf::from(PYTHON), root.join("examples-python/blob.py")]),
        ("node/blob", vec![PathBuf::from(NODE), root.join("examples-node/blob.mjs")]),
    ];
    let missing: Vec<String> = plugins
        .iter()
        .flat_map(|(_, argv)| argv)
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "example plugins (or interpreters) missing: {missing:?}");
    let lines: Vec<String> = plugins
        .iter()
        .map(|(_, argv)| argv.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "))
        .collect();
    // A generous time for each answer too: a busy machine, not a plugin, is slow here.
    let mut args = vec!["--format", "json", "--timeout-ms", "15000"];
    for line in &lines {
        args.extend(["--plugin", line.as_str()]);
    }
    let out = judge(&args);
    let report = json_of(&out);
    let mut problems = String::new();
    for ((label, _), plugin) in plugins.iter().zip(report["plugins"].as_array().expect("plugins")) {
        let failed = ids_with(plugin, "fail");
        if !failed.is_empty() {
            problems += &format!("{label}: {failed:?}\n{}\n", details(plugin));
        }
        let passed = ids_with(plugin, "pass");
        let iface = match label.rsplit('/').next() {
            Some("kv") => "kv.put-get",
            Some("blob") => "blob.slow-reader",
            _ => "counter.callback",
        };
        for id in [
            "launch.no-cookie",
            "handshake.initialize",
            "rpc.batch",
            iface,
            "stop.no-leftovers",
            "output.stdout-clean",
        ] {
            if !passed.contains(id) {
                problems += &format!("{label}: {id} did not pass\n");
            }
        }
    }
    assert!(problems.is_empty(), "example plugins fail the judge:\n{problems}");
    assert!(out.status.success(), "exit status {}", out.status);
}

/// Each flag of the broken plugin, with the only checks that must fail.
const BROKEN: &[(&str, &[&str])] = &[
    ("stdout-print", &["output.stdout-clean"]),
    ("content-type", &[]),
    ("extra-header", &["output.stdout-clean"]),
    ("lists-unoffered", &["handshake.only-offered", "handshake.none-offered"]),
    ("eager-shutdown", &["stop.shutdown-waits"]),
    ("callback-code", &["counter.callback-error"]),
    ("handle-32601", &["handle.unknown"]),
    ("malformed-as-response", &["rpc.malformed-envelopes"]),
    ("app-notification", &[]),
    ("late-retain", &["handle.no-late-retain"]),
    ("adds-itself", &["counter.callback", "counter.concurrent-puts", "counter.reentrant-get"]),
    ("ignore-cancel", &["counter.cancel"]),
    (
        "no-exit-on-eof",
        &[
            "stop.shutdown",
            "stop.eof",
            "stop.eof-uninitialized",
            "stop.eof-pending-call",
            "stop.no-leftovers",
        ],
    ),
    ("answers-notifications", &["rpc.notifications-unanswered", "handle.unknown"]),
    ("wrong-missing-code", &["kv.missing-key", "kv.delete"]),
    ("sequential", &["counter.concurrent-puts", "counter.reentrant-get", "rpc.ping-during-callback"]),
    ("no-cookie-check", &["launch.no-cookie", "launch.wrong-cookie"]),
    ("leaves-child", &["stop.no-leftovers"]),
    ("no-debug-log", &["log.debug-on-put", "log.set-level"]),
    ("log-below-level", &["log.level-respected", "log.set-level"]),
    ("bad-log", &["log.well-formed", "output.messages-valid"]),
    ("rounds-big-ids", &["rpc.id-types"]),
    ("strict-reader", &["framing.header-forms"]),
    ("ignores-max-frame", &["framing.oversized"]),
    ("progress-token-as-string", &["progress.reported"]),
    ("progress-goes-back", &["progress.reported"]),
    ("progress-unasked", &["progress.only-with-token"]),
    // Attachments and streams: the Python SDK serving kv and blob, one rule broken (streams.py).
    ("exceeds-credit", &["blob.credit", "blob.abort-download"]),
    ("ignores-abort", &["blob.abort-download"]),
    ("odd-stream-ids", &["blob.stream-ids"]),
    ("no-stream-end", &["blob.end", "blob.download"]),
    ("stores-partial-upload", &["blob.abort-upload", "blob.cancel"]),
    ("blocks-when-stalled", &["blob.slow-reader"]),
    (
        "attachments-with-streams",
        &["attachments.only-negotiated", "output.stdout-clean", "output.messages-valid"],
    ),
    ("attachments-bad-ref", &["attachments.bad-reference"]),
    ("attachments-no-base64", &["attachments.base64-still"]),
];

/// The flags of the broken plugin served by the Python SDK (kv and blob, no counter).
const STREAM_FLAGS: &[&str] = &[
    "exceeds-credit",
    "ignores-abort",
    "odd-stream-ids",
    "no-stream-end",
    "stores-partial-upload",
    "blocks-when-stalled",
    "attachments-with-streams",
    "attachments-bad-ref",
    "attachments-no-base64",
];

/// What the from-scratch broken plugin skips: it implements neither blob nor attachments.
const SKIPPED_WITHOUT_STREAMS: &[&str] = &[
    "attachments.accepted",
    "attachments.base64-still",
    "attachments.bad-reference",
    "blob.upload",
    "blob.count",
    "blob.download",
    "blob.missing",
    "blob.produce",
    "blob.end",
    "blob.credit",
    "blob.abort-upload",
    "blob.abort-download",
    "blob.cancel",
    "blob.slow-reader",
    "blob.stream-ids",
];

/// What the SDK-based broken plugin skips: it implements no counter.
const SKIPPED_WITHOUT_COUNTER: &[&str] = &[
    "rpc.ping-during-callback",
    "counter.callback",
    "counter.concurrent-puts",
    "counter.reentrant-get",
    "counter.cancel",
    "counter.unknown-handle",
    "counter.callback-error",
    "handle.no-late-retain",
    "stop.eof-pending-call",
    "stop.shutdown-waits",
];

/// What every plugin skips in a run over stdio: the checks of the fds transport (SPEC.md §13).
const FDS_ONLY: &[&str] =
    &["transport.stdin-not-the-end", "transport.fds-close-on-exec", "transport.stdio-left-alone"];

/// Over the fds transport (SPEC.md §13), the examples of the three SDKs pass the transport's
/// checks and the end-of-input ones, and the SDK-based `broken/fds.py` fails exactly the check
/// of the rule each flag breaks.
#[test]
fn over_fds_the_examples_pass_and_each_transport_rule_is_checked() {
    let examples = build_rust_examples();
    let root = root();
    let fds_plugin = root.join("conformance/tests/broken/fds.py").display().to_string();
    let cases: Vec<(String, BTreeSet<String>)> = [
        (examples.join("kv").display().to_string(), None),
        (format!("{PYTHON} {}", root.join("examples-python/kv.py").display()), None),
        (format!("{NODE} {}", root.join("examples-node/kv.mjs").display()), None),
        (format!("{PYTHON} {fds_plugin}"), None),
        (format!("{PYTHON} {fds_plugin} --break stdin-ends-session"), Some("transport.stdin-not-the-end")),
        (format!("{PYTHON} {fds_plugin} --break inheritable"), Some("transport.fds-close-on-exec")),
        (format!("{PYTHON} {fds_plugin} --break protects-stdout"), Some("transport.stdio-left-alone")),
    ]
    .into_iter()
    .map(|(line, fails)| (line, fails.into_iter().map(str::to_owned).collect()))
    .collect();
    let mut args = vec!["--format", "json", "--timeout-ms", "15000", "--transport", "fds"];
    args.extend(["--filter", "transport.", "--filter", "stop.eof", "--filter", "kv.put-get"]);
    for (line, _) in &cases {
        args.extend(["--plugin", line.as_str()]);
    }
    let out = judge(&args);
    let report = json_of(&out);
    let mut problems = String::new();
    for ((line, want), plugin) in cases.iter().zip(report["plugins"].as_array().expect("plugins")) {
        let failed = ids_with(plugin, "fail");
        if &failed != want {
            problems +=
                &format!("{line}: failed {failed:?}, expected exactly {want:?}\n{}\n", details(plugin));
        }
        let passed = ids_with(plugin, "pass");
        for id in FDS_ONLY.iter().chain(&["stop.eof", "kv.put-get"]) {
            if !passed.contains(*id) && !want.contains(*id) {
                problems += &format!("{line}: {id} did not pass\n");
            }
        }
    }
    assert!(problems.is_empty(), "over fds:\n{problems}");
}

#[test]
fn each_broken_plugin_fails_exactly_its_checks() {
    let script = broken();
    let mut cases: Vec<(Option<&str>, BTreeSet<String>)> = vec![(None, BTreeSet::new())];
    for (flag, ids) in BROKEN {
        cases.push((Some(flag), ids.iter().map(|s| (*s).to_owned()).collect()));
    }
    let queue = Arc::new(Mutex::new(cases));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    // Three judges at a time: enough to overlap the time-outs, not so many that 2 cores thrash.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let problems = Arc::clone(&problems);
            let script = script.clone();
            std::thread::spawn(move || loop {
                let Some((flag, want)) = queue.lock().expect("queue").pop() else { break };
                let line = match flag {
                    Some(f) => format!("{PYTHON} {script} --break {f}"),
                    None => format!("{PYTHON} {script}"),
                };
                let mut args =
                    vec!["--format", "json", "--timeout-ms", "3000", "--jobs", "3", "--plugin", &line];
                if flag.is_some() {
                    // The correct base proves the 16 MiB check; it is the costliest to repeat.
                    args.extend(["--exclude", "kv.large-16mib"]);
                }
                let out = judge(&args);
                let report = json_of(&out);
                let plugin = &report["plugins"][0];
                let failed = ids_with(plugin, "fail");
                let name = flag.unwrap_or("(correct base)");
                if failed != want {
                    problems.lock().expect("problems").push(format!(
                        "{name}: failed {failed:?}, expected exactly {want:?}\n{}",
                        details(plugin)
                    ));
                }
                if out.status.success() != want.is_empty() {
                    problems.lock().expect("problems").push(format!("{name}: exit status {}", out.status));
                }
                // Skipped only where nothing was there to see: without its debug $/log, the
                // plugin sends no $/log at all, so the log aggregates have nothing to judge.
                // And what the plugin does not implement, with the reason.
                let mut may_skip: BTreeSet<String> = match flag {
                    Some("no-debug-log") => {
                        ["log.level-respected", "log.well-formed"].map(str::to_owned).into()
                    }
                    _ => BTreeSet::new(),
                };
                let absent = match flag {
                    Some(f) if STREAM_FLAGS.contains(&f) => SKIPPED_WITHOUT_COUNTER,
                    _ => SKIPPED_WITHOUT_STREAMS,
                };
                may_skip.extend(absent.iter().chain(FDS_ONLY).map(|s| (*s).to_owned()));
                // A plugin that stalls (`sequential`) may reach the stall limit before the log
                // scenarios start on a loaded machine: they are then not run, and the log
                // aggregates have nothing to judge.
                if ids_with(plugin, "not-run").contains("log.debug-on-put") {
                    may_skip.extend(["log.level-respected", "log.well-formed"].map(str::to_owned));
                }
                if ids_with(plugin, "skip") != may_skip {
                    problems
                        .lock()
                        .expect("problems")
                        .push(format!("{name}: skipped {:?}", ids_with(plugin, "skip")));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let problems = problems.lock().expect("problems");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The judge left nothing behind: neither the plugin that ignores end of file nor the child
    // that outlives its plugin.
    for marker in ["--break no-exit-on-eof", "--break no-cookie-check", "tether-broken-leftover"] {
        assert_eq!(alive_with(marker), Vec::<String>::new(), "processes left behind");
    }
}

#[test]
fn a_failure_says_what_was_expected_what_came_and_what_to_fix() {
    let line = format!("{PYTHON} {} --break wrong-missing-code", broken());
    let out = judge(&["--plugin", &line, "--filter", "kv.missing-key"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("kv.missing-key") && text.contains("FAIL"), "{text}");
    assert!(text.contains("   expected: error 1001 (key not found)"), "{text}");
    assert!(text.contains("got:") && text.contains("-32602"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed, 0 skipped, 0 not run"), "{text}");
}

#[test]
fn the_baseline_accepts_listed_failures_and_rejects_stale_entries() {
    let line = format!("{PYTHON} {} --break wrong-missing-code", broken());
    let dir = std::env::temp_dir().join(format!("tether-conformance-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ok = dir.join("ok.txt");
    std::fs::write(&ok, format!("# known failures\n[{line}]\nkv.missing-key\nkv.delete\n")).expect("write");
    let out = judge(&["--plugin", &line, "--filter", "kv.*", "--baseline", ok.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "listed failures must not fail the run:\n{text}");
    assert!(text.contains("XFAIL"), "{text}");

    let stale = dir.join("stale.txt");
    std::fs::write(&stale, format!("kv.put-get\n[{line}]\nkv.missing-key\nkv.delete\n")).expect("write");
    let out = judge(&["--plugin", &line, "--filter", "kv.*", "--baseline", stale.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a listed check that passes must fail the run:\n{text}");
    assert!(text.contains("STALE") && text.contains("remove it from the baseline"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn junit_and_list_outputs() {
    let line = format!("{PYTHON} {}", broken());
    let out = judge(&["--plugin", &line, "--filter", "rpc.p*", "--format", "junit"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("<?xml") && text.contains("<testsuites") && text.contains("rpc.ping (§4.5)"),
        "{text}"
    );
    assert_eq!(text.matches("<testcase").count(), 4, "{text}"); // ping, params-absent, parse-error, ping-during-callback

    let out = judge(&["--list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for id in [
        "launch.no-cookie",
        "handshake.kv-v1",
        "rpc.parse-error",
        "kv.large-16mib",
        "counter.cancel",
        "output.stdout-clean",
    ] {
        assert!(text.contains(id), "{id} missing from --list:\n{text}");
    }
}

/// Plugins whose handshake cannot complete, each with the words its one diagnosis must hold.
const NO_HANDSHAKE: &[(&str, &str)] = &[
    ("exit-at-once", "exited with status 3"),
    ("garbage", "bytes that are not a frame"),
    ("lf-frames", "LF instead of CRLF"),
    ("silent", "stayed silent"),
];

#[test]
fn a_plugin_without_a_handshake_gets_one_diagnosis_fast() {
    let script = broken();
    // Run one after the other, so that the timings are each judge's own.
    for (flag, words) in NO_HANDSHAKE {
        let line = format!("{PYTHON} {script} --break {flag}");
        let started = std::time::Instant::now();
        let out = judge(&["--format", "json", "--timeout-ms", "2000", "--plugin", &line]);
        let took = started.elapsed();
        let report = json_of(&out);
        let plugin = &report["plugins"][0];
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let failed = ids_with(plugin, "fail");
        assert_eq!(
            failed,
            BTreeSet::from(["handshake.initialize".to_owned()]),
            "{flag}:\n{}",
            details(plugin)
        );
        let checks = plugin["checks"].as_array().expect("checks");
        let diagnosis = checks.iter().find(|c| c["id"] == "handshake.initialize").expect("the diagnosis");
        let reason = diagnosis["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(words), "{flag}: {reason:?} should say {words:?}");
        assert!(diagnosis["fix"].as_str().is_some_and(|f| !f.is_empty()), "{flag}: no fix text");
        // Everything but the launch checks is reported as not run, with the reason.
        for c in checks {
            let id = c["id"].as_str().unwrap_or_default();
            if id.starts_with("launch.") || id == "handshake.initialize" {
                continue;
            }
            assert_eq!(c["status"], "not-run", "{flag}: {id}");
            assert!(c["reason"].as_str().is_some_and(|r| r.contains("handshake")), "{flag}: {id}");
        }
        assert_eq!(
            plugin["summary"]["notRun"].as_u64(),
            Some(checks.len() as u64 - 3),
            "{flag}: the summary counts the checks not run"
        );
        // Budgets (issue 9): an exit or garbage within 3 s on an idle machine, a silent plugin
        // within the initialize time-out (2 s + 10 s allowed for the start) plus the grace
        // period. The bounds are generous for a busy machine, and still far below the
        // time-outs of every check one after the other (minutes).
        let bound = if *flag == "silent" { 30 } else { 15 };
        assert!(took < std::time::Duration::from_secs(bound), "{flag} took {took:?}");
    }
}

#[test]
fn a_judge_stopped_by_a_signal_leaves_no_process_behind() {
    // A plugin that ignores the end of its input: only the judge can stop it.
    let line = format!("{PYTHON} {} --break no-exit-on-eof", broken());
    // A tag of its own: the other tests run the same plugin at the same time.
    let tag = format!("{}-signals", run_tag());
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::INT, rustix::process::Signal::KILL]
    {
        let mut child = Command::new(JUDGE)
            .args(["--timeout-ms", "3000", "--plugin", &line])
            .env(RUN_TAG_VAR, &tag)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the judge starts");
        // Wait until the judge runs plugins, seen in /proc rather than guessed with a sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while alive_tagged(&tag, "--break no-exit-on-eof").len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the judge started no plugin");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal sent");
        let status = child.wait().expect("the judge ends");
        use std::os::unix::process::ExitStatusExt as _;
        match signal {
            rustix::process::Signal::TERM => assert_eq!(status.code(), Some(143), "{status}"),
            rustix::process::Signal::INT => assert_eq!(status.code(), Some(130), "{status}"),
            _ => assert_eq!(status.signal(), Some(9), "{status}"),
        }
        // The parent-death signal and the group kill are immediate, but the kernel reaps
        // asynchronously: poll for the processes to go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut left = alive_tagged(&tag, "--break no-exit-on-eof");
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            left = alive_tagged(&tag, "--break no-exit-on-eof");
        }
        assert_eq!(left, Vec::<String>::new(), "processes left after {signal:?}");
    }
}

#[test]
fn a_plugin_that_stops_answering_after_the_handshake_is_judged_within_budget() {
    let line = format!("{PYTHON} {} --break hangs-after-handshake", broken());
    let started = std::time::Instant::now();
    // The default options (the shared judge() helper only lengthens the grace period).
    let out = judge(&["--format", "json", "--plugin", &line]);
    let took = started.elapsed();
    let report = json_of(&out);
    let plugin = &report["plugins"][0];
    assert_eq!(out.status.code(), Some(1));
    let failed = ids_with(plugin, "fail");
    assert!(failed.len() >= 3, "at least the three time-outs fail: {failed:?}");
    let stalled: Vec<&serde_json::Value> =
        plugin["checks"].as_array().expect("checks").iter().filter(|c| c["status"] == "not-run").collect();
    assert!(!stalled.is_empty(), "after 3 time-outs the rest is not run:\n{}", details(plugin));
    for c in &stalled {
        assert!(c["reason"].as_str().is_some_and(|r| r.contains("time-out")), "{c}");
    }
    // Issue 9: any plugin within 30 s with the default options on an idle machine; generous here
    // for a busy one, and far below the time-outs of every check (minutes).
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
}
