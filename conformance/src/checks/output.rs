//! Output: the checks that judge what every scenario observed on stdout (§2.2, §3.1, §8.4).

use super::*;

fn agg_stdout(all: &[Observations]) -> Verdict {
    if let Some(v) = no_frames(all) {
        return v;
    }
    // The fix names the fault of the first violation (a header, a length, line ends, a print).
    let fix = all.iter().flat_map(|o| &o.stdout_fixes).next().cloned().unwrap_or_default();
    aggregate(
        all,
        |o| &o.stdout_violations,
        "bytes on stdout that are not a frame in a writer form",
        "only `Content-Length: N\\r\\n\\r\\n<body>` frames (or with the one Content-Type line of §2.2) on stdout",
        &fix,
    )
}

/// A check over every frame the plugin wrote passes only when it saw some.
fn no_frames(all: &[Observations]) -> Option<Verdict> {
    let frames: usize = all.iter().map(|o| o.frames).sum();
    let violations = all.iter().any(|o| !o.stdout_violations.is_empty() || !o.bad_messages.is_empty());
    (frames == 0 && !violations)
        .then(|| Verdict::Skip("the plugin wrote no frame in any scenario".to_owned()))
}

fn agg_messages(all: &[Observations]) -> Verdict {
    if let Some(v) = no_frames(all) {
        return v;
    }
    aggregate(
        all,
        |o| &o.bad_messages,
        "bodies that are not valid JSON-RPC messages",
        "every body one JSON-RPC 2.0 object, with object params and results",
        "write {\"jsonrpc\":\"2.0\", ...} objects as §3.1 describes",
    )
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "output.stdout-clean",
            section: "§8.4 §2.2 §2.7",
            title: "nothing but frames in the writer form on stdout, in any scenario",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: Kind::Aggregate(agg_stdout),
        },
        Check {
            id: "output.messages-valid",
            section: "§3.1",
            title: "every body is a valid JSON-RPC message with object params/results",
            needs: Needs::Any,
            tier: Tier::Core,
            kind: Kind::Aggregate(agg_messages),
        },
    ]
}
