//! The `_meta` member of request params (SPEC.md §14.1, §15): what a caller says about a call
//! besides its params (a progress token, the W3C trace context), and the `traceparent` grammar.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::progress::ProgressToken;

/// The member of `params` that carries [`Meta`]. No method's params may use it for anything
/// else (SPEC.md §14.1).
pub const META: &str = "_meta";

/// `params._meta`: about the call, not part of its params. Each member is sent only to a peer
/// that announced the capability naming it; a receiver ignores members it does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// The caller wants `$/progress` for this request, with this token (SPEC.md §14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_token: Option<ProgressToken>,
    /// The caller's span, as W3C Trace Context `traceparent` (SPEC.md §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"))]
    pub traceparent: Option<String>,
    /// Vendor trace data, as W3C Trace Context `tracestate`; only with `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Meta {
    /// Whether nothing is set (then no `_meta` is written).
    pub fn is_empty(&self) -> bool {
        self.progress_token.is_none() && self.traceparent.is_none() && self.tracestate.is_none()
    }
}

/// The `traceContext` capability: `{}` (SPEC.md §15); members a later revision adds are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceContextCapability {}

/// A parsed W3C `traceparent` (version `00`): the trace, the caller's span, the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id: 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// The id of the caller's span (the parent of the receiver's): 8 bytes, not all zero.
    pub span_id: [u8; 8],
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

/// Why a `traceparent` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent {shown:?}: {reason}")]
pub struct TraceParentError {
    shown: String,
    reason: &'static str,
}

impl TraceParent {
    /// Parses the W3C form `00-<32 hex>-<16 hex>-<2 hex>` (lower-case hex). A later version
    /// (`01` to `fe`) is read by its first four fields, as W3C Trace Context says; `ff`, upper
    /// case, and all-zero ids are refused.
    pub fn parse(text: &str) -> Result<TraceParent, TraceParentError> {
        let fail = |reason| TraceParentError { shown: text.chars().take(64).collect(), reason };
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
            return Err(fail("it has fewer than four fields"));
        };
        let version = hex_array::<1>(version).ok_or_else(|| fail("the version is not two hex digits"))?;
        if version[0] == 0xff {
            return Err(fail("version ff is forbidden"));
        }
        if version[0] == 0 && (!rest.is_empty() || text.len() != 55) {
            return Err(fail("version 00 has exactly four fields"));
        }
        let trace_id = hex_array::<16>(trace).ok_or_else(|| fail("the trace id is not 32 hex digits"))?;
        let span_id = hex_array::<8>(span).ok_or_else(|| fail("the parent id is not 16 hex digits"))?;
        let flags = hex_array::<1>(flags).ok_or_else(|| fail("the flags are not two hex digits"))?;
        if trace_id == [0; 16] {
            return Err(fail("the trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(fail("the parent id is all zeros"));
        }
        Ok(TraceParent { trace_id, span_id, flags: flags[0] })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_example_round_trips() {
        let p = TraceParent::parse(W3C_EXAMPLE);
        assert!(p.is_ok_and(|p| p.to_string() == W3C_EXAMPLE
            && p.trace_id_hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
            && p.span_id_hex() == "00f067aa0ba902b7"
            && p.flags == 1));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // A later version may add fields after the flags.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_ok());
    }

    #[test]
    fn an_empty_meta_writes_nothing() {
        assert!(Meta::default().is_empty());
        let m = Meta { progress_token: Some(crate::Id::Int(1)), ..Meta::default() };
        assert_eq!(serde_json::to_string(&m).unwrap_or_default(), r#"{"progressToken":1}"#);
    }
}
