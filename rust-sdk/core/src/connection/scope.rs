//! The scopes in which params and results are encoded and decoded, like the attachment scopes
//! of `tether-spec` (`with_attachment_sink`, `with_attachment_source`): a thread-local names the
//! session, so that a stream field (`ReadStream`) binds itself to it when serialized and takes
//! its consuming end from the stream table when deserialized, and `Bytes` travel as attachments
//! once those are negotiated. Outside every scope a stream field cannot be written or read.
//!
//! Why thread-locals: serde gives a `Serialize` impl no context, and the typed API (`KvClient`,
//! `#[interface]` handlers) must not change for users. The scopes are entered only around one
//! encode or decode, and around the polls of a handler (so that the result it encodes reaches
//! the frame of its answer), and they always restore what was there before.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{with_attachment_sink, with_attachment_source, with_owned_attachment_source};
use tokio_util::sync::CancellationToken;

use super::shared::{lock, Shared};
use super::streams::{Entry, Inbound, Outbound};

/// Params or a result encoded for one frame.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) json: Box<RawValue>,
    /// The `Bytes` values written as `{"$bytes": i}` (empty before negotiation).
    pub(crate) attachments: Vec<bytes::Bytes>,
    /// The streams the value opened.
    pub(crate) opened: Opened,
}

/// The streams a value opened while it was encoded.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Those this side produces (`ReadStream`): they become active once the frame is queued.
    pub(crate) produced: Vec<Arc<Outbound>>,
    /// Those this side consumes (`WriteStream`), by id.
    pub(crate) consumed: Vec<u64>,
}

impl Opened {
    /// Every id.
    pub(crate) fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.produced.iter().map(|e| lock(&e.state).id).collect();
        ids.extend_from_slice(&self.consumed);
        ids
    }

    /// Fails them all here (the message that carried them was not sent or failed).
    pub(crate) fn fail(&self, shared: &Shared, error: &tether_spec::ErrorObject) {
        for end in &self.produced {
            end.fail(error.clone());
        }
        shared.fail_streams(&self.ids(), error);
    }
}

/// What an encoded result carries besides its JSON: its attachments and the streams it opened.
pub(crate) type Carried = (Vec<bytes::Bytes>, Opened);

/// The session being encoded for, and the streams the value opened so far.
type EncodingScope = (Arc<Shared>, Opened);

/// One request being served: where its handler's encoded result leaves what it carries, and
/// the request's cancellation token.
pub(crate) struct ReplySlot {
    pub(crate) shared: Arc<Shared>,
    pub(crate) out: Mutex<Option<Carried>>,
    /// Made when first asked for: a handler that answers without waiting and never looks at
    /// its token (most of them) costs no child token of the session's, nor its cancellation.
    token: OnceLock<CancellationToken>,
    /// Set once the request is answered: its token, made now or later, is cancelled.
    finished: AtomicBool,
}

impl ReplySlot {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ReplySlot { shared, out: Mutex::new(None), token: OnceLock::new(), finished: AtomicBool::new(false) }
    }

    /// The request's token: a child of the session's, cancelled when the request is.
    pub(crate) fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(|| self.shared.token.child_token());
        // Made after the answer (by a task the handler left behind): born cancelled. The
        // order of this load and `finish`'s store makes one of them cancel it.
        if self.finished.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// The request is answered: what its handler started and still waits for is cancelled
    /// (SPEC.md §7.2).
    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }
}

thread_local! {
    static ENCODING: RefCell<Option<EncodingScope>> = const { RefCell::new(None) };
    static DECODING: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    static REPLY: RefCell<Option<Arc<ReplySlot>>> = const { RefCell::new(None) };
}

/// Puts a thread-local back as it was, even when the scope unwinds.
struct Restore<T: 'static> {
    slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<Option<T>>,
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            self.slot.with(|s| *s.borrow_mut() = previous);
        }
    }
}

