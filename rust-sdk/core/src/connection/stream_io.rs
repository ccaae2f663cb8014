//! The session's side of streams (SPEC.md §12): registering the streams a message carries when
//! it is read, routing the four `$/stream.*` notifications to the table, writing them, and
//! failing streams when their call is cancelled or fails, or the session ends.

use std::sync::Arc;

use serde_json::value::RawValue;
use tether_spec::{
    stream_error, with_attachment_source, ErrorObject, NotificationMethod, StreamAbort, StreamAbortParams,
    StreamCredit, StreamCreditParams, StreamData, StreamDataParams, StreamEnd, StreamMode, StreamParams,
    StreamRef,
};

use super::envelope::Outgoing;
use super::shared::{lock, Shared};
use super::streams::{fail_entry, Done, Entry, Inbound, Outbound};

/// Collects the stream objects (`{"$stream": id, "mode": ...}`) anywhere in a JSON value.
fn streams_in(value: &serde_json::Value, found: &mut Vec<StreamRef>) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("$stream") {
                if let Ok(r) = serde_json::from_value::<StreamRef>(value.clone()) {
                    found.push(r);
                    return;
                }
            }
            map.values().for_each(|v| streams_in(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| streams_in(v, found)),
        _ => {}
    }
}

impl Shared {
    /// Registers the streams `json` (params of a request, or a result) carries, before anything
    /// later is read, so that their data finds them. Returns their ids, or what is wrong with one
    /// (SPEC.md §12.1: invalid params in a request; a local error for a response).
    pub(super) fn register_streams(self: &Arc<Self>, json: &RawValue) -> Result<Vec<u64>, String> {
        if !self.negotiated.streams() || !json.get().contains("\"$stream\"") {
            return Ok(Vec::new());
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(json.get()) else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        streams_in(&value, &mut found);
        let mut ids = Vec::with_capacity(found.len());
        let mut table = lock(&self.streams);
        let result = self.register_in(&mut table, found, &mut ids);
        if result.is_err() {
            // A message with one bad stream carries none: those registered before it go.
            for id in &ids {
                table.remove(*id);
            }
        }
        result.map(|()| ids)
    }

    fn register_in(
        self: &Arc<Self>,
        table: &mut super::streams::StreamTable,
        found: Vec<StreamRef>,
        ids: &mut Vec<u64>,
    ) -> Result<(), String> {
        for r in found {
            if table.is_ours(r.stream) {
                return Err(format!(
                    "stream {} has this side's parity: the other side cannot open it",
                    r.stream
                ));
            }
            if !table.mark_peer_id(r.stream) {
                return Err(format!("stream {} is not a new id of the other side", r.stream));
            }
            let entry = match r.mode {
                StreamMode::Read => Entry::In {
                    end: Inbound::bound(r.stream, self.negotiated.own_credit(), Arc::downgrade(self)),
                    claimed: false,
                },
                // This side produces into a stream the other side opened: it may send at once,
                // within the credit the opener announced (SPEC.md §12.2).
                StreamMode::Write => {
                    let end = Outbound::unbound();
                    {
                        let mut s = lock(&end.state);
                        s.id = r.stream;
                        s.active = true;
                        s.credit = self.negotiated.peer_credit();
                    }
                    *lock(&end.shared) = Arc::downgrade(self);
                    Entry::Out { end, claimed: false }
                }
            };
            if !table.insert(r.stream, entry) {
                return Err(format!("stream {} is already in use", r.stream));
            }
            ids.push(r.stream);
        }
        Ok(())
    }

    /// Aborts the streams among `ids` that nobody took (SPEC.md §12.4.4), telling the producer.
    pub(super) fn abort_unclaimed(&self, ids: &[u64], why: &str) {
        for &id in ids {
            let unclaimed = lock(&self.streams).is_unclaimed(id);
            if unclaimed {
                self.abort_stream(id, stream_error(id, why));
            }
        }
    }

    /// Fails streams `ids` here without a notification (SPEC.md §12.4.3: a cancelled or failed
    /// call; the other side aborts them on its own).
    pub(super) fn fail_streams(&self, ids: &[u64], error: &ErrorObject) {
        for &id in ids {
            let entry = lock(&self.streams).remove(id);
            if let Some(entry) = entry {
                fail_entry(&entry, error);
            }
        }
    }

    /// Every unfinished stream fails with the reason the session ended (SPEC.md §12.4.5).
    pub(super) fn fail_all_streams(&self) {
        let reason = self.close_reason();
        let error =
            ErrorObject::new(tether_spec::codes::STREAM_ERROR, format!("the session ended: {reason}"));
        let entries = lock(&self.streams).drain();
        for entry in &entries {
            fail_entry(entry, &error);
        }
    }

    /// Ends stream `id` early on both sides: fails the local end and sends `$/stream.abort`.
    pub(crate) fn abort_stream(&self, id: u64, error: ErrorObject) {
        let entry = lock(&self.streams).remove(id);
        if let Some(entry) = entry {
            fail_entry(&entry, &error);
            self.notify_value::<StreamAbort>(&StreamAbortParams { stream: id, error });
        }
    }

    /// Forgets a stream that ended normally.
    pub(crate) fn forget_stream(&self, id: u64) {
        lock(&self.streams).remove(id);
    }

    fn notify_value<N: NotificationMethod>(&self, params: &N::Params) {
        if let Ok(params) = serde_json::value::to_raw_value(params) {
            let _ = self.send(notification_body(N::METHOD, &params));
        }
    }

    /// Sends a chunk: an attachment once negotiated, base64 before.
    pub(crate) fn send_chunk(&self, id: u64, chunk: bytes::Bytes) -> Result<(), ()> {
        if self.negotiated.attachments_out() {
            let mut body = Vec::with_capacity(96);
            body.extend_from_slice(br#"{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":"#);
            body.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            body.extend_from_slice(br#","data":{"$bytes":0}}}"#);
            self.enqueue(Outgoing::Attached { body, attachments: vec![chunk] })
        } else {
            let params = StreamDataParams { stream: id, data: chunk.into() };
            let params = serde_json::value::to_raw_value(&params).map_err(|_| ())?;
            self.send(notification_body(StreamData::METHOD, &params)).map_err(|_| ())
        }
    }

    pub(crate) fn send_end(&self, id: u64) {
        self.notify_value::<StreamEnd>(&StreamParams { stream: id });
    }

    pub(crate) fn send_credit(&self, id: u64, bytes: u64) {
        self.notify_value::<StreamCredit>(&StreamCreditParams { stream: id, bytes });
    }

    /// The largest chunk a frame can carry here: [`tether_spec::MAX_CHUNK`], less when the
    /// maximum frame size is small (and base64 takes 4/3).
    pub(crate) fn max_chunk(&self) -> usize {
        let max = self.max_frame.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(256);
        let room = if self.negotiated.attachments_out() { max } else { max / 4 * 3 };
        room.clamp(1, tether_spec::MAX_CHUNK)
    }

    /// Routes a `$/stream.*` notification; true when `method` is one. Notifications about
    /// streams this side does not know are ignored (SPEC.md §12.4.6).
    pub(super) fn on_stream_notification(
        &self,
        method: &str,
        params: &RawValue,
        attachments: &[bytes::Bytes],
    ) -> bool {
        match method {
            StreamData::METHOD => {
                let parsed = with_attachment_source(attachments, || {
                    serde_json::from_str::<StreamDataParams>(params.get())
                });
                let Ok(p) = parsed else { return true };
                let end = match lock(&self.streams).get(p.stream) {
                    Some(Entry::In { end, .. }) => end.clone(),
                    _ => return true,
                };
                let accepted = {
                    let mut s = lock(&end.state);
                    let ok = s.on_data(p.data.0);
                    s.wake();
                    ok
                };
                if !accepted {
                    self.abort_stream(
                        p.stream,
                        stream_error(p.stream, "the producer sent more data than it was granted credit for"),
                    );
                }
            }
            StreamEnd::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamParams>(params.get()) else { return true };
                let entry = {
                    let mut table = lock(&self.streams);
                    match table.get(p.stream) {
                        Some(Entry::In { .. }) => table.remove(p.stream),
                        _ => None,
                    }
                };
                if let Some(Entry::In { end, .. }) = entry {
                    let mut s = lock(&end.state);
                    s.done.get_or_insert(Done::End);
                    s.wake();
                }
            }
            StreamCredit::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamCreditParams>(params.get()) else { return true };
                if let Some(Entry::Out { end, .. }) = lock(&self.streams).get(p.stream) {
                    let mut s = lock(&end.state);
                    s.credit = s.credit.saturating_add(p.bytes);
                    s.wake();
                }
            }
            StreamAbort::METHOD => {
                let Ok(p) = serde_json::from_str::<StreamAbortParams>(params.get()) else { return true };
                let entry = lock(&self.streams).remove(p.stream);
                if let Some(entry) = entry {
                    // What the local end fails with names the stream and says who aborted it.
                    let mut error = p.error;
                    error.message = format!("the other side aborted the stream: {}", error.message);
                    if error.data.is_none() {
                        error.data = Some(serde_json::json!({ "stream": p.stream }));
                    }
                    fail_entry(&entry, &error);
                }
            }
            _ => return false,
        }
        true
    }

    /// Activates the producing ends a queued message carried: their data may follow it now.
    pub(super) fn activate(&self, opened: &[Arc<Outbound>]) {
        for end in opened {
            let mut s = lock(&end.state);
            s.active = true;
            s.wake();
        }
    }
}

/// The body of a notification whose method needs no escaping.
pub(super) fn notification_body(method: &str, params: &RawValue) -> Vec<u8> {
    let mut body = Vec::with_capacity(40 + method.len() + params.get().len());
    body.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
    super::envelope::write_json_str(&mut body, method);
    body.extend_from_slice(br#","params":"#);
    body.extend_from_slice(params.get().as_bytes());
    body.push(b'}');
    body
}
