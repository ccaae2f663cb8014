//! The connection fuzz target's checks on stable Rust: every committed corpus input and every
//! regression of `rust-sdk/fuzz/` runs through the same driver the fuzzer uses
//! (`fuzz_driver/connection.rs`), so what the fuzzer once found stays fixed in CI without a
//! nightly toolchain. `UPDATE_FUZZ_SEEDS=1` writes the seed programs, built from the transcripts
//! of `spec/transcripts/`, to `rust-sdk/fuzz/seeds/connection/` (see FUZZING.md).

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "fuzz_driver/connection.rs"]
#[allow(dead_code, unreachable_pub)]
mod driver;

#[path = "../../spec/tests/support/transcript.rs"]
#[allow(dead_code, unreachable_pub)]
mod transcript;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use driver::{Action, Program};
use transcript::Dir;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// A panic anywhere, a task of the session included (tokio catches those, the fuzzer aborts on
/// them): recorded, so that one inside a task fails the input too.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn check(name: &str, data: &[u8]) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            default(info);
        }));
    });
    if let Err(panic) = std::panic::catch_unwind(|| driver::check(data)) {
        let why = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        panic!("{name}: {why}");
    }
    assert!(!PANICKED.load(Ordering::SeqCst), "{name}: a task panicked");
}

#[test]
fn the_connection_corpus_and_regressions_pass_the_driver() {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join("connection")) else { continue };
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    assert!(files.len() > 10, "the connection corpus is missing");
    for file in &files {
        check(&file.display().to_string(), &std::fs::read(file).unwrap());
    }
}

#[test]
fn the_seeds_pass_the_driver_and_read_back() {
    for (name, program) in seeds() {
        let bytes = program.encode();
        assert_eq!(Program::decode(&bytes), program, "{name}: the encoding does not read back");
        check(&name, &bytes);
    }
}

/// The seed programs: each transcript's frames to the plugin, then settling (its answers to the
/// plugin's callbacks are in it, with the ids the reference plugin used); the same through a
/// pipe of 61 bytes; and short programs that reach each action.
fn seeds() -> Vec<(String, Program)> {
    let mut seeds = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/transcripts");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tether"))
        .collect();
    names.sort();
    for name in names {
        let t = transcript::parse(&name, &std::fs::read(dir.join(&name)).unwrap()).unwrap();
        let mut actions: Vec<Action> = t
            .blocks
            .iter()
            .filter(|b| b.dir == Dir::ToPlugin)
            .map(|b| Action::Frame(b.body.clone()))
            .collect();
        actions.push(Action::Settle);
        let stem = name.trim_end_matches(".tether");
        seeds.push((stem.to_owned(), Program { pipe: 64 * 1024, actions: actions.clone() }));
        seeds.push((format!("{stem}-small-pipe"), Program { pipe: 61, actions }));
    }
    let init = Action::Initialize { flags: 3 };
    let programs: Vec<(&str, Vec<Action>)> = vec![
        (
            "kv",
            vec![
                init.clone(),
                Action::KvPut { id: 1, key: 1, len: 200, progress: true },
                Action::KvGet { id: 2, key: 1 },
                Action::KvDelete { id: 3, key: 1 },
                Action::KvGet { id: 4, key: 1 },
                Action::Settle,
            ],
        ),
        (
            "counter-callback",
            vec![
                init.clone(),
                Action::CounterPut { id: 1, key: 2, value: 5, handle: 1 },
                Action::Answer { pick: 0, kind: 0 },
                Action::CounterGet { id: 2, key: 2 },
                Action::CounterPut { id: 3, key: 2, value: 255, handle: 1 },
                Action::Answer { pick: 0, kind: 2 },
                Action::Settle,
            ],
        ),
        (
            "lend-invoke-retain-release",
            vec![
                init.clone(),
                Action::Lend { id: 1 },
                Action::Invoke { id: 2, handle: 0, variant: 0 },
                Action::Retain { id: 3, handle: 0 },
                Action::Answer { pick: 0, kind: 0 },
                Action::Invoke { id: 4, handle: 0, variant: 1 },
                Action::Release { handle: 0 },
                Action::Invoke { id: 5, handle: 0, variant: 0 },
                Action::Settle,
            ],
        ),
        (
            "cancel-while-waiting",
            vec![
                init.clone(),
                Action::CounterPut { id: 1, key: 0, value: 1, handle: 0 },
                Action::Lend { id: 2 },
                Action::Cancel { target: 1 },
                Action::Cancel { target: 2 },
                Action::Answer { pick: 0, kind: 0 },
                Action::Answer { pick: 0, kind: 5 },
            ],
        ),
        (
            "unknown-ids-and-calls",
            vec![
                Action::KvGet { id: 1, key: 0 },
                init.clone(),
                Action::Answer { pick: 7, kind: 3 },
                Action::Call { id: 1, variant: 2 },
                Action::Call { id: 2, variant: 4 },
                Action::Call { id: 3, variant: 6 },
                Action::Notify { variant: 3 },
                Action::Call { id: 4, variant: 1 },
                Action::KvGet { id: 5, key: 0 },
                Action::Settle,
            ],
        ),
        (
            "garbage-and-partial",
            vec![
                init.clone(),
                Action::Garbage(b"hello from print()\n".to_vec()),
                Action::KvGet { id: 1, key: 0 },
                Action::Frame(b"{nope".to_vec()),
                Action::Garbage(b"Content-Length: 2\r\n\r\n{}".to_vec()),
                Action::Partial { len: 40 },
                Action::KvGet { id: 2, key: 0 },
                Action::Settle,
                Action::Partial { len: 9 },
            ],
        ),
        ("oversized", vec![Action::Oversized { id: 3 }, init, Action::KvGet { id: 1, key: 0 }]),
    ];
    for (name, actions) in programs {
        seeds.push((format!("program-{name}"), Program { pipe: 512, actions }));
    }
    seeds
}

/// `UPDATE_FUZZ_SEEDS=1`: writes the seeds where `rust-sdk/fuzz/run.sh` reads them.
#[test]
fn seeds_are_written_on_request() {
    if std::env::var_os("UPDATE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = fuzz_dir().join("seeds").join("connection");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, program) in seeds() {
        std::fs::write(dir.join(name), program.encode()).unwrap();
    }
}
