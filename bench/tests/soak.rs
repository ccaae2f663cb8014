//! The soak run (`cargo bench -p tether-bench -- --soak`) with tiny counts, so that it cannot
//! rot: Rust and Python plugins (Python when installed), every resource column in the table
//! and the JSON, and the count verdicts passing (nothing left open, running or unreaped after a
//! couple of thousand calls and a few cycles). Memory is shown but not asserted: the counts
//! are too small for its bounds to mean anything. Alone in its binary, so that no other test's
//! thread shows in the thread count.

use std::path::PathBuf;

use tether_bench::soak::{self, sample::COLUMNS, SoakOptions};
use tether_bench::{Flavor, Lang, Mode, Options};

#[test]
fn a_short_soak_samples_every_resource_and_finds_nothing_left_behind() {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tether-bench-soak").join("soak.json");
    let _ = std::fs::remove_file(&json);
    let python = PathBuf::from("/usr/bin/python3");
    let mut langs = vec![Lang::Rust];
    if python.exists() {
        langs.push(Lang::Python);
    } else {
        eprintln!("{} is not installed: Python not soaked", python.display());
    }
    let opts = Options {
        mode: Mode::Smoke,
        langs: langs.clone(),
        go_plugin: false,
        scaling: false,
        flavors: vec![Flavor::MultiThread],
        json: json.with_file_name("unused.json"),
        helper: PathBuf::from(env!("CARGO_BIN_EXE_tether-bench-helper")),
        release_plugins: false,
        python,
        node: PathBuf::from("/usr/bin/node"),
    };
    let counts = SoakOptions { calls: 2_000, cycles: 5, warmup: 1_000, json: json.clone() };
    let report = soak::run_and_report(&opts, &counts).expect("the soak runs");

    assert_eq!(report.languages.len(), langs.len(), "notes: {:?}", report.notes);
    let table = soak::table(&report);
    for (name, _) in COLUMNS {
        assert!(table.contains(&format!(" {name} |")), "column {name} missing from\n{table}");
    }
    for l in &report.languages {
        assert_eq!(l.error, None, "{}", l.lang);
        assert_eq!(l.calls.total(), 2_000, "{}", l.lang);
        assert_eq!((l.calls.dropped, l.calls.timed_out, l.calls.big_puts, l.calls.callbacks), (2, 2, 2, 200));
        assert_eq!((l.shutdown_cycles, l.kill_cycles), (5, 5), "{}", l.lang);
        let phases: Vec<&str> = l.samples.iter().map(|s| s.phase.as_str()).collect();
        for phase in ["start", "baseline", "calls", "after-calls", "shutdown-cycles", "kill-cycles"] {
            assert!(phases.contains(&phase), "{}: no {phase} sample in {phases:?}", l.lang);
        }
        // Start, baseline, 11 during the calls, after them, 5 + 5 during the cycles.
        assert_eq!(l.samples.len(), 2 + 11 + 1 + 10, "{}", l.lang);
        let calls = l.samples.iter().find(|s| s.phase == "calls").expect("a calls sample");
        assert!(calls.res.children >= 2, "{}: the two plugins are not seen as children", l.lang);
        assert_eq!(l.verdicts.len(), COLUMNS.len());
        for v in l.verdicts.iter().filter(|v| v.resource != "rss_kib") {
            assert!(v.pass, "{}: {} grew: {}\n{table}", l.lang, v.resource, v.why);
        }
    }

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON was written"))
            .expect("it parses");
    assert_eq!(doc["schema"], "tether-bench-soak/1");
    let first = &doc["languages"][0]["samples"][0]["res"];
    for (name, _) in COLUMNS {
        assert!(first[name].is_u64(), "{name} missing from the JSON sample {first}");
    }
    assert_ne!(soak::default_json(), json, "the test must not overwrite the real results");
}
