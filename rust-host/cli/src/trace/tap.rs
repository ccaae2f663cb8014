//! A copy of one direction's bytes, parsed into frames with the spec crate's codec (lenient, as
//! a host reads) for the trace log; what it makes of the bytes never changes what is relayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::BytesMut;
use tether_spec::format::show_bytes;
use tether_spec::{
    parse_message, Frame, FrameCodec, Id, Message, Outcome, RequestMethod, DEFAULT_MAX_FRAME_SIZE,
};
use tokio_util::codec::Decoder;

use super::log::{Record, TraceLog};

/// The most unanswered requests remembered for round-trip times (a peer that never answers
/// must not grow the proxy without bound).
const MAX_PENDING: usize = 65_536;
/// How many bytes of a frame that is not a frame the log shows.
const SHOWN: usize = 120;

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// From the host (our stdin) to the plugin (its stdin).
    HostToPlugin,
    /// From the plugin (its stdout) to the host (our stdout).
    PluginToHost,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::HostToPlugin => "host->plugin",
            Direction::PluginToHost => "plugin->host",
        }
    }

    fn other(self) -> Self {
        match self {
            Direction::HostToPlugin => Direction::PluginToHost,
            Direction::PluginToHost => Direction::HostToPlugin,
        }
    }
}

/// A request that went one way, by its sender's direction and id (as JSON): when it was read,
/// and its method.
type Requests = HashMap<(Direction, String), (Instant, String)>;

/// What both directions share: the unanswered requests (who sent them, id; when, method) and
/// the maximum frame size the host announced.
#[derive(Clone)]
pub(crate) struct Pending {
    requests: Arc<Mutex<Requests>>,
    max_frame_size: Arc<AtomicUsize>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            requests: Arc::default(),
            max_frame_size: Arc::new(AtomicUsize::new(DEFAULT_MAX_FRAME_SIZE)),
        }
    }
}

impl Pending {
    fn sent(&self, direction: Direction, id: &Id, method: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if requests.len() < MAX_PENDING {
            requests.insert((direction, id_key(id)), (Instant::now(), method.to_owned()));
        }
    }

    /// The request a response in `direction` answers: when it was sent, and its method.
    fn answered(&self, direction: Direction, id: &Id) -> Option<(Instant, String)> {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests.remove(&(direction.other(), id_key(id)))
    }
}

fn id_key(id: &Id) -> String {
    serde_json::to_string(id).unwrap_or_else(|_| id.to_string())
}

/// One direction's parser and logger.
pub(crate) struct Tap {
    direction: Direction,
    pending: Pending,
    log: Arc<TraceLog>,
    codec: FrameCodec,
    buf: BytesMut,
    /// Bytes fed so far, and bytes already attributed to logged frames: their difference after
    /// a decoded frame is that frame's size on the wire, header included.
    fed: u64,
    counted: u64,
}

impl Tap {
    pub(crate) fn new(direction: Direction, pending: Pending, log: Arc<TraceLog>) -> Self {
        // Attachment frames are recognised from the start: the proxy does not negotiate, and a
        // frame with the header is split where its sender meant it (SPEC.md §2.8).
        let codec = FrameCodec::builder().attachments(true).build();
        Tap { direction, pending, log, codec, buf: BytesMut::new(), fed: 0, counted: 0 }
    }

