//! How `tether call` shows the `$/progress` a plugin reports for a call (SPEC.md §14): a live
//! bar on a terminal (`indicatif`), or one line per report on stderr, which scripts and tests
//! read.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use tether_host::spec::ProgressParams;
use tokio::sync::{oneshot, watch};

/// `--progress`: how to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise (resolved before use).
    Auto,
    /// A live bar on stderr (hidden by indicatif when stderr is not a terminal).
    Bar,
    /// One line per report on stderr: `progress: DONE/TOTAL MESSAGE`.
    Lines,
    /// Do not ask the plugin for progress.
    Off,
}

impl ProgressMode {
    /// The mode in effect: `auto` decided by whether stderr is a terminal.
    pub(crate) fn resolved(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Off,
            other => other,
        }
    }
}

/// One report as a line: `progress: 16384/1048581 bytes stored`.
pub(crate) fn line(p: &ProgressParams) -> String {
    let mut text = String::from("progress:");
    match (p.done, p.total) {
        (Some(done), Some(total)) => text.push_str(&format!(" {done}/{total}")),
        (Some(done), None) => text.push_str(&format!(" {done}")),
        _ => {}
    }
    if let Some(message) = &p.message {
        text.push(' ');
        text.push_str(message);
    }
    text
}

/// Shows the latest report of `rx` as a live bar until `done` fires or the sender is dropped
/// (the call ended), then clears the bar.
pub(crate) async fn show_bar(
    mut rx: watch::Receiver<Option<ProgressParams>>,
    mut done: oneshot::Receiver<()>,
) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let ended = tokio::select! {
            changed = rx.changed() => changed.is_err(),
            _ = &mut done => true,
        };
        if let Some(p) = rx.borrow_and_update().clone() {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            if let Some(done) = p.done {
                bar.set_position(done);
            }
            if let Some(message) = p.message {
                bar.set_message(message);
            }
        }
        if ended {
            break;
        }
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_one_line() {
        let p: ProgressParams =
            serde_json::from_str(r#"{"token":1,"done":16384,"total":20000,"message":"stored"}"#)
                .expect("progress params");
        assert_eq!(line(&p), "progress: 16384/20000 stored");
        let p: ProgressParams = serde_json::from_str(r#"{"token":1,"message":"scanning"}"#).expect("params");
        assert_eq!(line(&p), "progress: scanning");
    }
}
