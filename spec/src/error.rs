//! Error objects and every error code of SPEC.md Appendix A.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The error codes of SPEC.md Appendix A.
pub mod codes {
    /// The body is not valid JSON (§3.4).
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid message, a batch, a second initialize, or a null id (§3.3, §3.4, §4.1).
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method, interface not negotiated, or method not in the negotiated version (§4.3).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Params do not match the method's schema, or bytes are not valid base64 (§5.2, §5.3).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The handler failed unexpectedly (Appendix A).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// No common core or interface version (§4.3).
    pub const UNSUPPORTED_VERSION: i64 = -32001;
    /// A request before `tether/initialize` (§4.1).
    pub const NOT_INITIALIZED: i64 = -32002;
    /// An invoke or retain on an unknown or expired handle (§6).
    pub const UNKNOWN_HANDLE: i64 = -32003;
    /// A request frame above the maximum frame size (§2.6).
    pub const FRAME_TOO_LARGE: i64 = -32004;
    /// A request after `tether/shutdown` (§4.6).
    pub const SHUTTING_DOWN: i64 = -32005;
    /// A stream was aborted, broke the credit rules, or was written wrongly (§12).
    pub const STREAM_ERROR: i64 = -32006;
    /// The request was cancelled (§7).
    pub const REQUEST_CANCELLED: i64 = -32800;
    /// `kv.get` of a missing key (§9.1).
    pub const KEY_NOT_FOUND: i64 = 1001;
    /// `blob.download` of a missing name (§9.5).
    pub const BLOB_NOT_FOUND: i64 = 1002;

    /// Whether `code` lies in the range JSON-RPC reserves for the protocol (-32768 to -32000),
    /// which application interfaces must not use (§5.5).
    pub fn is_reserved(code: i64) -> bool {
        (-32768..=-32000).contains(&code)
    }

    /// The name of a code defined by SPEC.md, for messages and reports.
    pub fn name(code: i64) -> Option<&'static str> {
        Some(match code {
            PARSE_ERROR => "parse error",
            INVALID_REQUEST => "invalid request",
            METHOD_NOT_FOUND => "method not found",
            INVALID_PARAMS => "invalid params",
            INTERNAL_ERROR => "internal error",
            UNSUPPORTED_VERSION => "unsupported version",
            NOT_INITIALIZED => "not initialized",
            UNKNOWN_HANDLE => "unknown handle",
            FRAME_TOO_LARGE => "frame too large",
            SHUTTING_DOWN => "shutting down",
            STREAM_ERROR => "stream error",
            REQUEST_CANCELLED => "request cancelled",
            KEY_NOT_FOUND => "key not found",
            BLOB_NOT_FOUND => "blob not found",
            _ => return None,
        })
    }
}

/// The `error` member of a response (SPEC.md §3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorObject {
    /// One of the codes of Appendix A, or an application code outside -32768..=-32000.
    pub code: i64,
    /// One human sentence.
    pub message: String,
    /// Details for programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject { code, message: message.into(), data: None }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32601 for a method this side does not serve, with the reason in `data`.
    pub fn method_not_found(method: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ErrorObject::new(codes::METHOD_NOT_FOUND, format!("method not found: {method} ({reason})"))
            .with_data(serde_json::json!({ "method": method, "reason": reason }))
    }

    /// -32602 with what is wrong.
    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        ErrorObject::new(codes::INVALID_PARAMS, format!("invalid params: {detail}"))
    }

    /// -32603 for a handler that failed unexpectedly.
    pub fn internal(detail: impl fmt::Display) -> Self {
        ErrorObject::new(codes::INTERNAL_ERROR, format!("internal error: {detail}"))
    }

    /// -32002: the session has not been initialized.
    pub fn not_initialized() -> Self {
        ErrorObject::new(
            codes::NOT_INITIALIZED,
            "the session is not initialized: send tether/initialize first",
        )
    }

    /// -32003 for an unknown or expired handle.
    pub fn unknown_handle(handle: &str) -> Self {
        ErrorObject::new(codes::UNKNOWN_HANDLE, format!("unknown or expired handle {handle:?}"))
            .with_data(serde_json::json!({ "handle": handle }))
    }

    /// -32004 for a request frame above the maximum.
    pub fn frame_too_large(size: u64, max: u64) -> Self {
        ErrorObject::new(
            codes::FRAME_TOO_LARGE,
            format!("frame of {size} bytes exceeds the maximum of {max}"),
        )
        .with_data(serde_json::json!({ "size": size, "max": max }))
    }

    /// -32005: the receiver is shutting down.
    pub fn shutting_down() -> Self {
        ErrorObject::new(codes::SHUTTING_DOWN, "shutting down: no new requests are accepted")
    }

    /// -32800: the request was cancelled.
    pub fn cancelled() -> Self {
        ErrorObject::new(codes::REQUEST_CANCELLED, "request cancelled")
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)?;
        if let Some(data) = &self.data {
            write!(f, ", data: {data}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorObject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_written_exactly() {
        let e = ErrorObject::unknown_handle("h1");
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"code":-32003,"message":"unknown or expired handle \"h1\"","data":{"handle":"h1"}}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorObject::cancelled()).unwrap_or_default(),
            r#"{"code":-32800,"message":"request cancelled"}"#
        );
    }

    #[test]
    fn reserved_range() {
        assert!(codes::is_reserved(codes::UNSUPPORTED_VERSION));
        assert!(codes::is_reserved(-32768));
        assert!(!codes::is_reserved(codes::KEY_NOT_FOUND));
        assert!(!codes::is_reserved(codes::REQUEST_CANCELLED));
    }
}
