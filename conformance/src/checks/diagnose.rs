//! Naming the real fault in bytes a plugin wrote on stdout (an extra or misspelt header, a wrong
//! length, LF line ends, bytes that are not a frame), and the one diagnosis of a plugin whose
//! handshake did not complete.

use super::*;

/// What is wrong with bytes that were not a frame in a writer form of §2.2, and what to fix.
pub(crate) fn classify(head: &[u8], previous_body_bad: bool) -> (String, String) {
    const EXACT: &[u8] = b"Content-Length: ";
    const NAME: &[u8] = b"content-length";
    let shown = show_bytes(head, 120);
    let line_end = head.iter().position(|&b| b == b'\n');
    let first_line = &head[..line_end.unwrap_or(head.len())];
    let lf_only = line_end.is_some_and(|i| i == 0 || head[i - 1] != b'\r');
    let starts_like_header =
        first_line.len() >= NAME.len() && first_line[..NAME.len()].eq_ignore_ascii_case(NAME);
    if starts_like_header && !head.starts_with(EXACT) {
        return (
            format!("a misspelt Content-Length header (case or spacing): {shown}"),
            "begin every frame with exactly `Content-Length: ` (that case, one space) (§2.2)".into(),
        );
    }
    if head.starts_with(EXACT) {
        if lf_only {
            return (
                format!("header lines ended with LF instead of CRLF: {shown}"),
                "end every header line with \\r\\n, and the header block with an empty \\r\\n line (§2.2); on Windows \
                 or in text mode, write bytes, not text"
                    .into(),
            );
        }
        // The line after the length: another header.
        let rest = line_end.map_or(&[][..], |i| &head[i + 1..]);
        let next_end = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
        let next = &rest[..next_end];
        if !next.is_empty() {
            let name = next.split(|&b| b == b':').next().unwrap_or(next);
            let name = String::from_utf8_lossy(name);
            if name.eq_ignore_ascii_case(crate::driver::ATTACHMENTS_HEADER) {
                return (
                    format!("an attachment frame before attachments were negotiated: {shown}"),
                    "send attachment frames only once both sides announced `attachments`, from the frame after the \
                     initialize answer on; until then bytes are base64 (§2.8.3)"
                        .into(),
                );
            }
            if name.eq_ignore_ascii_case("content-type") {
                return (
                    format!("a Content-Type line that §2.2 does not allow: {shown}"),
                    "write `Content-Type: application/vscode-jsonrpc; charset=utf-8` exactly (or no Content-Type \
                     at all) right after Content-Length (§2.2)"
                        .into(),
                );
            }
            return (
                format!("an extra header {name:?} after Content-Length: {shown}"),
                "write no header but Content-Length (and at most the Content-Type line of §2.2)".into(),
            );
        }
        return (
            format!("a header block that is not in the writer form: {shown}"),
            "write `Content-Length: N\\r\\n\\r\\n` then exactly N bytes of body (§2.2)".into(),
        );
    }
    if previous_body_bad {
        return (
            format!(
                "a Content-Length that does not match the body (the body read was not JSON, and bytes follow it): {shown}"
            ),
            "count the body's length in bytes of its UTF-8 encoding, not in characters (§2.1)".into(),
        );
    }
    // `Name: value` with a header-like name: a header written before Content-Length.
    let name = first_line.split(|&b| b == b':').next().unwrap_or(first_line);
    let header_like = name.len() < first_line.len()
        && !name.is_empty()
        && name.len() <= 64
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        // ...followed by the length's own line; otherwise it is a printed `Warning: ...`.
        && head.windows(NAME.len() + 1).any(|w| w[0] == b'\n' && w[1..].eq_ignore_ascii_case(NAME));
    if header_like {
        let name = String::from_utf8_lossy(name);
        return (
            format!("a header {name:?} before Content-Length: {shown}"),
            "begin every frame with `Content-Length: ` and put no header before it (§2.2)".into(),
        );
    }
    (
        format!("bytes that are not a frame: {shown}"),
        "never print to stdout: send logs to stderr or $/log, and move fd 1 to stderr at start (§8.4)".into(),
    )
}

