//! How a session ends ([`CloseKind`], [`CloseReason`]) and how a call fails ([`CallError`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether_spec::ErrorObject;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// The input reached end of file between frames.
    EndOfInput,
    /// The input ended in the middle of a frame.
    Truncated,
    /// Reading failed.
    ReadFailed,
    /// Writing failed (the other side closed its input, for example).
    WriteFailed,
    /// The owner called [`crate::Peer::close`].
    Closed,
}

/// Why a session ended, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The kind of end.
    pub kind: CloseKind,
    /// What happened, for messages (a host may put the exit status and stderr here).
    pub message: Arc<str>,
}

impl CloseReason {
    /// A reason.
    pub fn new(kind: CloseKind, message: impl Into<Arc<str>>) -> Self {
        CloseReason { kind, message: message.into() }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why an outgoing call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other side answered with an error.
    #[error("{0}")]
    Remote(ErrorObject),
    /// No answer came within the time-out; `$/cancelRequest` was sent.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The call was cancelled (the handler that made it was cancelled); `$/cancelRequest` was
    /// sent.
    #[error("the call was cancelled")]
    Cancelled,
    /// The session ended before the answer came.
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    /// The request would have been a frame above the maximum size; nothing was written.
    #[error("the request is {len} bytes, above the maximum frame size of {max}; it was not sent")]
    RequestTooLarge {
        /// The body's length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The answer was a frame above the maximum size; it was skipped.
    #[error("the answer is {size} bytes, above the maximum frame size of {max}")]
    ResponseTooLarge {
        /// Its declared length.
        size: u64,
        /// The maximum in force.
        max: usize,
    },
    /// The params could not be serialized.
    #[error("cannot serialize the params: {0}")]
    Serialize(String),
    /// The result does not have the expected type.
    #[error("unexpected result: {0}")]
    Deserialize(String),
}

impl CallError {
    /// The remote error object, when the other side answered with an error.
    pub fn remote(&self) -> Option<&ErrorObject> {
        match self {
            CallError::Remote(e) => Some(e),
            _ => None,
        }
    }

    /// The error an intermediate handler answers when a call it made failed: a remote error
    /// as is, -32800 for a cancelled call, -32603 otherwise.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            CallError::Remote(e) => e.clone(),
            CallError::Cancelled => ErrorObject::cancelled(),
            other => ErrorObject::internal(other),
        }
    }
}

impl From<CallError> for ErrorObject {
    fn from(e: CallError) -> Self {
        e.to_error_object()
    }
}
