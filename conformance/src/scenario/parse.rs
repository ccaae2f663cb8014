//! The scenario file format (`spec/transcripts/README.md`, "Scenarios"): the blocks of a
//! transcript (a `-->` or `<--` line, then one frame), where a frame may also be written as one
//! line of JSON without its header, expected lines may hold matchers, and `@` lines set time
//! limits and mark unordered groups. Every error names the file and line.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::Value;
use tether_spec::{Frame, FrameCodec};
use tokio_util::codec::Decoder;

use super::matcher;

/// One line the plugin is expected to send.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The 1-based line of its JSON in the file.
    pub(crate) line: usize,
    /// The JSON as written, for reports.
    pub(crate) text: String,
    /// The pattern (a JSON value with matchers).
    pub(crate) pattern: Value,
}

/// What a host line sends.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// JSON without placeholders: the bytes as written.
    Verbatim(Vec<u8>),
    /// JSON with `${name}` placeholders: re-serialized after substitution.
    Template(Value),
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A host line: written to the plugin.
    Send {
        /// The 1-based line of its JSON in the file.
        line: usize,
        /// What to write.
        body: Body,
    },
    /// Expected plugin lines: one, or an unordered group, met within the time limit.
    Expect {
        /// The lines; more than one only in an `@unordered` group, matched in any order.
        lines: Vec<Expect>,
        /// `@within` before it, if any.
        within: Option<Duration>,
    },
}

/// A parsed scenario.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// The file's path as given (for reports: `dir/name.tether:line`).
    pub(crate) path: String,
    /// The file's stem: the check is `scenario.<stem>`.
    pub(crate) stem: String,
    /// The steps in order.
    pub(crate) steps: Vec<Step>,
    /// `@deadline`: the time the whole scenario may take, if set.
    pub(crate) deadline: Option<Duration>,
}

/// Parses a duration written `500ms`, `2s` or `1.5s`.
pub(crate) fn duration(text: &str) -> Option<Duration> {
    let (number, scale) =
        if let Some(n) = text.strip_suffix("ms") { (n, 0.001) } else { (text.strip_suffix('s')?, 1.0) };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value > 0.0 && value <= 3600.0).then(|| Duration::from_secs_f64(value * scale))
}

