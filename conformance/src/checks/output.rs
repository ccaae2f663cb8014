//! Output: the checks that judge what every scenario observed on stdout (§2.2, §3.1, §8.4).

use super::*;

fn agg_stdout(all: &[Observations]) -> Verdict {
    aggregate(
        all,
        |o| &o.stdout_violations,
        "bytes on stdout that are not a frame in the writer form",
        "only `Content-Length: N\\r\\n\\r\\n<body>` frames on stdout",
        "never print to stdout: send logs to stderr or $/log, move fd 1 to stderr at start (§8.4)",
    )
}

fn agg_messages(all: &[Observations]) -> Verdict {
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
            kind: Kind::Aggregate(agg_stdout),
        },
        Check {
            id: "output.messages-valid",
            section: "§3.1",
            title: "every body is a valid JSON-RPC message with object params/results",
            needs: Needs::Any,
            kind: Kind::Aggregate(agg_messages),
        },
    ]
}
