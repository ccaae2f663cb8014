//! The blocking frame transport ([`Session::start_blocking`]): frames read with blocking reads
//! on the thread that runs its [`BlockingInput`] and dispatched there, as the message-level
//! transport dispatches a message on its caller's thread, and written with blocking writes by
//! whichever thread sends.
//! A call whose handler does not wait then costs its peer a `read` and a `write`, with no
//! reactor and no task woken. What a plugin process runs on (the host, an application with its
//! own runtime, keeps the tasks of [`Session::start`]). The plugin SDK's reader waits in `poll`
//! before each `read`: on a 2-vCPU machine a reader asleep in `read` itself was woken on the
//! other CPU from its host for most calls (BENCHMARKS.md, "Blocking reads in the plugin").
//!
//! The answers given while the frames of one read are dispatched are collected and written
//! together when that read's frames are done (the cork of the reader task, `through`), so that
//! 64 calls in flight are still answered in a few writes.
//!
//! With [`BlockingInput::run_handlers_here`], the handlers that wait also run on the reading
//! thread (`local_tasks.rs`), so that a callback's answer resumes its handler with no thread
//! woken.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use bytes::BytesMut;
use tether_spec::format::encode_attachments_header;
use tether_spec::FrameCodec;
use tokio::sync::oneshot;

use super::error::{CloseKind, CloseReason};
use super::local_tasks::LocalTasks;
use super::messages::{MessageInput, MessageSink};
use super::options::Options;
use super::reader::{end_of_input, next_frame};
use super::service::Service;
use super::Session;

/// Collected answers are written once they reach this size, corked or not.
const BATCH_LIMIT: usize = 1 << 20;
/// An attachment at least this large is written from where it is rather than copied into the
/// frame's buffer.
const DIRECT_WRITE: usize = 256 * 1024;
/// A buffer larger than this is not kept for the next frame.
const KEPT_BUFFER: usize = 64 * 1024;

/// How the input of a session of [`Session::start_blocking`] ended, once its reader is done.
#[derive(Debug)]
pub struct InputEnd {
    ended: oneshot::Receiver<bool>,
}

impl InputEnd {
    /// Whether the input reached its end of file within `window`. Once the session has closed
    /// for another reason (a failed write, say), the reader reads on and discards, so that this
    /// tells a peer that closed both pipes (end of file soon) from one that only stopped
    /// reading.
    pub async fn reached_end_within(self, window: std::time::Duration) -> bool {
        matches!(tokio::time::timeout(window, self.ended).await, Ok(Ok(true)))
    }
}

/// The reading side of a session of [`Session::start_blocking`]: run it on the thread that is
/// to read and dispatch ([`BlockingInput::run`]), or on a new one ([`BlockingInput::spawn`]).
pub struct BlockingInput<R> {
    input: MessageInput,
    reader: R,
    sink: Arc<dyn Cork>,
    ended: oneshot::Sender<bool>,
    wake_reader: Option<Box<dyn Fn() + Send + Sync>>,
}

impl<R> std::fmt::Debug for BlockingInput<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingInput").finish_non_exhaustive()
    }
}

impl<R: Read> BlockingInput<R> {
    /// Runs the handlers that wait on the reading thread too, rather than as tasks of the
    /// runtime: a handler woken by an answer the reader has just read (a callback's answer)
    /// then goes on at once on the same thread, with no thread woken. The handlers of a
    /// current-thread runtime run one at a time either way; on the reading thread, a handler
    /// that computes for long also delays reading, as its first poll already does.
    ///
    /// `wake_reader` is called from other threads when they wake a handler (a timer, a
    /// channel): it must make the reader's pending or next `read` return promptly with
    /// [`std::io::ErrorKind::Interrupted`], for example by making a descriptor the reader
    /// polls readable. When the input ends, the handlers still waiting move to the runtime.
    pub fn run_handlers_here(mut self, wake_reader: impl Fn() + Send + Sync + 'static) -> Self {
        self.wake_reader = Some(Box::new(wake_reader));
        self
    }

    /// Reads and dispatches frames on this thread until the input ends, a read fails or the
    /// session closes; after a close, reads on to the end of the input, discarding. True when
    /// the input reached its end of file (also told to the [`InputEnd`]).
    pub fn run(self) -> bool {
        let BlockingInput { input, mut reader, sink, ended, wake_reader } = self;
        let local = wake_reader.map(LocalTasks::for_this_thread);
        let entered = local.as_ref().map(LocalTasks::enter);
        let mut eof = read_frames(&input, &mut reader, sink.as_ref(), local.as_deref());
        drop(entered);
        if let Some(local) = &local {
            local.hand_over(&input.runtime);
        }
        if !eof {
            eof = drain(&mut reader);
        }
        let _ = ended.send(eof);
        eof
    }
}

impl<R: Read + Send + 'static> BlockingInput<R> {
    /// Runs [`BlockingInput::run`] on a new thread.
    pub fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new().name("tether-reader".into()).spawn(move || self.run()).map(drop)
    }
}

