//! Where the trace goes (stderr or a file) and how a line looks: text for a person, or one JSON
//! object per line (`--json`, shape in `rust-host/cli/README.md`).

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;

use crate::clock::now_utc;

/// One logged frame (or event of a direction).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// When the proxy relayed it, UTC.
    pub(crate) ts: String,
    /// `host->plugin` or `plugin->host`.
    pub(crate) dir: &'static str,
    /// `request`, `response`, `notification`; `invalid` (a frame whose body is not a message),
    /// `garbage` (bytes that are not a frame), `oversized`, `truncated`; `end` (end of input).
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<Value>,
    /// The frame's size on the wire, header and attachments included.
    pub(crate) bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) attachments: usize,
    /// For a response: milliseconds since its request went the other way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rtt_ms: Option<f64>,
    /// For an error response: its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Record {
    pub(crate) fn new(dir: &'static str, kind: &'static str, note: Option<String>) -> Self {
        Record {
            ts: now_utc(),
            dir,
            kind,
            method: None,
            id: None,
            bytes: 0,
            attachments: 0,
            rtt_ms: None,
            error: None,
            note,
        }
    }

    fn text(&self) -> String {
        let mut line = format!("{} {} {:<12}", self.ts, self.dir, self.kind);
        if let Some(method) = &self.method {
            line.push_str(&format!(" {method}"));
        }
        if let Some(id) = &self.id {
            line.push_str(&format!(" id={id}"));
        }
        if self.kind != "end" {
            line.push_str(&format!(" {}B", self.bytes));
        }
        if self.attachments > 0 {
            line.push_str(&format!(" attachments={}", self.attachments));
        }
        if let Some(rtt) = self.rtt_ms {
            line.push_str(&format!(" rtt={rtt:.3}ms"));
        }
        if let Some(code) = self.error {
            line.push_str(&format!(" error={code}"));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" ({note})"));
        }
        line
    }
}

/// The trace's destination; lines from both directions, whole, one at a time.
pub(crate) struct TraceLog {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
}

impl TraceLog {
    pub(crate) fn open(path: Option<&Path>, json: bool) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(LineWriter::new(OpenOptions::new().create(true).append(true).open(path)?)),
            None => Box::new(std::io::stderr()),
        };
        Ok(TraceLog { out: Mutex::new(out), json })
    }

    /// Writes one line; a failing destination loses the trace, never the relay.
    pub(crate) fn write(&self, record: &Record) {
        let line = match self.json {
            true => serde_json::to_string(record).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
            false => record.text(),
        };
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "{line}");
    }

    pub(crate) fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(PoisonError::into_inner).flush();
    }
}
