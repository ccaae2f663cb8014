//! The transcripts of `spec/transcripts/` replayed against this SDK's example plugins
//! (`examples/kv.rs`, `examples/counter.rs`, `examples/blob.rs`) as processes, with the replay
//! algorithm of `spec/transcripts/README.md` (shared through the test kit), including
//! `attachments.tether` (kv) and `streams.tether` (blob).
//!
//! A transcript whose `# plugin:` line names a plugin this SDK has no example for is skipped,
//! and the skip is printed.

use tether_testkit::transcripts::{load_all, replay};
use tether_testkit::{plugin_command, sdk_example, ProcessPlugin};

/// The example that plays the plugin a transcript names, if this SDK has one.
fn example_for(plugin: &str) -> Option<&'static str> {
    match plugin {
        "kv" => Some("kv"),
        "counter" => Some("counter"),
        "blob" => Some("blob"),
        _ => None,
    }
}

#[test]
fn transcripts_replay_against_the_rust_examples() {
    let transcripts = load_all().unwrap_or_else(|e| panic!("{e}"));
    let mut replayed = 0;
    let mut failures = Vec::new();
    // `TETHER_TRANSCRIPT=streams` replays only the transcripts whose name contains it.
    let only = std::env::var("TETHER_TRANSCRIPT").ok();
    for t in &transcripts {
        if only.as_ref().is_some_and(|o| !t.name.contains(o.as_str())) {
            continue;
        }
        let Some(example) = example_for(&t.plugin) else {
            println!("skipped {}: no Rust example plugin named {:?}", t.name, t.plugin);
            continue;
        };
        let plugin = ProcessPlugin::spawn(plugin_command(&sdk_example(example)))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        match replay(t, plugin) {
            Ok(()) => replayed += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} transcript(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert!(
        only.is_some() || replayed >= 3,
        "expected the kv, counter and blob transcripts at least, replayed {replayed}"
    );
}

#[test]
fn the_replay_fails_against_the_wrong_plugin() {
    // The replay checks what the plugin answers: the kv transcript against the counter example
    // (which negotiates no kv interface) must fail, not pass vacuously.
    let transcripts = load_all().unwrap_or_else(|e| panic!("{e}"));
    let kv = transcripts.iter().find(|t| t.name == "kv.tether").expect("spec/transcripts/kv.tether");
    let wrong =
        ProcessPlugin::spawn(plugin_command(&sdk_example("counter"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(replay(kv, wrong).is_err());
}