fn enter<T: 'static, R>(
    slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    value: T,
    f: impl FnOnce() -> R,
) -> (R, Option<T>) {
    let previous = slot.with(|s| s.replace(Some(value)));
    let mut restore = Restore { slot, previous: Some(previous) };
    let r = f();
    let ours = match restore.previous.take() {
        Some(previous) => slot.with(|s| s.replace(previous)),
        None => None,
    };
    (r, ours)
}

/// Encodes `value` for a frame of `shared`'s session.
pub(crate) fn encode<T: Serialize + ?Sized>(
    shared: &Arc<Shared>,
    value: &T,
) -> Result<Encoded, serde_json::Error> {
    let mut attachments = Vec::new();
    let (json, ours) = enter(&ENCODING, (shared.clone(), Opened::default()), || {
        if shared.negotiated.attachments_out() {
            with_attachment_sink(&mut attachments, || tether_spec::to_raw_value(value))
        } else {
            tether_spec::to_raw_value(value)
        }
    });
    let opened = ours.map(|(_, opened)| opened).unwrap_or_default();
    match json {
        Ok(json) => Ok(Encoded { json, attachments, opened }),
        Err(e) => {
            // Streams opened by a value that could not be sent never start.
            opened.fail(
                shared,
                &tether_spec::stream_error(0, "the message that carried the stream was not sent"),
            );
            Err(e)
        }
    }
}

/// Decodes `json` of a frame of `shared`'s session, whose attachments are `attachments`.
pub(crate) fn decode<T: DeserializeOwned>(
    shared: &Arc<Shared>,
    json: &str,
    attachments: &[bytes::Bytes],
) -> Result<T, serde_json::Error> {
    decode_owned(shared, json, attachments.to_vec())
}

/// [`decode`] for a caller done with the attachments afterwards (they are moved, not cloned).
pub(crate) fn decode_owned<T: DeserializeOwned>(
    shared: &Arc<Shared>,
    json: &str,
    attachments: Vec<bytes::Bytes>,
) -> Result<T, serde_json::Error> {
    enter(&DECODING, shared.clone(), || {
        if attachments.is_empty() {
            serde_json::from_str(json)
        } else {
            with_owned_attachment_source(attachments, || serde_json::from_str(json))
        }
    })
    .0
}

/// Runs `f` (a handler call or one poll of its future) so that a result it encodes with
/// [`encode_result`] leaves its attachments and streams in `slot`.
pub(crate) fn with_reply_slot<R>(slot: &Arc<ReplySlot>, f: impl FnOnce() -> R) -> R {
    enter(&REPLY, slot.clone(), f).0
}

/// Runs `f` with `shared` as the session that stream fields are decoded from, and
/// `attachments` as the source of `{"$bytes": i}`: what typed handlers deserialize their params
/// in.
pub(crate) fn with_decoding<R>(
    shared: &Arc<Shared>,
    attachments: &[bytes::Bytes],
    f: impl FnOnce() -> R,
) -> R {
    enter(&DECODING, shared.clone(), || {
        if attachments.is_empty() {
            f()
        } else {
            with_attachment_source(attachments, f)
        }
    })
    .0
}

/// Encodes a handler's result: inside a handler of a session, with that session's scopes (the
/// attachments and streams go to the answer's frame); elsewhere as plain JSON.
pub(crate) fn encode_result<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    let slot = REPLY.with(|s| s.borrow().clone());
    let Some(slot) = slot else { return tether_spec::to_raw_value(value) };
    let encoded = encode(&slot.shared, value)?;
    let mut out = lock(&slot.out);
    let (attachments, opened) = out.get_or_insert_with(Default::default);
    // A handler encodes one result; should it encode several, the last one is the answer and
    // the attachments numbering restarts with it.
    *attachments = encoded.attachments;
    opened.produced.extend(encoded.opened.produced);
    opened.consumed.extend(encoded.opened.consumed);
    Ok(encoded.json)
}

