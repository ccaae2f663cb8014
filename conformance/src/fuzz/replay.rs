//! The replay file: a failing input as the fuzzer found and minimized it, which
//! `tether-conformance --plugin CMD --replay FILE` sends again to a fresh plugin.
//!
//! It is JSON (see `conformance/README.md`, "Fuzzing"): the session's setup, the failure seen,
//! and the frames in order, each as the exact bytes in base64 and as escaped text to read. When an
//! author edits a frame, they may drop its `base64` and write `text`, which is then sent as UTF-8.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::mutate::{Expect, Item};

/// The value of `format`, which names this layout.
pub(crate) const FORMAT: &str = "tether-fuzz-replay/1";

/// A replay file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplayFile {
    /// Always [`FORMAT`].
    pub(crate) format: String,
    /// The command line the failure was seen with.
    pub(crate) plugin: String,
    /// The `--seed` of the run that found it.
    pub(crate) seed: u64,
    /// The kind of failure (`exited`, `silent`, `not-a-frame`, `bad-message`, `wrong-answer`).
    pub(crate) fault: String,
    /// What the judge saw.
    pub(crate) detail: String,
    /// The `maxFrameSize` the judge announced.
    pub(crate) max_frame_size: usize,
    /// The interfaces and versions the judge offered.
    pub(crate) interfaces: Vec<(String, Vec<u32>)>,
    /// The frames, in order, written as they are after `tether/initialize`.
    pub(crate) frames: Vec<ReplayFrame>,
}

/// One input of a replay file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplayFrame {
    /// What made it (the mutator's name).
    pub(crate) kind: String,
    /// The exact bytes, in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base64: Option<String>,
    /// The bytes as text (invalid UTF-8 replaced): to read, or, without `base64`, to send.
    pub(crate) text: String,
    /// The tracked answer's id and what it must be: `error <code>`, `result` or `no answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expect: Option<(String, String)>,
}

impl ReplayFrame {
    /// The frame of an item.
    pub(crate) fn of(item: &Item) -> ReplayFrame {
        ReplayFrame {
            kind: item.kind.to_owned(),
            base64: Some(STANDARD.encode(&item.wire)),
            text: String::from_utf8_lossy(&item.wire).into_owned(),
            expect: item.expect.as_ref().map(|(id, e)| {
                let e = match e {
                    Expect::Error(code) => format!("error {code}"),
                    Expect::Result => "result".to_owned(),
                    Expect::NoAnswer => "no answer".to_owned(),
                };
                (id.clone(), e)
            }),
        }
    }

    /// The item again; an error names what is wrong with the entry.
    pub(crate) fn item(&self) -> Result<Item, String> {
        let wire = match &self.base64 {
            Some(b) => STANDARD.decode(b).map_err(|e| format!("a frame's base64 does not decode: {e}"))?,
            None => self.text.clone().into_bytes(),
        };
        let expect = match &self.expect {
            None => None,
            Some((id, e)) => {
                let e = match e.as_str() {
                    "result" => Expect::Result,
                    "no answer" => Expect::NoAnswer,
                    other => match other.strip_prefix("error ").and_then(|c| c.parse().ok()) {
                        Some(code) => Expect::Error(code),
                        None => {
                            return Err(format!(
                                "unknown expectation {other:?} (`error <code>`, `result` or `no answer`)"
                            ))
                        }
                    },
                };
                Some((id.clone(), e))
            }
        };
        Ok(Item { wire, kind: "replayed", expect })
    }
}

impl ReplayFile {
    /// Reads and checks a replay file.
    pub(crate) fn read(path: &Path) -> Result<ReplayFile, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: ReplayFile = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a replay file: {e}", path.display()))?;
        if file.format != FORMAT {
            return Err(format!("{}: format {:?}, expected {FORMAT:?}", path.display(), file.format));
        }
        Ok(file)
    }

    /// Writes the file; its path.
    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_text_alone_is_sent_as_utf8() {
        let item = Item {
            wire: b"Content-Length: 2\r\n\r\n\xff}".to_vec(),
            kind: "bit-flip",
            expect: Some(("fz-1".into(), Expect::Error(-32601))),
        };
        let back = ReplayFrame::of(&item).item();
        assert!(back.as_ref().is_ok_and(|b| b.wire == item.wire && b.expect == item.expect), "{back:?}");
        let edited = ReplayFrame {
            kind: "x".into(),
            base64: None,
            text: "Content-Length: 2\r\n\r\n{}".into(),
            expect: None,
        };
        assert!(edited.item().is_ok_and(|i| i.wire == b"Content-Length: 2\r\n\r\n{}"));
        let bad = ReplayFrame { expect: Some(("a".into(), "maybe".into())), ..edited };
        assert!(bad.item().is_err());
    }
}
