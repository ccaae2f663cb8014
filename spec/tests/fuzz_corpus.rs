//! The fuzz targets' checks on stable Rust: every committed corpus input and every regression
//! of `spec/fuzz/` goes through the same oracle the fuzzers use (`fuzz_oracle/`), so what a
//! fuzzer once found stays fixed in CI without a nightly toolchain. `UPDATE_FUZZ_SEEDS=1` writes
//! the seed inputs, built from the transcripts, to `spec/fuzz/seeds/` (see FUZZING.md).

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "fuzz_oracle/codec.rs"]
#[allow(dead_code, unreachable_pub)]
mod codec_oracle;
#[path = "fuzz_oracle/message.rs"]
#[allow(dead_code, unreachable_pub)]
mod message_oracle;
#[path = "fuzz_oracle/message_structured.rs"]
#[allow(dead_code, unreachable_pub)]
mod structured_oracle;

use std::path::{Path, PathBuf};

use support::transcript::{load_all, Block, Dir};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of the corpus and the regressions of one target.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { continue };
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, naming the file that fails; the number of inputs.
fn replay(target: &str, check: &(dyn Fn(&[u8]) + std::panic::RefUnwindSafe)) -> usize {
    let files = inputs(target);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{}: {why}", file.display());
        }
    }
    files.len()
}

#[test]
fn the_codec_corpus_and_regressions_pass_the_codec_oracle() {
    assert!(replay("codec", &codec_oracle::check) > 10, "the codec corpus is missing");
}

#[test]
fn the_message_corpus_and_regressions_pass_the_envelope_oracle() {
    assert!(replay("message", &message_oracle::check) > 10, "the message corpus is missing");
}