/// Parses a scenario file.
pub(crate) fn parse(path: &str, stem: &str, bytes: &[u8]) -> Result<Scenario, String> {
    let fail = |line: usize, what: &str| Err(format!("{path}:{line}: {what}"));
    let mut steps: Vec<Step> = Vec::new();
    let mut deadline = None;
    let mut within: Option<(usize, Duration)> = None;
    // The open `@unordered` group: its line and the lines gathered so far.
    let mut group: Option<(usize, Vec<Expect>)> = None;
    let (mut pos, mut line) = (0usize, 1usize);
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let Ok(text) = std::str::from_utf8(&rest[..end]) else {
            return fail(line, "a line that is not UTF-8");
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        let next = (pos + end + 1, line + 1);
        if text.starts_with('#') || text.trim().is_empty() {
            (pos, line) = next;
            continue;
        }
        if let Some(directive) = text.strip_prefix('@') {
            let mut words = directive.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("within"), Some(d), None) => {
                    let Some(d) = duration(d) else {
                        return fail(
                            line,
                            &format!("`@within {d}`: a duration is written 500ms, 2s or 1.5s"),
                        );
                    };
                    if group.is_some() {
                        return fail(line, "`@within` goes before `@unordered`, not inside the group");
                    }
                    within = Some((line, d));
                }
                (Some("deadline"), Some(d), None) => {
                    let Some(d) = duration(d) else {
                        return fail(
                            line,
                            &format!("`@deadline {d}`: a duration is written 500ms, 2s or 1.5s"),
                        );
                    };
                    if deadline.replace(d).is_some() {
                        return fail(line, "a second `@deadline`");
                    }
                }
                (Some("unordered"), None, None) => {
                    if group.is_some() {
                        return fail(line, "`@unordered` inside an unordered group (groups do not nest)");
                    }
                    group = Some((line, Vec::new()));
                }
                (Some("end"), None, None) => {
                    let Some((start, lines)) = group.take() else {
                        return fail(line, "`@end` without `@unordered`");
                    };
                    if lines.len() < 2 {
                        return fail(start, "an unordered group needs at least two `<--` lines");
                    }
                    steps.push(Step::Expect { lines, within: within.take().map(|w| w.1) });
                }
                _ => {
                    return fail(
                        line,
                        &format!(
                            "unknown directive `{text}` (known: @within D, @deadline D, @unordered, @end)"
                        ),
                    )
                }
            }
            (pos, line) = next;
            continue;
        }
        let to_plugin = match text {
            "-->" => true,
            "<--" => false,
            _ => return fail(line, "expected a comment (#), a directive (@), `-->` or `<--`"),
        };
        (pos, line) = next;
        let (body, body_line) = frame(bytes, &mut pos, &mut line).map_err(|e| format!("{path}:{e}"))?;
        if to_plugin {
            if group.is_some() {
                return fail(body_line, "a `-->` line inside an unordered group (only `<--` lines go there)");
            }
            if within.is_some() {
                return fail(body_line, "`@within` must be followed by `<--` or `@unordered`");
            }
            let body = match serde_json::from_slice::<Value>(&body) {
                Ok(value) => {
                    if let Some(at) = matcher::find_matcher(&value, "") {
                        return fail(
                            body_line,
                            &format!("a matcher at {at:?} in a host line (matchers go in `<--` lines)"),
                        );
                    }
                    let (mut caps, mut refs) = (Vec::new(), Vec::new());
                    let _ = matcher::check_pattern(&value, &mut caps, &mut refs);
                    if refs.is_empty() {
                        Body::Verbatim(body)
                    } else {
                        Body::Template(value)
                    }
                }
                // A host line may be wrong on purpose (a body that is not JSON): sent as it is.
                Err(_) => Body::Verbatim(body),
            };
            steps.push(Step::Send { line: body_line, body });
        } else {
            let pattern: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("{path}:{body_line}: an expected line must be JSON: {e}"))?;
            let text = String::from_utf8_lossy(&body).into_owned();
            let expect = Expect { line: body_line, text, pattern };
            match &mut group {
                Some((_, lines)) => lines.push(expect),
                None => steps.push(Step::Expect { lines: vec![expect], within: within.take().map(|w| w.1) }),
            }
        }
    }
    if let Some((start, _)) = group {
        return fail(start, "`@unordered` without `@end`");
    }
    if let Some((l, _)) = within {
        return fail(l, "`@within` at the end of the file, with no expectation after it");
    }
    check_captures(path, &steps)?;
    Ok(Scenario { path: path.to_owned(), stem: stem.to_owned(), steps, deadline })
}

/// Reads one frame after a direction line: the writer form with its header, or one JSON line.
/// Returns the body and the line its JSON starts on.
fn frame(bytes: &[u8], pos: &mut usize, line: &mut usize) -> Result<(Vec<u8>, usize), String> {
    let rest = &bytes[*pos..];
    if rest.is_empty() {
        return Err(format!("{line}: the file ends after a direction line"));
    }
    if rest.starts_with(b"Content-Length:") {
        let mut buf = BytesMut::from(rest);
        let before = buf.len();
        let body = match FrameCodec::builder().strict().build().decode(&mut buf) {
            Ok(Some(Frame::Message(body))) => body,
            Ok(Some(other)) => return Err(format!("{line}: not a plain frame: {other:?}")),
            Ok(None) => return Err(format!("{line}: the file ends inside a frame")),
            Err(e) => return Err(format!("{line}: {e}")),
        };
        let consumed = before - buf.len();
        let header_lines = rest[..consumed - body.len()].iter().filter(|&&b| b == b'\n').count();
        let body_line = *line + header_lines;
        *line += rest[..consumed].iter().filter(|&&b| b == b'\n').count();
        *pos += consumed;
        match bytes.get(*pos) {
            Some(b'\n') => {
                *pos += 1;
                *line += 1;
            }
            None => {}
            Some(_) => {
                return Err(format!("{line}: a frame must be followed by \\n (wrong Content-Length?)"))
            }
        }
        return Ok((body.to_vec(), body_line));
    }
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let mut body = &rest[..end];
    if body.last() == Some(&b'\r') {
        body = &body[..body.len() - 1];
    }
    let body_line = *line;
    *pos += end + 1;
    *line += 1;
    Ok((body.to_vec(), body_line))
}

