//! How a session ends ([`CloseKind`], [`CloseReason`]) and how a call fails ([`CallError`]).

use std::any::Any;
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

/// Why a session ended, with a sentence for people, and optionally a value for programs (a host
/// attaches the plugin's exit status, see [`CloseReason::with_detail`]).
#[derive(Clone)]
pub struct CloseReason {
    /// The kind of end.
    pub kind: CloseKind,
    /// What happened, for messages (a host may put the exit status and stderr here).
    pub message: Arc<str>,
    /// A structured value for programs; not part of equality.
    detail: Option<Arc<dyn Any + Send + Sync>>,
}

impl CloseReason {
    /// A reason.
    pub fn new(kind: CloseKind, message: impl Into<Arc<str>>) -> Self {
        CloseReason { kind, message: message.into(), detail: None }
    }

    /// Attaches a structured value that every call failed by this end carries (a host attaches
    /// the plugin's exit status, so that typed clients get it as a value, not only as text).
    pub fn with_detail<T: Any + Send + Sync>(mut self, detail: T) -> Self {
        self.detail = Some(Arc::new(detail));
        self
    }

    /// The structured value attached with [`with_detail`](Self::with_detail), if it is a `T`.
    pub fn detail<T: Any>(&self) -> Option<&T> {
        self.detail.as_deref().and_then(|d| (d as &dyn Any).downcast_ref::<T>())
    }
}

impl fmt::Debug for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseReason")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("has_detail", &self.detail.is_some())
            .finish()
    }
}

impl PartialEq for CloseReason {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for CloseReason {}

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
    /// Why the session ended, when the call failed because it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            CallError::Closed(reason) => Some(reason),
            _ => None,
        }
    }

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
