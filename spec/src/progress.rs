//! Progress of a long call (SPEC.md §14): the token a caller puts in `_meta.progressToken`, and
//! the `$/progress` notification the serving side answers it with while the call is pending.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::Id;
use crate::method::NotificationMethod;

/// The token a caller chooses for one call's progress: an integer or a string, like an id
/// (SPEC.md §14.1). It is echoed exactly, as an id is.
pub type ProgressToken = Id;

/// `$/progress` (SPEC.md §14.2), from the side serving a request to its caller.
#[derive(Debug, Clone, Copy)]
pub enum Progress {}

impl NotificationMethod for Progress {
    const METHOD: &'static str = "$/progress";
    type Params = ProgressParams;
}

/// Params of `$/progress`: how far the request the token names has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressParams {
    /// The caller's `_meta.progressToken` of the request, exactly as it was sent.
    pub token: ProgressToken,
    /// A human sentence on what is being done now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Units of work done so far; never decreases within one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// Units of work in all, when known; `done` never exceeds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The `progress` capability: `{}` (SPEC.md §14.1); members a later revision adds are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressCapability {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_members_are_not_written() {
        let p = ProgressParams { token: Id::Int(7), message: None, done: Some(3), total: None };
        assert_eq!(serde_json::to_string(&p).unwrap_or_default(), r#"{"token":7,"done":3}"#);
        let back: Result<ProgressParams, _> = serde_json::from_str(r#"{"token":"t","total":9}"#);
        assert!(back.is_ok_and(|b| b.token == Id::Str("t".into()) && b.total == Some(9) && b.done.is_none()));
    }
}
