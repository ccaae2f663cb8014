//! The pending map: the calls this side made that wait for their answer, by request id.
//!
//! Ids are minted by this side (increasing integers), so the map uses the cheap Fx hash. An
//! entry whose caller stopped waiting (a time-out, a cancel) stays until its answer or the end
//! of the session, so that the late answer is recognised and ends the scope of the handles the
//! call carried (SPEC.md §6.3) instead of being reported as an unknown response.

use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::error::CallError;
use super::progress::ProgressSink;

/// A successful answer: the result, the attachments its `{"$bytes": i}` stand for, and the
/// streams it carries (registered when it was read).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) result: Box<RawValue>,
    pub(crate) attachments: Vec<bytes::Bytes>,
    pub(crate) streams: Vec<u64>,
}

impl Answer {
    /// An answer without attachments or streams.
    #[cfg(test)]
    pub(crate) fn plain(result: Box<RawValue>) -> Self {
        Answer { result, attachments: Vec::new(), streams: Vec::new() }
    }
}

/// What a pending call is answered with.
pub(super) type PendingResult = Result<Answer, CallError>;

/// One call waiting for its answer.
#[derive(Debug)]
pub(super) struct Pending {
    /// `None` once the caller stopped waiting: the late answer is consumed quietly.
    tx: Option<oneshot::Sender<PendingResult>>,
    /// The handles scoped to this call (SPEC.md §6.3), whose scope its answer ends.
    pub(super) handles: Vec<String>,
    /// Where its `$/progress` go, when the call asked for progress (SPEC.md §14).
    progress: Option<ProgressSink>,
}

impl Pending {
    /// Hands the answer to the caller, if it still waits; gives it back otherwise.
    pub(super) fn answer(self, result: PendingResult) -> Option<PendingResult> {
        match self.tx {
            Some(tx) => tx.send(result).err(),
            None => Some(result),
        }
    }
}

/// The calls waiting for an answer, by request id.
#[derive(Debug, Default)]
pub(super) struct PendingCalls {
    calls: FxHashMap<i64, Pending>,
}

impl PendingCalls {
    /// Registers call `id`, whose answer goes to `tx`.
    pub(super) fn insert(&mut self, id: i64, tx: oneshot::Sender<PendingResult>, handles: Vec<String>) {
        self.calls.insert(id, Pending { tx: Some(tx), handles, progress: None });
    }

    /// Registers call `id`, which asked for progress with token `id`: its `$/progress` go to
    /// `sink` until it is answered or abandoned.
    pub(super) fn insert_with_progress(
        &mut self,
        id: i64,
        tx: oneshot::Sender<PendingResult>,
        handles: Vec<String>,
        sink: ProgressSink,
    ) {
        self.calls.insert(id, Pending { tx: Some(tx), handles, progress: Some(sink) });
    }

    /// The sink of the call whose token is `token`, while its caller waits; `None` for a token
    /// this side does not know (late progress is ignored, SPEC.md §14.2.3).
    pub(super) fn progress_of(&self, token: i64) -> Option<&ProgressSink> {
        self.calls.get(&token).filter(|p| p.tx.is_some()).and_then(|p| p.progress.as_ref())
    }

    /// Takes the call an answer with `id` completes; `None` for an id this side never used or
    /// already saw answered.
    pub(super) fn complete(&mut self, id: i64) -> Option<Pending> {
        self.calls.remove(&id)
    }

    /// The caller of `id` stopped waiting: its answer, if it comes, is dropped quietly. True
    /// when the call was still unanswered (so the other side should be told to cancel it).
    pub(super) fn abandon(&mut self, id: i64) -> bool {
        match self.calls.get_mut(&id) {
            Some(pending) => {
                pending.tx = None;
                true
            }
            None => false,
        }
    }

    /// Takes every pending call (the session ended).
    pub(super) fn drain(&mut self) -> Vec<Pending> {
        self.calls.drain().map(|(_, p)| p).collect()
    }

    /// How many calls wait.
    pub(super) fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap_or_default()
    }

    #[test]
    fn an_answer_reaches_its_caller_once() {
        let mut calls = PendingCalls::default();
        let (tx, mut rx) = oneshot::channel();
        calls.insert(7, tx, vec!["h1".to_owned()]);
        let pending = calls.complete(7);
        assert!(pending.as_ref().is_some_and(|p| p.handles == ["h1"]));
        pending.into_iter().for_each(|p| assert!(p.answer(Ok(Answer::plain(raw("1")))).is_none()));
        assert!(matches!(rx.try_recv(), Ok(Ok(v)) if v.result.get() == "1"));
        assert!(calls.complete(7).is_none(), "a second answer to the same id is unknown");
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn an_unknown_id_completes_nothing() {
        let mut calls = PendingCalls::default();
        let (tx, _rx) = oneshot::channel();
        calls.insert(1, tx, Vec::new());
        assert!(calls.complete(2).is_none());
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn an_abandoned_call_keeps_its_entry_for_the_late_answer() {
        let mut calls = PendingCalls::default();
        let (tx, mut rx) = oneshot::channel();
        calls.insert(3, tx, vec!["h9".to_owned()]);
        assert!(calls.abandon(3));
        // The caller is told nothing more: its sender is gone.
        assert!(rx.try_recv().is_err());
        let late = calls.complete(3);
        assert!(late.as_ref().is_some_and(|p| p.handles == ["h9"]), "the late answer still ends the scope");
        assert!(!calls.abandon(3), "an answered call cannot be abandoned");
    }

    #[test]
    fn draining_takes_every_call() {
        let mut calls = PendingCalls::default();
        let mut receivers = Vec::new();
        for id in 1..=3 {
            let (tx, rx) = oneshot::channel();
            calls.insert(id, tx, Vec::new());
            receivers.push(rx);
        }
        for p in calls.drain() {
            let _ = p.answer(Err(CallError::Cancelled));
        }
        assert_eq!(calls.len(), 0);
        for mut rx in receivers {
            assert!(matches!(rx.try_recv(), Ok(Err(CallError::Cancelled))));
        }
    }
}