/// The one diagnosis of a plugin whose handshake did not complete: what happened, what it wrote,
/// how long the judge waited, and what to fix first.
pub(crate) async fn handshake(s: &mut Session, e: RecvError, waited: Duration) -> Failure {
    // A plugin that closed its stdout has usually exited: give it a moment to be reaped.
    let status = match &e {
        RecvError::Closed => s.wait_exit(Duration::from_secs(1)).await,
        _ => s.try_status(),
    };
    if !matches!(e, RecvError::Closed) {
        s.give_up();
    }
    let head = s.stdout_head();
    let exit = status.map(|st| {
        use std::os::unix::process::ExitStatusExt as _;
        match (st.code(), st.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended ({st})"),
        }
    });
    let shown = if head.is_empty() { "nothing".to_owned() } else { show_bytes(&head, 200) };
    let waited_ms = waited.as_millis();
    let (what, fix) = match &e {
        RecvError::NotAFrame(_) => {
            let (fault, fix) = classify(&head, false);
            (format!("it answered with {fault}"), fix)
        }
        RecvError::Closed => match &exit {
            Some(how) => (
                format!("it {how} before answering tether/initialize"),
                "run the plugin by hand with the cookie set and read its stderr: it must keep reading stdin \
                 and answer tether/initialize (§4.1); check the --plugin command line"
                    .to_owned(),
            ),
            None => (
                "it closed its stdout before answering tether/initialize".to_owned(),
                "keep stdout open for frames; move fd 1 to stderr only after keeping a copy for frames (§8.4)"
                    .to_owned(),
            ),
        },
        RecvError::Timeout if head.is_empty() => (
            format!("it stayed silent: nothing on stdout for {waited_ms} ms"),
            "read frames from stdin and answer tether/initialize (§4.1); a plugin that waits for a line \
             (not a Content-Length frame) or writes to a buffered stdout without flushing stays silent"
                .to_owned(),
        ),
        RecvError::Timeout => (
            format!("it wrote {} bytes in {waited_ms} ms but no complete frame", s.stdout_bytes()),
            "write `Content-Length: N\\r\\n\\r\\n` and exactly N bytes of body, and flush (§2.2)".to_owned(),
        ),
    };
    Failure::new(format!("the handshake did not complete: {what}"))
        .expected("the answer to tether/initialize, as a frame (§2.2, §4.1)")
        .got(format!(
            "{}; first stdout bytes: {shown}; waited {waited_ms} ms",
            exit.unwrap_or_else(|| "still running".to_owned())
        ))
        .fix(format!("{fix}. Every other check needs the handshake, so none was run."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_real_fault() {
        let cases: &[(&[u8], bool, &str)] = &[
            (b"content-length: 2\r\n\r\n{}", false, "misspelt"),
            (b"Content-Length:2\r\n\r\n{}", false, "misspelt"),
            (b"Content-Length: 2\n\n{}", false, "LF instead of CRLF"),
            (b"Content-Length: 2\r\nX-Extra: 1\r\n\r\n{}", false, "extra header \"X-Extra\""),
            (
                b"Content-Length: 3\r\nTether-Attachments: 1\r\n\r\n{}x",
                false,
                "before attachments were negotiated",
            ),
            (b"Content-Length: 2\r\nContent-Type: text/plain\r\n\r\n{}", false, "Content-Type line"),
            (
                b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                false,
                "before Content-Length",
            ),
            (b"}Content-Length: 2\r\n\r\n{}", true, "does not match the body"),
            (b"hello world\n", false, "not a frame"),
            (b"Warning: low disk\n", false, "not a frame"),
        ];
        for (bytes, bad, want) in cases {
            let (fault, fix) = classify(bytes, *bad);
            assert!(fault.contains(want), "{fault:?} should name {want:?}");
            assert!(!fix.is_empty());
        }
    }
}
