//! Streams (SPEC.md §12): the `{"$stream": id, "mode": ...}` object that carries one in params or
//! a result, and the four `$/stream.*` notifications with credit-based flow control.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bytes::Bytes;
use crate::error::{codes, ErrorObject};
use crate::method::NotificationMethod;

/// The credit a side grants on each stream it consumes when its capability names none
/// (SPEC.md §12.3.1).
pub const DEFAULT_INITIAL_CREDIT: u64 = 1_048_576;

/// The largest chunk the reference SDKs write; a producer also never writes more than its
/// remaining credit (SPEC.md §12.3.3).
pub const MAX_CHUNK: usize = 1_048_576;

/// What the receiver of the message that carries a stream does with it (SPEC.md §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// The opener produces, the receiver consumes (an upload).
    Read,
    /// The receiver produces, the opener consumes.
    Write,
}

/// A stream written in params or a result: `{"$stream": 3, "mode": "read"}` (SPEC.md §12.1).
/// Its schema is `#/$defs/Stream`, so a method's schema shows which members are streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
pub struct StreamRef {
    /// The id chosen by the opener: odd from the host, even from the plugin, never reused.
    #[serde(rename = "$stream")]
    #[schemars(range(min = 1))]
    pub stream: u64,
    /// What the receiver of the message does with the stream.
    pub mode: StreamMode,
}

impl StreamRef {
    /// A stream the receiver reads (the opener produces).
    pub fn read(stream: u64) -> Self {
        StreamRef { stream, mode: StreamMode::Read }
    }

    /// A stream the receiver writes (the opener consumes).
    pub fn write(stream: u64) -> Self {
        StreamRef { stream, mode: StreamMode::Write }
    }
}

/// Which side chose a stream id (SPEC.md §12.1): the host opens odd ids, the plugin even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// Odd ids.
    Host,
    /// Even ids.
    Plugin,
}

impl Opener {
    /// Who opened the stream with this id; `None` for 0, which nobody may use.
    pub fn of(stream: u64) -> Option<Opener> {
        match stream {
            0 => None,
            n if n % 2 == 1 => Some(Opener::Host),
            _ => Some(Opener::Plugin),
        }
    }

    /// The first id this side uses.
    pub fn first_id(self) -> u64 {
        match self {
            Opener::Host => 1,
            Opener::Plugin => 2,
        }
    }
}

/// `$/stream.data` (SPEC.md §12.2): producer to consumer.
#[derive(Debug, Clone, Copy)]
pub enum StreamData {}

impl NotificationMethod for StreamData {
    const METHOD: &'static str = "$/stream.data";
    type Params = StreamDataParams;
}

/// Params of `$/stream.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamDataParams {
    /// The stream.
    #[schemars(range(min = 1))]
    pub stream: u64,
    /// The chunk (possibly empty); an attachment when those are negotiated.
    pub data: Bytes,
}

/// `$/stream.end` (SPEC.md §12.2): producer to consumer, no more data follows.
#[derive(Debug, Clone, Copy)]
pub enum StreamEnd {}

impl NotificationMethod for StreamEnd {
    const METHOD: &'static str = "$/stream.end";
    type Params = StreamParams;
}

/// Params of `$/stream.end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamParams {
    /// The stream.
    #[schemars(range(min = 1))]
    pub stream: u64,
}

/// `$/stream.credit` (SPEC.md §12.3): consumer to producer, more bytes may be sent.
#[derive(Debug, Clone, Copy)]
pub enum StreamCredit {}

impl NotificationMethod for StreamCredit {
    const METHOD: &'static str = "$/stream.credit";
    type Params = StreamCreditParams;
}

/// Params of `$/stream.credit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamCreditParams {
    /// The stream.
    #[schemars(range(min = 1))]
    pub stream: u64,
    /// Bytes added to the producer's remaining credit.
    #[schemars(range(min = 1))]
    pub bytes: u64,
}

/// `$/stream.abort` (SPEC.md §12.4): either direction, the stream ends early.
#[derive(Debug, Clone, Copy)]
pub enum StreamAbort {}

impl NotificationMethod for StreamAbort {
    const METHOD: &'static str = "$/stream.abort";
    type Params = StreamAbortParams;
}

/// Params of `$/stream.abort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamAbortParams {
    /// The stream.
    #[schemars(range(min = 1))]
    pub stream: u64,
    /// Why it ended.
    pub error: ErrorObject,
}

/// A -32006 stream error about `stream`, with `data` `{"stream": id}` (Appendix A).
pub fn stream_error(stream: u64, message: impl Into<String>) -> ErrorObject {
    ErrorObject::new(codes::STREAM_ERROR, message).with_data(serde_json::json!({ "stream": stream }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_written_as_the_spec_shows() {
        assert_eq!(
            serde_json::to_string(&StreamRef::read(3)).unwrap_or_default(),
            r#"{"$stream":3,"mode":"read"}"#
        );
        let w: Option<StreamRef> = serde_json::from_str(r#"{"mode":"write","$stream":4}"#).ok();
        assert_eq!(w, Some(StreamRef::write(4)));
        for bad in
            [r#"{"$stream":3,"mode":"both"}"#, r#"{"$stream":3}"#, r#"{"$stream":3,"mode":"read","x":1}"#]
        {
            assert!(serde_json::from_str::<StreamRef>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_tell_the_opener() {
        assert_eq!(Opener::of(0), None);
        assert_eq!(Opener::of(1), Some(Opener::Host));
        assert_eq!(Opener::of(2), Some(Opener::Plugin));
        assert_eq!(Opener::Plugin.first_id(), 2);
    }
}
