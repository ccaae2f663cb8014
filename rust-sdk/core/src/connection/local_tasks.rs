//! Handlers that wait, run on the reading thread of a blocking transport instead of the
//! runtime's thread ([`super::BlockingInput::run_handlers_here`]).
//!
//! A handler that calls back into the host (`counter.put` invoking the host's `adder.sum`)
//! waits for that answer, which the reading thread reads. Run as a tokio task, the handler
//! was then woken on the runtime's thread: on a 2-vCPU machine that wake-up landed on the
//! other CPU and cost 60-150 µs per callback, against about 6 µs for a plain call
//! (BENCHMARKS.md, "Handlers that wait run on the reading thread"). Here the reading thread
//! polls the handler itself right after dispatching the answer, with no thread woken.
//!
//! A task woken from another thread (a timer of the runtime, a channel fed by another task)
//! is queued and the reading thread is interrupted through the `wake_reader` function its
//! owner gave, which makes the pending `read` return `ErrorKind::Interrupted`. When the input
//! ends, the tasks still waiting move to the runtime, which finishes them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};
use std::thread::ThreadId;

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How many times one pass polls the tasks woken meanwhile before the reader reads again
/// (with itself interrupted, so the read does not block): a task that keeps waking itself
/// cannot starve the input.
const ROUNDS_PER_PASS: usize = 16;

thread_local! {
    /// The tasks of the reading thread this code runs on, if it is one.
    static HERE: RefCell<Option<Arc<LocalTasks>>> = const { RefCell::new(None) };
}

/// Runs `future` on the reading thread when called there (by a handler dispatched by a reader
/// that runs its handlers), else spawns it on the current tokio runtime.
pub(super) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    let here = HERE.with(|h| h.borrow().clone());
    match here {
        Some(tasks) if !tasks.closed.load(Ordering::Acquire) => tasks.add(Box::pin(future)),
        _ => drop(tokio::spawn(future)),
    }
}

/// The tasks of one reading thread.
pub(super) struct LocalTasks {
    thread: ThreadId,
    wake_reader: Box<dyn Fn() + Send + Sync>,
    next_id: AtomicU64,
    /// Every task not finished, by id.
    live: Mutex<HashMap<u64, Arc<Task>>>,
    /// The tasks woken and not polled since.
    woken: Mutex<VecDeque<Arc<Task>>>,
    /// Set when the reader is done: the tasks left have moved to the runtime.
    closed: AtomicBool,
}

struct Task {
    id: u64,
    future: Mutex<Option<TaskFuture>>,
    /// Whether it is in `woken` already (a task is queued at most once).
    queued: AtomicBool,
    tasks: Arc<LocalTasks>,
}

impl LocalTasks {
    /// Tasks run by the calling thread (the reader), which `wake_reader` interrupts.
    pub(super) fn for_this_thread(wake_reader: Box<dyn Fn() + Send + Sync>) -> Arc<LocalTasks> {
        Arc::new(LocalTasks {
            thread: std::thread::current().id(),
            wake_reader,
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            woken: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Makes [`spawn`] on this thread add to these tasks, until the guard is dropped.
    pub(super) fn enter(self: &Arc<Self>) -> Entered {
        let previous = HERE.with(|h| h.borrow_mut().replace(self.clone()));
        Entered { previous }
    }

    fn add(self: &Arc<Self>, future: TaskFuture) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task {
            id,
            future: Mutex::new(Some(future)),
            queued: AtomicBool::new(false),
            tasks: self.clone(),
        });
        lock(&self.live).insert(id, task.clone());
        // Polled in this pass, as a tokio task would be soon after its spawn.
        task.wake();
    }

    /// Polls the tasks woken, again while polling wakes more, up to [`ROUNDS_PER_PASS`] rounds.
    /// Called by the reading thread between reads.
    pub(super) fn run(&self) {
        for _ in 0..ROUNDS_PER_PASS {
            let woken = std::mem::take(&mut *lock(&self.woken));
            if woken.is_empty() {
                return;
            }
            for task in woken {
                task.poll();
            }
        }
        if !lock(&self.woken).is_empty() {
            // Still more to do: the next read returns at once rather than block.
            (self.wake_reader)();
        }
    }

    /// Moves the tasks not finished to the tokio runtime `runtime`, when the reader is done.
    pub(super) fn hand_over(&self, runtime: &tokio::runtime::Handle) {
        self.closed.store(true, Ordering::Release);
        lock(&self.woken).clear();
        let live: Vec<Arc<Task>> = lock(&self.live).drain().map(|(_, task)| task).collect();
        for task in live {
            let future = lock(&task.future).take();
            // Polled first thing by the runtime, with its own waker: the wakers the future gave
            // out before now reach a closed queue and do nothing.
            if let Some(future) = future {
                drop(runtime.spawn(future));
            }
        }
    }
}

impl Task {
    fn poll(self: Arc<Self>) {
        self.queued.store(false, Ordering::Release);
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else { return };
        let waker = Waker::from(self.clone());
        // Handlers catch their own panics (dispatch.rs); this future never unwinds.
        if future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
            *slot = None;
            drop(slot);
            lock(&self.tasks.live).remove(&self.id);
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let tasks = &self.tasks;
        if tasks.closed.load(Ordering::Acquire) || self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&tasks.woken).push_back(self.clone());
        // On the reading thread, the reader polls the queue before it reads again; from any
        // other thread, the reader may be blocked in a read.
        if std::thread::current().id() != tasks.thread {
            (tasks.wake_reader)();
        }
    }
}

/// Restores what [`spawn`] used on this thread before [`LocalTasks::enter`].
pub(super) struct Entered {
    previous: Option<Arc<LocalTasks>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        HERE.with(|h| *h.borrow_mut() = previous);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
