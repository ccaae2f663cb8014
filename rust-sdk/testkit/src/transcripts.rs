//! The transcripts of `spec/transcripts/`, replayed against a real plugin process with the
//! replay algorithm of `spec/transcripts/README.md`.
//!
//! The parser and the replayer are the spec crate's own test support, included here by path
//! rather than copied, so both suites follow one algorithm.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::spawn::ProcessPlugin;

#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
#[path = "../../../spec/tests/support/plugin.rs"]
mod plugin;
#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
#[path = "../../../spec/tests/support/replay.rs"]
mod replay;
#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
#[path = "../../../spec/tests/support/transcript.rs"]
mod transcript;

pub use self::transcript::{Dir, Transcript};

/// The directory of the committed transcripts.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/transcripts")
}

/// Every committed transcript, parsed, in name order; an unreadable or malformed file is an
/// error naming it.
pub fn load_all() -> Result<Vec<Transcript>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .map_err(|e| format!("{}: {e}", dir().display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tether"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let bytes = std::fs::read(dir().join(n)).map_err(|e| format!("{n}: {e}"))?;
            transcript::parse(n, &bytes)
        })
        .collect()
}

/// Replays `t` against a spawned plugin process.
///
/// The replayer feeds one frame at a time and expects back what the plugin wrote in answer;
/// a process gives no such boundary, so after each `-->` frame this reads exactly as many
/// frames as the transcript's `<--` group that follows it holds (waiting up to 20 s for each),
/// and anything more shows up in a later group or at the end of stdin, where it fails the
/// replay. The plugin must exit with status 0 at the end of stdin (SPEC.md §1.6).
pub fn replay(t: &Transcript, plugin: ProcessPlugin) -> Result<(), String> {
    let mut counts = VecDeque::new();
    for (i, block) in t.blocks.iter().enumerate() {
        if block.dir == Dir::ToPlugin {
            let answers = t.blocks[i + 1..].iter().take_while(|b| b.dir == Dir::ToHost).count();
            counts.push_back(answers);
        }
    }
    let mut driver = Driver { plugin, counts, exit: None };
    replay::replay(t, &mut driver)?;
    match driver.exit {
        Some(Some(0)) => Ok(()),
        Some(code) => Err(format!("{}: the plugin exited with {code:?} at the end of stdin, not 0", t.name)),
        None => Err(format!("{}: the replay never closed stdin", t.name)),
    }
}

struct Driver {
    plugin: ProcessPlugin,
    counts: VecDeque<usize>,
    exit: Option<Option<i32>>,
}

impl replay::Plugin for Driver {
    fn feed(&mut self, body: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Err(e) = self.plugin.send(body) {
            panic!("{e}");
        }
        for _ in 0..self.counts.pop_front().unwrap_or(0) {
            match self.plugin.recv() {
                Ok(Some(frame)) => out.push(frame),
                // Fewer frames than expected: the replayer reports the group that is short.
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    fn feed_frame(&mut self, frame: &transcript::WireFrame) -> Vec<transcript::WireFrame> {
        let mut out = Vec::new();
        if let Err(e) = self.plugin.send_frame(&frame.body, &frame.attachments) {
            panic!("{e}");
        }
        for _ in 0..self.counts.pop_front().unwrap_or(0) {
            match self.plugin.recv_frame() {
                Ok(Some((body, attachments))) => out.push(transcript::WireFrame { body, attachments }),
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    fn eof(&mut self) -> Vec<Vec<u8>> {
        match self.plugin.finish() {
            Ok((rest, code)) => {
                self.exit = Some(code);
                rest
            }
            Err(e) => panic!("{e}"),
        }
    }
}