#[test]
fn the_structured_message_corpus_passes_the_envelope_oracle() {
    // Its inputs are `arbitrary` bytes that the target decodes into a body (regressions it
    // finds are saved as bodies, under `regressions/message/`).
    let bodies = std::sync::atomic::AtomicUsize::new(0);
    let files = replay("message_structured", &|data| {
        if structured_oracle::body(data).is_some() {
            bodies.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        structured_oracle::check(data);
    });
    assert!(files > 10, "the message_structured corpus is missing");
    // The bytes still mean bodies here (a change of `arbitrary` or of the generator would make
    // them decode to nothing, and the replay above would check nothing).
    let bodies = bodies.into_inner();
    assert!(bodies * 10 >= files * 9, "only {bodies} of {files} inputs decode to a body");
}

#[test]
fn the_seeds_pass_both_oracles() {
    for (_, data) in codec_seeds() {
        codec_oracle::check(&data);
    }
    for (_, body) in message_seeds() {
        message_oracle::check(&body);
    }
}

/// One frame in the writer form of SPEC.md §2.2 (or §2.8 with attachments).
fn frame(block: &Block) -> Vec<u8> {
    let total = block.body.len() + block.attachments.iter().map(Vec::len).sum::<usize>();
    let mut out = format!("Content-Length: {total}\r\n").into_bytes();
    if !block.attachments.is_empty() {
        let lens: Vec<String> = block.attachments.iter().map(|a| a.len().to_string()).collect();
        out.extend_from_slice(format!("Tether-Attachments: {}\r\n", lens.join(",")).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&block.body);
    for a in &block.attachments {
        out.extend_from_slice(a);
    }
    out
}

/// Codec seeds: each transcript's two streams, whole and chunked, with tiny and default limits,
/// and with the faults of SPEC.md §2.6 spliced in (a stray print, a broken header, a bad length,
/// a foreign charset, the LSP header forms, a cut at the end).
fn codec_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for t in load_all() {
        let attachments = t.blocks.iter().any(|b| !b.attachments.is_empty());
        for (dir, arrow) in [(Dir::ToPlugin, "in"), (Dir::ToHost, "out")] {
            let stream: Vec<u8> = t.blocks.iter().filter(|b| b.dir == dir).flat_map(frame).collect();
            let name = format!("{}-{arrow}", t.name);
            seeds.push((format!("{name}-whole"), codec_oracle::join_input(3, attachments, &[], &stream)));
            seeds.push((
                format!("{name}-bytes"),
                codec_oracle::join_input(3, attachments, &[1, 2, 7], &stream),
            ));
            seeds.push((
                format!("{name}-tiny-max"),
                codec_oracle::join_input(1, attachments, &[40, 200], &stream),
            ));
            // Faults spliced between the first frames.
            let cut = stream
                .windows(16)
                .position(|w| w == b"Content-Length: ")
                .and_then(|_| stream[1..].windows(16).position(|w| w == b"Content-Length: ").map(|i| i + 1));
            let (first, rest) = stream.split_at(cut.unwrap_or(stream.len()));
            for (fault, bytes) in [
                ("print", &b"hello from print()\n"[..]),
                ("print-no-newline", b"50%"),
                ("broken-header", b"Content-Length 12\r\n\r\n"),
                ("bad-length", b"Content-Length: -3\r\n\r\n{}"),
                ("two-lengths", b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"),
                ("latin1", b"Content-Type: text/plain; charset=latin1\r\nContent-Length: 2\r\n\r\n{}"),
                (
                    "lsp-form",
                    b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf8\r\n\r\n{}",
                ),
                ("huge-length", b"Content-Length: 18446744073709551615\r\n\r\n{\"id\":1,"),
                ("lf-only", b"Content-Length: 2\n\n{}"),
            ] {
                let spliced = [first, bytes, rest].concat();
                seeds.push((
                    format!("{name}-{fault}"),
                    codec_oracle::join_input(2, attachments, &[9], &spliced),
                ));
            }
            let truncated = &stream[..stream.len().saturating_sub(5)];
            seeds.push((
                format!("{name}-truncated"),
                codec_oracle::join_input(3, attachments, &[64], truncated),
            ));
        }
    }
    seeds
}

/// Envelope seeds: every body of the transcripts and the rows of SPEC.md §3.4's table.
fn message_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for t in load_all() {
        for (i, b) in t.blocks.iter().enumerate() {
            seeds.push((format!("{}-{i:02}", t.name), b.body.clone()));
        }
    }
    for (i, body) in [
        "{nope",
        "[1,2]",
        "[]",
        "42",
        "\"x\"",
        "{\"jsonrpc\":\"2.0\"}",
        r#"{"jsonrpc":"2.0","id":null,"method":"kv.get","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"kv.get"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"kv.get"}"#,
        r#"{"jsonrpc":"2.0","id":{},"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"kv.get","params":[]}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"kv.get","params":null}"#,
        r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":[1]}"#,
        r#"{"jsonrpc":"1.0","method":"x"}"#,
        r#"{"jsonrpc":"2.0","method":7}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{},"error":{"code":1,"message":"m"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":"x","message":"m"}}"#,
        r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"a.b","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"a.b","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a.b","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"a\u0000b","params":{"k":"\ud800"}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a.b\",\"params\":{\"x\":\"\u{e9}\"}}",
    ]
    .iter()
    .enumerate()
    {
        seeds.push((format!("spec-3.4-{i:02}"), body.as_bytes().to_vec()));
    }
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a.b\",\"params\":{{\"x\":{}1{}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    seeds.push(("deep-nesting".into(), deep.into_bytes()));
    seeds.push((
        "not-utf8".into(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\",\"params\":{}}".to_vec(),
    ));
    seeds
}

/// `UPDATE_FUZZ_SEEDS=1`: writes the seeds where `spec/fuzz/run.sh` reads them.
#[test]
fn seeds_are_written_on_request() {
    if std::env::var_os("UPDATE_FUZZ_SEEDS").is_none() {
        return;
    }
    for (target, seeds) in [("codec", codec_seeds()), ("message", message_seeds())] {
        let dir = fuzz_dir().join("seeds").join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
}
