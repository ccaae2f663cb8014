//! The pending map: the calls this side made that wait for their answer, by request id.
//!
//! Ids are minted by this side (increasing integers), so the map uses the cheap Fx hash. An
//! entry whose caller stopped waiting (a time-out, a cancel) stays until its answer or the end
//! of the session, so that the late answer is recognised and ends the scope of the handles the
//! call carried (SPEC.md §6.3) instead of being reported as an unknown response.

use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use std::sync::Mutex;

use super::error::CallError;
use super::progress::ProgressSink;
use super::shared::lock;

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

/// Who takes a call's answer.
#[derive(Debug)]
enum Waiter {
    /// The caller is still sending (the message-level transport may answer during the send):
    /// an answer given now is kept in [`PendingCalls::early`] for it, so that a call answered
    /// inline needs no channel at all.
    Sending,
    Waiting(oneshot::Sender<PendingResult>),
    /// The caller stopped waiting: the late answer is consumed quietly.
    Abandoned,
}

/// One call waiting for its answer.
#[derive(Debug)]
pub(super) struct Pending {
    id: i64,
    waiter: Waiter,
    /// The handles scoped to this call (SPEC.md §6.3), whose scope its answer ends.
    pub(super) handles: Vec<String>,
    /// Where its `$/progress` go, when the call asked for progress (SPEC.md §14).
    progress: Option<ProgressSink>,
}

impl Pending {
    /// Hands the answer to the caller, if it still waits (kept in `calls` for a caller still
    /// sending); gives it back otherwise. Called without `calls` locked.
    pub(super) fn answer(self, result: PendingResult, calls: &Mutex<PendingCalls>) -> Option<PendingResult> {
        match self.waiter {
            Waiter::Waiting(tx) => tx.send(result).err(),
            Waiter::Sending => {
                lock(calls).early.push((self.id, result));
                None
            }
            Waiter::Abandoned => Some(result),
        }
    }
}

/// The calls waiting for an answer, by request id.
#[derive(Debug, Default)]
pub(super) struct PendingCalls {
    calls: FxHashMap<i64, Pending>,
    /// Answers that came while their caller was still sending, until it takes them.
    early: Vec<(i64, PendingResult)>,
}

/// How [`PendingCalls::wait_for`] found a call once it was sent.
pub(super) enum Sent {
    /// Answered during the send.
    Answered(PendingResult),
    /// Not answered yet: the answer will come through this channel.
    Waiting(oneshot::Receiver<PendingResult>),
}

impl PendingCalls {
    /// Registers call `id` before it is sent; [`PendingCalls::wait_for`] once it is.
    pub(super) fn insert(&mut self, id: i64, handles: Vec<String>) {
        self.calls.insert(id, Pending { id, waiter: Waiter::Sending, handles, progress: None });
    }

    /// Registers call `id`, which asked for progress with token `id`: its `$/progress` go to
    /// `sink` until it is answered or abandoned.
    pub(super) fn insert_with_progress(&mut self, id: i64, handles: Vec<String>, sink: ProgressSink) {
        self.calls.insert(id, Pending { id, waiter: Waiter::Sending, handles, progress: Some(sink) });
    }

    /// Call `id` was sent: its answer if it came meanwhile, else the channel it will come
    /// through.
    pub(super) fn wait_for(&mut self, id: i64) -> Sent {
        if let Some(at) = self.early.iter().position(|(early, _)| *early == id) {
            return Sent::Answered(self.early.swap_remove(at).1);
        }
        let (tx, rx) = oneshot::channel();
        match self.calls.get_mut(&id) {
            Some(pending) => pending.waiter = Waiter::Waiting(tx),
            // Every way out of the map leaves an answer in `early`; should one not, the
            // dropped sender fails the wait as a closed session.
            None => drop(tx),
        }
        Sent::Waiting(rx)
    }

