//! The stream table (SPEC.md §12): the streams of this session that are not finished, by id,
//! beside the pending map and the handle table. Each entry is the shared state of one end:
//! [`Inbound`] for a stream this side consumes, [`Outbound`] for one it produces. The public
//! ends (`StreamReader`, `StreamWriter`) hold the same `Arc`.
//!
//! The credit rules live here as plain methods on the states, so that they are tested without a
//! connection: a consumer never holds more than the window it granted (an overrun is an error),
//! and grants back what the application consumed once that reaches half of the window; a
//! producer never takes more than its remaining credit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;

use rustc_hash::FxHashMap;
use tether_spec::{ErrorObject, Opener};

use super::shared::{lock, Shared};

/// How a consumer's stream ended, once it has.
#[derive(Debug, Clone)]
pub(crate) enum Done {
    /// `$/stream.end` arrived: the buffered chunks are the rest.
    End,
    /// Aborted (by either side, a cancel, the end of the session).
    Failed(ErrorObject),
}

/// What a consumer holds: the chunks not read yet and the credit bookkeeping.
#[derive(Debug)]
pub(crate) struct InState {
    pub(crate) chunks: VecDeque<bytes::Bytes>,
    /// Bytes buffered in `chunks`.
    pub(crate) buffered: u64,
    /// Credit the producer still has (granted and not yet used by data).
    pub(crate) outstanding: u64,
    /// Bytes the application consumed since the last grant.
    pub(crate) consumed: u64,
    /// The window: the initial credit this side announced.
    pub(crate) window: u64,
    pub(crate) done: Option<Done>,
    pub(crate) waker: Option<Waker>,
}

impl InState {
    pub(crate) fn new(window: u64) -> Self {
        InState {
            chunks: VecDeque::new(),
            buffered: 0,
            outstanding: window,
            consumed: 0,
            window,
            done: None,
            waker: None,
        }
    }

    /// A chunk arrived: false when it is more than the producer was granted (SPEC.md §12.3.4).
    pub(crate) fn on_data(&mut self, chunk: bytes::Bytes) -> bool {
        let len = chunk.len() as u64;
        if len > self.outstanding {
            return false;
        }
        self.outstanding -= len;
        if !chunk.is_empty() {
            self.buffered += len;
            self.chunks.push_back(chunk);
        }
        true
    }

    /// The application consumed `n` bytes: the credit to grant now, if any (half of the window
    /// consumed, SPEC.md §12.3.5).
    pub(crate) fn on_consumed(&mut self, n: u64) -> Option<u64> {
        self.consumed += n;
        let threshold = (self.window / 2).max(1);
        if self.consumed >= threshold && self.done.is_none() {
            let grant = std::mem::take(&mut self.consumed);
            self.outstanding += grant;
            return Some(grant);
        }
        None
    }