/// Every `${name}` refers to a value captured on an earlier line; every matcher is well formed.
fn check_captures(path: &str, steps: &[Step]) -> Result<(), String> {
    let mut known: BTreeSet<String> = BTreeSet::new();
    let missing = |line: usize, name: &str| {
        Err(format!("{path}:{line}: \"${{{name}}}\" refers to no value captured on an earlier line"))
    };
    for step in steps {
        match step {
            Step::Send { line, body: Body::Template(value) } => {
                let (mut caps, mut refs) = (Vec::new(), Vec::new());
                let _ = matcher::check_pattern(value, &mut caps, &mut refs);
                if let Some(name) = refs.iter().find(|n| !known.contains(*n)) {
                    return missing(*line, name);
                }
            }
            Step::Send { .. } => {}
            Step::Expect { lines, .. } => {
                let mut captured = Vec::new();
                for e in lines {
                    let mut refs = Vec::new();
                    matcher::check_pattern(&e.pattern, &mut captured, &mut refs)
                        .map_err(|why| format!("{path}:{}: {why}", e.line))?;
                    if let Some(name) = refs.iter().find(|n| !known.contains(*n)) {
                        return missing(e.line, name);
                    }
                }
                known.extend(captured);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Scenario, String> {
        parse("s.tether", "s", text.as_bytes())
    }

    #[test]
    fn both_frame_forms_directives_and_groups_parse_with_their_lines() {
        let text = "# a comment\n@deadline 20s\n-->\n{\"id\":1}\n\n<--\nContent-Length: 8\r\n\r\n{\"id\":1}\n@within 500ms\n@unordered\n<--\n{\"id\":2}\n<--\n{\"id\":{\"$capture\":\"x\"}}\n@end\n-->\n{\"id\":\"${x}\"}\n";
        let s = parsed(text).unwrap();
        assert_eq!(s.deadline, Some(Duration::from_secs(20)));
        assert_eq!(s.steps.len(), 4);
        let Step::Send { line: 4, body: Body::Verbatim(b) } = &s.steps[0] else { panic!("{:?}", s.steps[0]) };
        assert_eq!(b, b"{\"id\":1}");
        let Step::Expect { lines, within: None } = &s.steps[1] else { panic!("{:?}", s.steps[1]) };
        assert_eq!((lines[0].line, lines[0].text.as_str()), (9, "{\"id\":1}"));
        let Step::Expect { lines, within } = &s.steps[2] else { panic!("{:?}", s.steps[2]) };
        assert_eq!((lines.len(), lines[1].line, *within), (2, 15, Some(Duration::from_millis(500))));
        assert!(matches!(&s.steps[3], Step::Send { line: 18, body: Body::Template(_) }));
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let err = |t: &str| parsed(t).err().unwrap_or_default();
        assert_eq!(
            err("-->\n{}\n<--\n{\"a\":\"${y}\"}\n"),
            "s.tether:4: \"${y}\" refers to no value captured on an earlier line"
        );
        assert_eq!(
            err("<--\n{\"$any\":\"int\"}\n").split(':').take(2).collect::<Vec<_>>(),
            ["s.tether", "2"]
        );
        assert_eq!(err("@unordered\n<--\n{}\n"), "s.tether:1: `@unordered` without `@end`");
        assert_eq!(
            err("@unordered\n<--\n{}\n@end\n"),
            "s.tether:1: an unordered group needs at least two `<--` lines"
        );
        assert_eq!(
            err("-->\n{\"p\":{\"$any\":true}}\n"),
            "s.tether:2: a matcher at \"/p\" in a host line (matchers go in `<--` lines)"
        );
        assert_eq!(
            err("@within 2 s\n"),
            "s.tether:1: unknown directive `@within 2 s` (known: @within D, @deadline D, @unordered, @end)"
        );
        assert_eq!(err("@within 2x\n"), "s.tether:1: `@within 2x`: a duration is written 500ms, 2s or 1.5s");
        assert_eq!(err("hello\n"), "s.tether:1: expected a comment (#), a directive (@), `-->` or `<--`");
        assert_eq!(err("<--\nnot json\n").split(": ").nth(1), Some("an expected line must be JSON"));
    }

    #[test]
    fn the_committed_transcripts_parse_as_scenarios() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/transcripts");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "tether") {
                let bytes = std::fs::read(&path).unwrap();
                let name = path.display().to_string();
                // Attachment frames are the one transcript feature scenarios leave out.
                if name.ends_with("attachments.tether") {
                    assert!(parse(&name, "a", &bytes).is_err());
                } else {
                    parse(&name, "t", &bytes).unwrap();
                    n += 1;
                }
            }
        }
        assert_eq!(n, 10);
    }
}