    /// Call `id` could not be sent: its entry and any answer kept for it go.
    pub(super) fn forget(&mut self, id: i64) {
        self.calls.remove(&id);
        self.early.retain(|(early, _)| *early != id);
    }

    /// The sink of the call whose token is `token`, while its caller waits; `None` for a token
    /// this side does not know (late progress is ignored, SPEC.md §14.2.3).
    pub(super) fn progress_of(&self, token: i64) -> Option<&ProgressSink> {
        self.calls
            .get(&token)
            .filter(|p| !matches!(p.waiter, Waiter::Abandoned))
            .and_then(|p| p.progress.as_ref())
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
                pending.waiter = Waiter::Abandoned;
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

    /// A call registered and sent, now waiting on its channel.
    fn waiting(
        calls: &Mutex<PendingCalls>,
        id: i64,
        handles: Vec<String>,
    ) -> oneshot::Receiver<PendingResult> {
        let mut calls = lock(calls);
        calls.insert(id, handles);
        match calls.wait_for(id) {
            Sent::Waiting(rx) => rx,
            Sent::Answered(_) => panic!("answered before it was"),
        }
    }

    #[test]
    fn an_answer_reaches_its_caller_once() {
        let calls = Mutex::new(PendingCalls::default());
        let mut rx = waiting(&calls, 7, vec!["h1".to_owned()]);
        let pending = lock(&calls).complete(7);
        assert!(pending.as_ref().is_some_and(|p| p.handles == ["h1"]));
        pending.into_iter().for_each(|p| assert!(p.answer(Ok(Answer::plain(raw("1"))), &calls).is_none()));
        assert!(matches!(rx.try_recv(), Ok(Ok(v)) if v.result.get() == "1"));
        assert!(lock(&calls).complete(7).is_none(), "a second answer to the same id is unknown");
        assert_eq!(lock(&calls).len(), 0);
    }

    #[test]
    fn an_answer_given_while_the_caller_sends_is_kept_for_it() {
        let calls = Mutex::new(PendingCalls::default());
        lock(&calls).insert(4, Vec::new());
        let pending = lock(&calls).complete(4);
        pending.into_iter().for_each(|p| assert!(p.answer(Ok(Answer::plain(raw("2"))), &calls).is_none()));
        match lock(&calls).wait_for(4) {
            Sent::Answered(Ok(answer)) => assert_eq!(answer.result.get(), "2"),
            _ => panic!("the early answer was not kept"),
        }
        assert!(lock(&calls).early.is_empty());
    }

    #[test]
    fn an_unknown_id_completes_nothing() {
        let calls = Mutex::new(PendingCalls::default());
        let _rx = waiting(&calls, 1, Vec::new());
        assert!(lock(&calls).complete(2).is_none());
        assert_eq!(lock(&calls).len(), 1);
    }

    #[test]
    fn an_abandoned_call_keeps_its_entry_for_the_late_answer() {
        let calls = Mutex::new(PendingCalls::default());
        let mut rx = waiting(&calls, 3, vec!["h9".to_owned()]);
        assert!(lock(&calls).abandon(3));
        // The caller is told nothing more: its sender is gone.
        assert!(rx.try_recv().is_err());
        let late = lock(&calls).complete(3);
        assert!(late.as_ref().is_some_and(|p| p.handles == ["h9"]), "the late answer still ends the scope");
        assert!(!lock(&calls).abandon(3), "an answered call cannot be abandoned");
    }

    #[test]
    fn draining_takes_every_call() {
        let calls = Mutex::new(PendingCalls::default());
        let receivers: Vec<_> = (1..=3).map(|id| waiting(&calls, id, Vec::new())).collect();
        let drained = lock(&calls).drain();
        for p in drained {
            let _ = p.answer(Err(CallError::Cancelled), &calls);
        }
        assert_eq!(lock(&calls).len(), 0);
        for mut rx in receivers {
            assert!(matches!(rx.try_recv(), Ok(Err(CallError::Cancelled))));
        }
    }
}
