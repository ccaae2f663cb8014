//! The settings of a connection ([`Options`]) and what its reader reports to the owner
//! ([`Event`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether_spec::{Attribution, EnvelopeError, GarbageReason, Id, DEFAULT_MAX_FRAME_SIZE};

/// Something the reader saw that is not a normal message, for the owner to log (SPEC.md §2.6,
/// §3.4). The session goes on after each, except [`Event::EndOfInput`] and a truncated frame.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Bytes that are not a frame were skipped.
    Garbage {
        /// The bytes, escaped and shortened to [`tether_spec::SHOWN_BYTES`] with [`tether_spec::format::show_bytes`].
        shown: String,
        /// Why they are not a frame.
        reason: GarbageReason,
    },
    /// A frame above the maximum size was skipped.
    Oversized {
        /// Its declared length.
        declared: u64,
        /// The maximum in force.
        max: usize,
        /// Its id and kind, when its first bytes showed them.
        attribution: Option<Attribution>,
    },
    /// The input ended in the middle of a frame.
    Truncated {
        /// The bytes of the partial frame, escaped and shortened.
        shown: String,
    },
    /// A frame body that is not a valid message (answered when SPEC.md §3.4 says so).
    Invalid(EnvelopeError),
    /// A response whose id matches no pending call (SPEC.md §3.4.3); ignored.
    UnknownResponse(Id),
    /// The input ended while [`Options::close_on_eof`] is off: the owner closes the session.
    EndOfInput,
    /// An answer would have been a frame above the maximum size: the request was answered
    /// -32004 (frame too large) instead (SPEC.md §2.2).
    AnswerTooLarge {
        /// The request's id.
        id: Id,
        /// The length of the answer's body that was not written.
        size: usize,
        /// The maximum in force.
        max: usize,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Garbage { shown, reason } => write!(f, "skipped {reason}: {shown}"),
            Event::Oversized { declared, max, attribution } => {
                write!(f, "skipped a frame of {declared} bytes (the maximum is {max})")?;
                if let Some(a) = attribution {
                    write!(f, " with id {}", a.id)?;
                }
                Ok(())
            }
            Event::Truncated { shown } => write!(f, "the input ended in the middle of a frame: {shown}"),
            Event::Invalid(e) => write!(f, "{e}"),
            Event::UnknownResponse(id) => write!(f, "ignored a response for unknown request id {id}"),
            Event::EndOfInput => f.write_str("end of input"),
            Event::AnswerTooLarge { id, size, max } => write!(
                f,
                "answered request {id} with -32004 (frame too large): its answer of {size} bytes is above the maximum frame size of {max}"
            ),
        }
    }
}

type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// Settings of a connection.
#[derive(Clone)]
pub struct Options {
    pub(super) max_frame_size: usize,
    pub(super) default_timeout: Option<Duration>,
    pub(super) on_event: Option<EventHook>,
    pub(super) close_on_eof: bool,
    pub(super) max_write_backlog: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            default_timeout: None,
            on_event: None,
            close_on_eof: true,
            max_write_backlog: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("max_frame_size", &self.max_frame_size)
            .field("default_timeout", &self.default_timeout)
            .field("on_event", &self.on_event.is_some())
            .field("close_on_eof", &self.close_on_eof)
            .field("max_write_backlog", &self.max_write_backlog)
            .finish()
    }
}

impl Options {
    /// Defaults: 32 MiB frames, no time-out, events dropped, the session closes at end of input.
    pub fn new() -> Self {
        Options::default()
    }

    /// The maximum body length for both directions (change it later with
    /// [`crate::Peer::set_max_frame_size`]).
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// A time-out for every outgoing call that does not set its own.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Called on the reader task for each [`Event`]; it must not block.
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(hook));
        self
    }

    /// Whether an event hook is set.
    pub fn has_event_hook(&self) -> bool {
        self.on_event.is_some()
    }

    /// Whether end of input closes the session at once, failing pending calls with
    /// [`crate::CloseKind::EndOfInput`] (the default). A host that wants to fail them with a better
    /// reason (the exit status, the last lines of stderr) turns this off, waits for the process,
    /// and calls [`crate::Peer::close`]; the reader then reports [`Event::EndOfInput`].
    pub fn close_on_eof(mut self, close: bool) -> Self {
        self.close_on_eof = close;
        self
    }

    /// Stops reading while more than `bytes` of answers and requests wait to be written (the
    /// other side is not reading them), and reads again once they are written: the memory
    /// held for a peer that stops reading stays bounded. Off by default. A plugin turns it on
    /// (the plugin SDK `tether` does); a host leaves it off, since two sides that both stop reading
    /// when their output backs up can wait on each other for ever.
    pub fn max_write_backlog(mut self, bytes: usize) -> Self {
        self.max_write_backlog = Some(bytes);
        self
    }

    /// The bound set with [`Options::max_write_backlog`], if any.
    pub fn write_backlog_limit(&self) -> Option<usize> {
        self.max_write_backlog
    }

    /// The maximum frame size set with [`Options::max_frame_size`].
    pub fn frame_size_limit(&self) -> usize {
        self.max_frame_size
    }
}