    /// Takes up to `max` bytes of the next chunk.
    pub(crate) fn take(&mut self, max: usize) -> Option<bytes::Bytes> {
        let front = self.chunks.front_mut()?;
        let chunk = if front.len() <= max { self.chunks.pop_front()? } else { front.split_to(max) };
        self.buffered -= chunk.len() as u64;
        Some(chunk)
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a producer holds: its credit and whether it may send yet.
#[derive(Debug)]
pub(crate) struct OutState {
    /// 0 until the message that carries the stream is serialized.
    pub(crate) id: u64,
    /// Set once the carrying message is queued: data may follow it (SPEC.md §12.2).
    pub(crate) active: bool,
    pub(crate) credit: u64,
    /// Aborted by the consumer, a cancel, the end of the session, or dropped here.
    pub(crate) failed: Option<ErrorObject>,
    pub(crate) finished: bool,
    pub(crate) waker: Option<Waker>,
}

impl OutState {
    /// The size of the next chunk for `want` bytes: at most the credit and
    /// [`tether_spec::MAX_CHUNK`], 0 when the producer must wait.
    pub(crate) fn take_credit(&mut self, want: usize) -> usize {
        let n = (want as u64).min(self.credit).min(tether_spec::MAX_CHUNK as u64) as usize;
        self.credit -= n as u64;
        n
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The shared state of a stream's consuming end. Its id and session are set when it is bound:
/// at once for a stream received, when its message is encoded for one this side opens
/// (`WriteStream`).
#[derive(Debug)]
pub(crate) struct Inbound {
    id: std::sync::atomic::AtomicU64,
    pub(crate) state: Mutex<InState>,
    shared: Mutex<Weak<Shared>>,
}

impl Inbound {
    /// A consuming end bound to stream `id` of `shared`'s session, with a window of `window`.
    pub(crate) fn bound(id: u64, window: u64, shared: Weak<Shared>) -> Arc<Self> {
        Arc::new(Inbound {
            id: std::sync::atomic::AtomicU64::new(id),
            state: Mutex::new(InState::new(window)),
            shared: Mutex::new(shared),
        })
    }

    /// A consuming end not bound yet (the opener's end of a `WriteStream`).
    pub(crate) fn unbound() -> Arc<Self> {
        Inbound::bound(0, 0, Weak::new())
    }

    /// Binds it to stream `id` of `shared`'s session, which grants `window` on it.
    pub(crate) fn bind(&self, id: u64, window: u64, shared: &Arc<Shared>) {
        self.id.store(id, std::sync::atomic::Ordering::Relaxed);
        *lock(&self.shared) = Arc::downgrade(shared);
        let mut s = lock(&self.state);
        s.window = window;
        s.outstanding = window;
    }

    /// The stream's id, 0 until bound.
    pub(crate) fn id(&self) -> u64 {
        self.id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The session, while it exists.
    pub(crate) fn shared(&self) -> Option<Arc<Shared>> {
        lock(&self.shared).upgrade()
    }
}

/// The shared state of a stream's producing end.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) state: Mutex<OutState>,
    pub(crate) shared: Mutex<Weak<Shared>>,
}

impl Outbound {
    /// A producer not yet bound to a session.
    pub(crate) fn unbound() -> Arc<Self> {
        Arc::new(Outbound {
            state: Mutex::new(OutState {
                id: 0,
                active: false,
                credit: 0,
                failed: None,
                finished: false,
                waker: None,
            }),
            shared: Mutex::new(Weak::new()),
        })
    }

    /// Fails the producer (no notification: the caller decides whether one is sent).
    pub(crate) fn fail(&self, error: ErrorObject) {
        let mut s = lock(&self.state);
        if s.failed.is_none() && !s.finished {
            s.failed = Some(error);
        }
        s.wake();
    }
}

impl Inbound {
    /// Fails the consumer (no notification).
    pub(crate) fn fail(&self, error: ErrorObject) {
        let mut s = lock(&self.state);
        // A stream whose end arrived keeps it: its buffered chunks are still the whole rest.
        if s.done.is_none() {
            s.done = Some(Done::Failed(error));
        }
        s.wake();
    }
}

/// One unfinished stream.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// This side consumes it; `claimed` once typed params or a result took it (always, for a
    /// stream this side opened).
    In { end: Arc<Inbound>, claimed: bool },
    /// This side produces it; `claimed` as for `In`.
    Out { end: Arc<Outbound>, claimed: bool },
}

/// The unfinished streams by id, and the next id this side opens.
#[derive(Debug)]
pub(crate) struct StreamTable {
    next_id: u64,
    entries: FxHashMap<u64, Entry>,
    /// Every id of the other side up to here was seen (0: none yet).
    peer_floor: u64,
    /// Ids of the other side seen above `peer_floor` (they may arrive out of order when calls
    /// are queued concurrently); folded into the floor as the gaps fill.
    peer_seen: rustc_hash::FxHashSet<u64>,
}

impl StreamTable {
    /// A table for the side that opens ids of `opener`'s parity.
    pub(crate) fn new(opener: Opener) -> Self {
        StreamTable {
            next_id: opener.first_id(),
            entries: FxHashMap::default(),
            peer_floor: 0,
            peer_seen: Default::default(),
        }
    }

    /// Records an id the other side opened: false when it is not new (SPEC.md §12.1).
    pub(crate) fn mark_peer_id(&mut self, id: u64) -> bool {
        if id <= self.peer_floor || !self.peer_seen.insert(id) {
            return false;
        }
        let first = if self.next_id % 2 == 1 { 2 } else { 1 };
        loop {
            let next = if self.peer_floor == 0 { first } else { self.peer_floor + 2 };
            if !self.peer_seen.remove(&next) {
                break;
            }
            self.peer_floor = next;
        }
        true
    }

    /// Sets the parity of the ids this side opens, once the role is known (the side that sends
    /// `tether/initialize` is the host). Ids already given out are kept.
    pub(crate) fn set_opener(&mut self, opener: Opener) {
        if self.next_id <= 2 {
            self.next_id = opener.first_id();
        }
    }

    /// The next id of this side's parity, never reused.
    pub(crate) fn allocate(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 2;
        id
    }

    /// Whether this side opens ids of `id`'s parity.
    pub(crate) fn is_ours(&self, id: u64) -> bool {
        Opener::of(id) == Opener::of(self.next_id)
    }

    /// Registers a stream; false when the id is already in use.
    pub(crate) fn insert(&mut self, id: u64, entry: Entry) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        self.entries.insert(id, entry);
        true
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Takes an unclaimed consuming end for typed params or a result.
    pub(crate) fn claim(&mut self, id: u64) -> Option<Arc<Inbound>> {
        match self.entries.get_mut(&id) {
            Some(Entry::In { end, claimed }) if !*claimed => {
                *claimed = true;
                Some(end.clone())
            }
            _ => None,
        }
    }

    /// Takes an unclaimed producing end for typed params or a result (a `WriteStream`).
    pub(crate) fn claim_out(&mut self, id: u64) -> Option<Arc<Outbound>> {
        match self.entries.get_mut(&id) {
            Some(Entry::Out { end, claimed }) if !*claimed => {
                *claimed = true;
                Some(end.clone())
            }
            _ => None,
        }
    }

    /// Whether `id` is an end nobody took.
    pub(crate) fn is_unclaimed(&self, id: u64) -> bool {
        matches!(
            self.entries.get(&id),
            Some(Entry::In { claimed: false, .. } | Entry::Out { claimed: false, .. })
        )
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Every entry (the session ended).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        self.entries.drain().map(|(_, e)| e).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The ends of a stream, failed with `error` (a cancel, the end of the session).
pub(crate) fn fail_entry(entry: &Entry, error: &ErrorObject) {
    match entry {
        Entry::In { end, .. } => end.fail(error.clone()),
        Entry::Out { end, .. } => end.fail(error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> bytes::Bytes {
        bytes::Bytes::from(vec![7u8; n])
    }

    #[test]
    fn ids_follow_the_opener_parity_and_are_never_reused() {
        let mut host = StreamTable::new(Opener::Host);
        assert_eq!([host.allocate(), host.allocate(), host.allocate()], [1, 3, 5]);
        assert!(host.is_ours(7) && !host.is_ours(2));
        let mut plugin = StreamTable::new(Opener::Plugin);
        assert_eq!([plugin.allocate(), plugin.allocate()], [2, 4]);
        assert!(plugin.is_ours(6) && !plugin.is_ours(1));
    }

    #[test]
    fn a_peer_id_is_new_once_even_out_of_order() {
        let mut t = StreamTable::new(Opener::Plugin);
        assert!(t.mark_peer_id(3));
        assert!(t.mark_peer_id(1));
        assert!(!t.mark_peer_id(1) && !t.mark_peer_id(3));
        assert!(t.peer_seen.is_empty(), "the ids in order fold into the floor");
        assert!(t.mark_peer_id(7));
        assert!(!t.mark_peer_id(7));
        assert!(t.mark_peer_id(5));
        assert_eq!(t.peer_floor, 7);
    }

    #[test]
    fn an_id_in_use_is_refused_and_claimed_once() {
        let mut t = StreamTable::new(Opener::Plugin);
        let end = Inbound::bound(1, 10, Weak::new());
        assert!(t.insert(1, Entry::In { end: end.clone(), claimed: false }));
        assert!(!t.insert(1, Entry::In { end, claimed: false }));
        assert!(t.is_unclaimed(1));
        assert!(t.claim(1).is_some());
        assert!(t.claim(1).is_none(), "a stream is taken once");
        assert!(!t.is_unclaimed(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain().len(), 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_consumer_refuses_more_than_it_granted() {
        let mut s = InState::new(100);
        assert!(s.on_data(chunk(60)));
        assert!(s.on_data(chunk(40)));
        assert!(!s.on_data(chunk(1)), "the window is used up");
        assert_eq!(s.buffered, 100);
    }

    #[test]
    fn credit_is_granted_when_half_the_window_is_consumed() {
        let mut s = InState::new(100);
        assert!(s.on_data(chunk(100)));
        let first = s.take(30).map(|c| c.len());
        assert_eq!(first, Some(30));
        assert_eq!(s.on_consumed(30), None);
        let rest = s.take(1000).map(|c| c.len());
        assert_eq!(rest, Some(70));
        assert_eq!(s.on_consumed(20), Some(50), "one grant for what was consumed");
        assert_eq!(s.outstanding, 50);
        assert!(s.on_data(chunk(50)));
        assert!(!s.on_data(chunk(1)));
        assert_eq!(s.buffered, 50);
    }

    #[test]
    fn a_producer_never_takes_more_than_its_credit() {
        let mut s = OutState { id: 1, active: true, credit: 10, failed: None, finished: false, waker: None };
        assert_eq!(s.take_credit(4), 4);
        assert_eq!(s.take_credit(100), 6);
        assert_eq!(s.take_credit(1), 0);
        s.credit = u64::MAX;
        assert_eq!(s.take_credit(usize::MAX), tether_spec::MAX_CHUNK, "chunks are at most 1 MiB");
    }
}