    /// Looks at the next bytes (before they are forwarded, so that a request is known before
    /// its answer can come back) and returns the records of the frames they complete, for the
    /// caller to write once the bytes are forwarded.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        let max = self.pending.max_frame_size.load(Ordering::Relaxed);
        if max != self.codec.max_frame_size() {
            self.codec.set_max_frame_size(max);
        }
        self.buf.extend_from_slice(chunk);
        self.fed += chunk.len() as u64;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => records.push(self.frame(frame)),
                Ok(None) => break,
                Err(e) => {
                    // A lenient codec only fails on i/o, which it does not do here; start over.
                    records.push(self.record("error", Some(e.to_string())));
                    self.buf.clear();
                    break;
                }
            }
        }
        records
    }

    /// Writes records to the trace.
    pub(crate) fn write(&self, records: &[Record]) {
        for record in records {
            self.log.write(record);
        }
    }

    /// The end of the direction: a frame cut short is logged as such.
    pub(crate) fn finish(&mut self) {
        if let Ok(Some(frame)) = self.codec.decode_eof(&mut self.buf) {
            let record = self.frame(frame);
            self.log.write(&record);
        }
        self.log.write(&self.record("end", None));
    }

    fn frame(&mut self, frame: Frame) -> Record {
        let consumed = self.fed - self.buf.len() as u64;
        let size = consumed.saturating_sub(self.counted);
        self.counted = consumed;
        let mut record = match frame {
            Frame::Message(body) => self.message(&body, 0),
            Frame::Attached(attached) => self.message(&attached.body, attached.attachments.len()),
            Frame::BadAttachments { reason, .. } => self.record("invalid", Some(reason.to_string())),
            Frame::Garbage { bytes, reason } => {
                self.record("garbage", Some(format!("{reason}: {}", show_bytes(&bytes, SHOWN))))
            }
            Frame::Oversized(oversized) => {
                let mut record = self.record(
                    "oversized",
                    Some(format!(
                        "declared {} bytes, above the maximum of {}",
                        oversized.declared, oversized.max
                    )),
                );
                record.id = oversized.attribution().and_then(|a| serde_json::to_value(a.id).ok());
                record
            }
            Frame::Truncated(bytes) => self
                .record("truncated", Some(format!("end of input in a frame: {}", show_bytes(&bytes, SHOWN)))),
        };
        record.bytes = size;
        record
    }

    fn message(&mut self, body: &[u8], attachments: usize) -> Record {
        let mut record = match parse_message(body) {
            Ok(Message::Request(request)) => {
                self.pending.sent(self.direction, &request.id, &request.method);
                if self.direction == Direction::HostToPlugin
                    && request.method == tether_spec::Initialize::METHOD
                {
                    self.follow_frame_size(request.params.get());
                }
                let mut record = self.record("request", None);
                record.method = Some(request.method);
                record.id = serde_json::to_value(&request.id).ok();
                record
            }
            Ok(Message::Notification(notification)) => {
                let mut record = self.record("notification", None);
                record.method = Some(notification.method);
                record
            }
            Ok(Message::Response(response)) => {
                let mut record = self.record("response", None);
                if let Some(id) = &response.id {
                    if let Some((sent, method)) = self.pending.answered(self.direction, id) {
                        record.rtt_ms = Some(sent.elapsed().as_secs_f64() * 1000.0);
                        record.method = Some(method);
                    }
                }
                record.id = response.id.as_ref().and_then(|id| serde_json::to_value(id).ok());
                if let Outcome::Error(error) = &response.outcome {
                    record.error = Some(error.code);
                    record.note = Some(error.message.clone());
                }
                record
            }
            Err(e) => self.record("invalid", Some(e.to_string())),
        };
        record.attachments = attachments;
        record
    }

    /// The host's `maxFrameSize` applies to both directions once the plugin read it: follow it,
    /// so that frames the session allows are not logged as oversized.
    fn follow_frame_size(&self, params: &str) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Max {
            max_frame_size: Option<u64>,
        }
        let max = serde_json::from_str::<Max>(params).ok().and_then(|m| m.max_frame_size);
        if let Some(max) = max.and_then(|m| usize::try_from(m).ok()) {
            if max >= tether_spec::MIN_MAX_FRAME_SIZE {
                self.pending.max_frame_size.store(max, Ordering::Relaxed);
            }
        }
    }

    fn record(&self, kind: &'static str, note: Option<String>) -> Record {
        Record::new(self.direction.as_str(), kind, note)
    }
}
