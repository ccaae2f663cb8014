//! The benchmark's short mode, run once by the test suite so that it cannot rot: every code path
//! (pipe baseline, Rust plugins through the host and the floor client, Python and Node when their
//! interpreters are installed, the table and the JSON) with tiny counts. It asserts that numbers
//! came out, never how fast they are.

use std::path::PathBuf;

use tether_bench::{config, Flavor, Lang, Mode, Options};

#[test]
fn short_mode_runs_every_path_and_writes_json() {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tether-bench-smoke").join("results.json");
    let _ = std::fs::remove_file(&json);
    for plot in ["scaling-latency.svg", "scaling-bandwidth.svg"] {
        let _ = std::fs::remove_file(json.with_file_name(plot));
    }
    let opts = Options {
        mode: Mode::Smoke,
        langs: Lang::ALL.to_vec(),
        go_plugin: true,
        scaling: true,
        flavors: Flavor::ALL.to_vec(),
        json: json.clone(),
        helper: PathBuf::from(env!("CARGO_BIN_EXE_tether-bench-helper")),
        // The dev profile: the test build has already compiled most of what the examples need.
        release_plugins: false,
        python: PathBuf::from("/usr/bin/python3"),
        node: PathBuf::from("/usr/bin/node"),
    };
    let results = tether_bench::run_and_report(&opts).expect("the short mode runs");

    let ids: Vec<&str> = results.figures.iter().map(|f| f.id.as_str()).collect();
    for f in &results.figures {
        assert!(f.summary.median.is_finite() && f.summary.median >= 0.0, "{}: {:?}", f.id, f.summary);
    }
    let mut expected =
        vec!["pipe.ping_pong_64b", "pipe.echo_bw_64k", "pipe.attach_put_16m", "pipe.spawn_first_echo"];
    for rt in ["ct", "mt"] {
        for fig in [
            "get_seq",
            "tput_1",
            "tput_64",
            "put_16m",
            "get_16m",
            "callback_put",
            "start_first_call",
            "start_first_call_sha256",
        ] {
            expected.push(Box::leak(format!("rust.{rt}.{fig}").into_boxed_str()));
        }
    }
    // The one-CPU rows of the current-thread host.
    expected.extend(["rust.ct.get_seq_one_cpu", "rust.ct.callback_put_one_cpu"]);
    // The stream rows of the Rust blob example run on the first runtime flavor.
    for fig in ["stream_produce", "stream_count", "stream_host_rss", "stream_plugin_rss"] {
        expected.push(Box::leak(format!("rust.ct.{fig}").into_boxed_str()));
    }
    // What `tether trace` adds (rust-host/cli/).
    expected.push("trace.rust.get_seq_direct");
    expected.push("trace.rust.get_seq_traced");
    for lang in ["python", "node"] {
        let interpreter = if lang == "python" { &opts.python } else { &opts.node };
        if interpreter.exists() {
            for rt in ["ct", "mt"] {
                expected.push(Box::leak(format!("{lang}.{rt}.get_seq").into_boxed_str()));
                expected.push(Box::leak(format!("{lang}.{rt}.start_first_call").into_boxed_str()));
            }
        } else {
            eprintln!("{} is not installed: {lang} figures not expected", interpreter.display());
        }
    }
    // How cost grows, with its plots beside the JSON.
    for n in [1, 8, 64, 512] {
        expected.push(Box::leak(format!("scale.rust.inflight_{n}.latency").into_boxed_str()));
    }
    for size in ["16B", "64KiB", "64MiB"] {
        expected.push(Box::leak(format!("scale.rust.size_{size}.get").into_boxed_str()));
        expected.push(Box::leak(format!("scale.pipe.size_{size}.put").into_boxed_str()));
    }
    expected.extend(["scale.fleet_1.tput", "scale.fleet_4.host_rss_per_plugin", "scale.fleet_4.idle_cpu"]);
    // go-plugin measured in the same run, when Go and its Debian packages are installed
    // (bench/go-plugin/setup.sh); CI has no Go, and the run notes the skip instead.
    if tether_bench::go_plugin::available() {
        for fig in [
            "get_seq",
            "get_seq_one_cpu",
            "tput_64",
            "put_16m",
            "get_16m",
            "callback_put",
            "start_first_call",
        ] {
            expected.push(Box::leak(format!("go.grpc.{fig}").into_boxed_str()));
        }
        expected.push("go.netrpc.get_seq");
        let tether_get = results.figures.iter().find(|f| f.id == "rust.ct.get_seq").expect("rust.ct.get_seq");
        let go = tether_get.go_plugin.as_ref().expect("a go-plugin figure beside rust.ct.get_seq");
        assert_eq!(go.source, "go.grpc.get_seq", "the gain divides two figures of this run");
    } else {
        assert!(
            results.notes.iter().any(|n| n.contains("go-plugin rows skipped")),
            "no Go, yet no note that go-plugin was skipped: {:#?}",
            results.notes
        );
    }
    for id in expected {
        assert!(ids.contains(&id), "figure {id} missing; notes: {:#?}", results.notes);
    }
    assert!(results.figures.iter().any(|f| f.target.is_some()), "no target was evaluated");
    assert!(results.table().contains("go-plugin"));

    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    assert_eq!(doc["schema"], "tether-bench/1");
    assert_eq!(doc["mode"], "smoke");
    assert_eq!(doc["figures"].as_array().map(Vec::len), Some(results.figures.len()));
    assert_ne!(config::default_json(), json, "the smoke test must not overwrite the real results");
    for plot in ["scaling-latency.svg", "scaling-bandwidth.svg"] {
        let svg = std::fs::read_to_string(json.with_file_name(plot)).expect("the plot was drawn");
        assert!(
            svg.starts_with("<svg") && svg.contains("Tether"),
            "{plot} is not a plot of Tether's figures"
        );
    }
}