impl Session {
    /// Starts a session over blocking byte streams (for example a process's stdin and stdout):
    /// the returned [`BlockingInput`], run on a thread of the caller's choice, reads the frames
    /// and dispatches each message there as [`Session::start_messages`] does, so a handler
    /// that does not wait answers on that thread; frames are written by the thread that sends
    /// them, with blocking writes. Nothing is read until the input runs.
    ///
    /// Must be called within a tokio runtime, which runs the handlers that wait, and the end of
    /// the session. A write blocks the thread that sends: a peer that stops reading stalls the
    /// senders (the handlers that answer, the runtime's thread among them) until it reads
    /// again or closes its end, so a process that must exit on time bounds its own exit (the
    /// plugin SDK's `serve` does). Hand-over ([`crate::Peer::detach`]) does not apply.
    pub fn start_blocking<R, W>(
        reader: R,
        writer: W,
        options: Options,
        service: impl Service,
    ) -> (Session, BlockingInput<R>, InputEnd)
    where
        R: Read,
        W: Write + Send + 'static,
    {
        let sink = Arc::new(FrameSink::new(writer));
        let (session, input) = Session::start_messages(SharedSink(sink.clone()), options, service);
        let (ended, end) = oneshot::channel();
        (session, BlockingInput { input, reader, sink, ended, wake_reader: None }, InputEnd { ended: end })
    }
}

/// What the reader needs of the sink: the cork around the frames of one read.
trait Cork: Send + Sync {
    fn cork(&self);
    /// False when writing what was collected failed.
    fn uncork(&self) -> bool;
}

impl<W: Write + Send> Cork for FrameSink<W> {
    fn cork(&self) {
        self.state().corked = true;
    }

    fn uncork(&self) -> bool {
        let mut state = self.state();
        state.corked = false;
        state.flush()
    }
}

/// Decodes and dispatches frames until the input ends (true), a read fails or the session
/// closes (false).
fn read_frames(
    input: &MessageInput,
    reader: &mut impl Read,
    sink: &dyn Cork,
    local: Option<&LocalTasks>,
) -> bool {
    let shared = &input.shared;
    let _runtime = input.runtime.enter();
    let mut codec = FrameCodec::builder().max_frame_size(shared.max_frame.load(Ordering::Relaxed)).build();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // The answers given while this read's frames are dispatched are written together.
        sink.cork();
        loop {
            if shared.token.is_cancelled() {
                let _ = sink.uncork();
                return false;
            }
            match next_frame(shared, &mut codec, &mut buf) {
                Some(frame) => shared.on_frame(frame),
                None => break,
            }
        }
        // The handlers these frames woke (their callbacks answered) go on now, their answers
        // corked with the rest.
        if let Some(local) = local {
            local.run();
        }
        if !sink.uncork() && !shared.token.is_cancelled() {
            // The answers collected could not be written: as after any failed send.
            shared.close(CloseReason::new(CloseKind::WriteFailed, "the other side no longer takes messages"));
            return false;
        }
        match reader.read(&mut chunk) {
            Ok(0) => {
                end_of_input(shared, &mut codec, &mut buf);
                return true;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A signal, or another thread woke a handler this thread runs.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.close(CloseReason::new(CloseKind::ReadFailed, format!("reading failed: {e}")));
                return false;
            }
        }
    }
}

/// Reads `reader` to its end, discarding: true at end of file, false when a read fails.
fn drain(reader: &mut impl Read) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match read_some(reader, &mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// One `read`, retried when a signal interrupted it.
fn read_some(reader: &mut impl Read, chunk: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes frames with blocking writes, in the order they are sent.
struct FrameSink<W> {
    state: Mutex<SinkState<W>>,
}

struct SinkState<W> {
    /// `None` once ended or failed.
    writer: Option<W>,
    /// While set, frames are collected in `out` rather than written.
    corked: bool,
    /// Frames not written yet (corked), or the buffer the next frame is assembled in.
    out: Vec<u8>,
}

impl<W: Write> FrameSink<W> {
    fn new(writer: W) -> Self {
        FrameSink { state: Mutex::new(SinkState { writer: Some(writer), corked: false, out: Vec::new() }) }
    }

    fn state(&self) -> MutexGuard<'_, SinkState<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write> SinkState<W> {
    /// Writes what was collected; false (and the writer dropped) when the write fails.
    fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return self.writer.is_some();
        }
        let Some(writer) = self.writer.as_mut() else { return false };
        let written = writer.write_all(&self.out).and_then(|()| writer.flush());
        self.out.clear();
        if self.out.capacity() > KEPT_BUFFER {
            self.out = Vec::new();
        }
        if written.is_err() {
            self.writer = None;
        }
        written.is_ok()
    }

    fn send(&mut self, body: &[u8], attachments: &[bytes::Bytes]) -> bool {
        if self.writer.is_none() {
            return false;
        }
        encode_attachments_header(body.len(), attachments.iter().map(bytes::Bytes::len), &mut self.out);
        self.out.extend_from_slice(body);
        let large = attachments.iter().any(|a| a.len() >= DIRECT_WRITE);
        if !large {
            for a in attachments {
                self.out.extend_from_slice(a);
            }
            if self.corked && self.out.len() < BATCH_LIMIT {
                return true;
            }
            return self.flush();
        }
        // A large value goes from where it is, after what precedes it.
        if !self.flush() {
            return false;
        }
        let Some(writer) = self.writer.as_mut() else { return false };
        let written = attachments.iter().try_for_each(|a| writer.write_all(a)).and_then(|()| writer.flush());
        if written.is_err() {
            self.writer = None;
        }
        written.is_ok()
    }
}

/// The sink as the session holds it, shared with the reader thread (which corks it).
struct SharedSink<W>(Arc<FrameSink<W>>);

impl<W: Write + Send + 'static> MessageSink for SharedSink<W> {
    fn send(&self, body: &[u8], attachments: &[bytes::Bytes]) -> bool {
        self.0.state().send(body, attachments)
    }

    fn end(&self) {
        // A write blocked on a peer that stopped reading holds the lock: the stream then closes
        // when the sink is dropped (or the process exits), not here, which must not block.
        let mut state = match self.0.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let _ = state.flush();
        state.writer = None;
    }
}
