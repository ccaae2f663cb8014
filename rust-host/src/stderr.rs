//! The plugin's stderr (SPEC.md §8.3): forwarded line by line to `tracing`, with the plugin's
//! name, and its last lines kept in a bounded ring to explain a crash.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logs;

/// How many lines of stderr are kept to explain a crash.
pub const STDERR_TAIL_LINES: usize = 20;
/// How many bytes of stderr are kept, at most, to explain a crash.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// A longer stderr line is cut into pieces of this size (memory stays bounded without a newline).
const LINE_MAX: usize = 16 * 1024;

/// The last lines of stderr: at most [`STDERR_TAIL_LINES`] lines and [`STDERR_TAIL_BYTES`] bytes.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub(crate) fn push(&mut self, line: &str) {
        let line = shorten(line, STDERR_TAIL_BYTES / 4);
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > STDERR_TAIL_LINES || self.bytes > STDERR_TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    pub(crate) fn retained_bytes(&self) -> usize {
        self.bytes
    }
}

/// Cuts `line` to at most `max` bytes (on a character boundary), marking the cut.
fn shorten(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_owned();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &line[..end], line.len())
}

/// The tail shared by the reader and the plugin handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedTail(Arc<Mutex<Tail>>);

impl SharedTail {
    pub(crate) fn push(&self, line: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(line);
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).lines()
    }
    pub(crate) fn retained_bytes(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retained_bytes()
    }
}

/// Reads stderr to its end: every line becomes a `tracing` event and enters the tail.
pub(crate) async fn forward(stderr: impl AsyncRead + Unpin, tail: SharedTail, plugin: Arc<str>) {
    let mut reader = BufReader::with_capacity(8 * 1024, stderr);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let (consumed, complete) = match reader.fill_buf().await {
            Err(_) => break,
            Ok([]) => break,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) if line.len() + i <= LINE_MAX => {
                    line.extend_from_slice(&buf[..i]);
                    (i + 1, true)
                }
                _ => {
                    let take = buf.len().min(LINE_MAX - line.len());
                    line.extend_from_slice(&buf[..take]);
                    (take, line.len() >= LINE_MAX)
                }
            },
        };
        reader.consume(consumed);
        if complete {
            emit(&line, &tail, &plugin);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&line, &tail, &plugin);
    }
}

fn emit(line: &[u8], tail: &SharedTail, plugin: &str) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    logs::stderr_line(plugin, text);
    tail.push(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded_in_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..100 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(tail.lines().len(), STDERR_TAIL_LINES);
        assert_eq!(tail.lines().last().map(String::as_str), Some("line 99"));
        for _ in 0..100 {
            tail.push(&"y".repeat(100_000));
        }
        assert!(tail.retained_bytes() <= STDERR_TAIL_BYTES);
        assert!(!tail.lines().is_empty());
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_last_line_is_kept() {
        let tail = SharedTail::default();
        let mut input = vec![b'z'; LINE_MAX * 2 + 10];
        input.extend_from_slice(b"\nshort\nno newline at the end");
        forward(&input[..], tail.clone(), Arc::from("p")).await;
        let lines = tail.lines();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[3], "short");
        assert_eq!(lines[4], "no newline at the end");
    }
}