/// Binds a producing end to the session being encoded for: allocates its id and registers it.
/// Fails outside an encoding scope or when streams are not negotiated.
pub(crate) fn open_outbound(end: &Arc<Outbound>) -> Result<u64, String> {
    ENCODING.with(|s| {
        let mut s = s.borrow_mut();
        let Some((shared, opened)) = s.as_mut() else {
            return Err(
                "a stream can only be written in the params or the result of a Tether call".to_owned()
            );
        };
        if !shared.negotiated.streams() {
            return Err(
                "streams are not negotiated with this peer (both sides must announce `streams`)".to_owned()
            );
        }
        let mut state = lock(&end.state);
        if state.id != 0 || state.failed.is_some() {
            return Err("this stream was already sent, or its writer is gone".to_owned());
        }
        let mut table = lock(&shared.streams);
        let id = table.allocate();
        table.insert(id, Entry::Out { end: end.clone(), claimed: true });
        state.id = id;
        state.credit = shared.negotiated.peer_credit();
        *lock(&end.shared) = Arc::downgrade(shared);
        opened.produced.push(end.clone());
        Ok(id)
    })
}

/// Binds the opener's consuming end of a `WriteStream` to the session being encoded for.
pub(crate) fn open_inbound(end: &Arc<Inbound>) -> Result<u64, String> {
    ENCODING.with(|s| {
        let mut s = s.borrow_mut();
        let Some((shared, opened)) = s.as_mut() else {
            return Err(
                "a stream can only be written in the params or the result of a Tether call".to_owned()
            );
        };
        if !shared.negotiated.streams() {
            return Err(
                "streams are not negotiated with this peer (both sides must announce `streams`)".to_owned()
            );
        }
        if end.id() != 0 {
            return Err("this stream was already sent".to_owned());
        }
        let mut table = lock(&shared.streams);
        let id = table.allocate();
        end.bind(id, shared.negotiated.own_credit(), shared);
        table.insert(id, Entry::In { end: end.clone(), claimed: true });
        opened.consumed.push(id);
        Ok(id)
    })
}

/// Takes the producing end of stream `id` (mode `write`), registered when the message that
/// carries it was read.
pub(crate) fn claim_outbound(id: u64) -> Result<Arc<Outbound>, String> {
    let Some(shared) = DECODING.with(|s| s.borrow().clone()) else {
        return Err("a stream can only be read from the params or the result of a Tether call".to_owned());
    };
    if !shared.negotiated.streams() {
        return Err(format!("stream {id}: streams are not negotiated with this peer"));
    }
    let claimed = lock(&shared.streams).claim_out(id);
    claimed.ok_or_else(|| {
        format!("stream {id} is not a new stream opened by the other side, or was already taken")
    })
}

/// Takes the consuming end of stream `id`, registered when the message that carries it was
/// read. Fails outside a decoding scope, or when the id is not a stream this side may read.
pub(crate) fn claim_inbound(id: u64) -> Result<Arc<Inbound>, String> {
    let Some(shared) = DECODING.with(|s| s.borrow().clone()) else {
        return Err("a stream can only be read from the params or the result of a Tether call".to_owned());
    };
    if !shared.negotiated.streams() {
        return Err(format!("stream {id}: streams are not negotiated with this peer"));
    }
    let claimed = lock(&shared.streams).claim(id);
    claimed.ok_or_else(|| {
        format!("stream {id} is not a new stream opened by the other side, or was already taken")
    })
}

/// `json` with every `{"$bytes": i}` replaced by attachment `i` as base64 (SPEC.md §5.3), for
/// callers of untyped JSON.
pub(crate) fn attachments_as_base64(
    json: &str,
    attachments: &[bytes::Bytes],
) -> Result<Box<RawValue>, serde_json::Error> {
    fn walk(v: &mut serde_json::Value, attachments: &[bytes::Bytes]) {
        match v {
            serde_json::Value::Object(map) => {
                let index = (map.len() == 1)
                    .then(|| map.get(tether_spec::BYTES_REF))
                    .flatten()
                    .and_then(|i| i.as_u64());
                if let Some(a) = index.and_then(|i| attachments.get(usize::try_from(i).ok()?)) {
                    *v = serde_json::to_value(tether_spec::Bytes(a.clone())).unwrap_or_default();
                    return;
                }
                map.values_mut().for_each(|v| walk(v, attachments));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, attachments)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    walk(&mut value, attachments);
    tether_spec::to_raw_value(&value)
}
