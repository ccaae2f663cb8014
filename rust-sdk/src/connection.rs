//! The connection: one Tether session over any byte stream, for either role.
//!
//! [`Connection::spawn`] starts two tasks on the current tokio runtime: a **reader** that decodes
//! frames with the lenient [`FrameCodec`] and routes each message, and a **writer** that drains
//! the queue of outgoing frames into one buffer and writes it with one `write` and one `flush`.
//! The reader never waits for a handler: an asynchronous handler is polled once on the reader
//! (most finish there, without a task) and, if it has to wait, runs on in its own task, so a
//! handler that calls back into the other side (a broker callback, SPEC.md §6.4) cannot stall
//! the session (§3.7). The part of a handler before its first wait runs on the reader, so it
//! must not block, as for [`Service::request`].
//!
//! Routing is hand-written over `tether-spec`'s types rather than built on a JSON-RPC framework
//! such as jsonrpsee: measured on a 2-core machine, jsonrpsee's `RpcModule` dispatch cost about
//! 1.7 µs more per call and 40% of the throughput with 64 calls in flight, and its client cannot
//! serve requests on the same connection, which a Tether peer must.
//!
//! Handler futures must be `Send` (they are started with `tokio::spawn`), so a connection works
//! on a current-thread runtime (the fast path on small machines, and what [`crate::Plugin`] uses)
//! as well as on a multi-thread one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{
    encode_frame, format::show_bytes, parse_message, AttributedKind, Attribution, CancelParams,
    CancelRequest, EnvelopeError, ErrorObject, Frame, FrameCodec, GarbageReason, HandleParams, HandleRef, Id,
    InvokeParams, Message, NotificationMethod, Outcome, Release, Request, RequestMethod, Response, Retain,
    DEFAULT_MAX_FRAME_SIZE, SHOWN_BYTES,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::InterfaceServer;

/// What a request handler answers: the result object, already encoded, or an error.
pub type Reply = Result<Box<RawValue>, ErrorObject>;

/// A boxed, `Send` future of a [`Reply`].
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// How a [`Service`] handles a request: at once (no task is spawned), or later in its own task.
pub enum Handled {
    /// The answer is known now (lifecycle requests, errors, synchronous handlers).
    Now(Reply),
    /// The answer comes from a future, run in its own task, cancelled by `$/cancelRequest`.
    Later(ReplyFuture),
}

impl Handled {
    /// An immediate result, serialized.
    pub fn ok<T: Serialize>(result: &T) -> Self {
        Handled::Now(to_raw(result).map_err(ErrorObject::internal))
    }

    /// An immediate error.
    pub fn err(error: ErrorObject) -> Self {
        Handled::Now(Err(error))
    }

    /// A handler future.
    pub fn later(future: impl Future<Output = Reply> + Send + 'static) -> Self {
        Handled::Later(Box::pin(future))
    }
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handled::Now(reply) => f.debug_tuple("Now").field(reply).finish(),
            Handled::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// What serves the requests and notifications that reach one side of a connection.
///
/// The connection itself handles `$/cancelRequest` and the broker (`tether/invoke`,
/// `tether/retain`, `$/release`, SPEC.md §6); everything else comes here. [`crate::Router`] is a
/// ready-made implementation; the plugin side of [`crate::Plugin`] is another.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. Called on the reader task: it must not block, and should return
    /// [`Handled::Later`] for anything that waits.
    fn request(&self, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled;

    /// Handles one notification other than `$/cancelRequest` and `$/release` (for example
    /// `$/log` on a host). Called on the reader task: it must not block. Ignored by default.
    fn notification(&self, method: &str, params: Box<RawValue>, peer: &Peer) {
        let _ = (method, params, peer);
    }

    /// Called for every request before anything else (built-in broker requests included): an
    /// error stops the request there (for example -32002 before `tether/initialize`).
    fn gate(&self, method: &str) -> Option<ErrorObject> {
        let _ = method;
        None
    }
}

/// Something the reader saw that is not a normal message, for the owner to log (SPEC.md §2.6,
/// §3.4). The session goes on after each, except [`Event::EndOfInput`] and a truncated frame.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Bytes that are not a frame were skipped.
    Garbage {
        /// The bytes, escaped and shortened to [`SHOWN_BYTES`] with [`show_bytes`].
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
        }
    }
}

type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// Settings of a connection.
#[derive(Clone)]
pub struct Options {
    max_frame_size: usize,
    default_timeout: Option<Duration>,
    on_event: Option<EventHook>,
    close_on_eof: bool,
    max_write_backlog: Option<usize>,
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
    /// [`Peer::set_max_frame_size`]).
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
    /// [`CloseKind::EndOfInput`] (the default). A host that wants to fail them with a better
    /// reason (the exit status, the last lines of stderr) turns this off, waits for the process,
    /// and calls [`Peer::close`]; the reader then reports [`Event::EndOfInput`].
    pub fn close_on_eof(mut self, close: bool) -> Self {
        self.close_on_eof = close;
        self
    }

    /// Stops reading while more than `bytes` of answers and requests wait to be written (the
    /// other side is not reading them), and reads again once they are written: the memory
    /// held for a peer that stops reading stays bounded. Off by default. A plugin turns it on
    /// ([`crate::Plugin`] does); a host leaves it off, since two sides that both stop reading
    /// when their output backs up can wait on each other for ever.
    pub fn max_write_backlog(mut self, bytes: usize) -> Self {
        self.max_write_backlog = Some(bytes);
        self
    }

    /// The bound set with [`Options::max_write_backlog`], if any.
    pub(crate) fn write_backlog_limit(&self) -> Option<usize> {
        self.max_write_backlog
    }

    /// The maximum frame size set with [`Options::max_frame_size`].
    pub(crate) fn frame_size_limit(&self) -> usize {
        self.max_frame_size
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// The input reached end of file between frames.
    EndOfInput,
    /// The input ended in the middle of a frame.
    Truncated,
    /// Reading failed.
    ReadFailed,
    /// Writing failed (the other side closed its input, for example).
    WriteFailed,
    /// The owner called [`Peer::close`].
    Closed,
}

/// Why a session ended, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The kind of end.
    pub kind: CloseKind,
    /// What happened, for messages (a host may put the exit status and stderr here).
    pub message: Arc<str>,
}

impl CloseReason {
    /// A reason.
    pub fn new(kind: CloseKind, message: impl Into<Arc<str>>) -> Self {
        CloseReason { kind, message: message.into() }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why an outgoing call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other side answered with an error.
    #[error("{0}")]
    Remote(ErrorObject),
    /// No answer came within the time-out; `$/cancelRequest` was sent.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The call was cancelled (the handler that made it was cancelled); `$/cancelRequest` was
    /// sent.
    #[error("the call was cancelled")]
    Cancelled,
    /// The session ended before the answer came.
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    /// The request would have been a frame above the maximum size; nothing was written.
    #[error("the request is {len} bytes, above the maximum frame size of {max}; it was not sent")]
    RequestTooLarge {
        /// The body's length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The answer was a frame above the maximum size; it was skipped.
    #[error("the answer is {size} bytes, above the maximum frame size of {max}")]
    ResponseTooLarge {
        /// Its declared length.
        size: u64,
        /// The maximum in force.
        max: usize,
    },
    /// The params could not be serialized.
    #[error("cannot serialize the params: {0}")]
    Serialize(String),
    /// The result does not have the expected type.
    #[error("unexpected result: {0}")]
    Deserialize(String),
}

impl CallError {
    /// The remote error object, when the other side answered with an error.
    pub fn remote(&self) -> Option<&ErrorObject> {
        match self {
            CallError::Remote(e) => Some(e),
            _ => None,
        }
    }

    /// The error an intermediate handler answers when a call it made failed: a remote error
    /// as is, -32800 for a cancelled call, -32603 otherwise.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            CallError::Remote(e) => e.clone(),
            CallError::Cancelled => ErrorObject::cancelled(),
            other => ErrorObject::internal(other),
        }
    }
}

impl From<CallError> for ErrorObject {
    fn from(e: CallError) -> Self {
        e.to_error_object()
    }
}

/// Encodes a value as a raw JSON value.
pub(crate) fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(value)
}

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON, so the default (`null`) is never used.
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

type PendingResult = Result<Box<RawValue>, CallError>;

struct Pending {
    /// `None` once the caller stopped waiting (a time-out, a cancel): the late answer is
    /// consumed quietly and only ends the scope of the handles the call carried.
    tx: Option<oneshot::Sender<PendingResult>>,
    handles: Vec<String>,
}

struct HandleEntry {
    server: Arc<dyn InterfaceServer>,
    scopes: usize,
    retained: bool,
}

#[derive(Default)]
struct HandleTable {
    next: u64,
    entries: HashMap<String, HandleEntry>,
}

/// Adds to `found` the ids of the handles written in `params` (`{"$handle":"h1",...}`, the form
/// serde writes [`HandleRef`] in) that are not in it yet.
fn handles_in(params: &str, found: &mut Vec<String>) {
    const MARK: &str = r#""$handle":""#;
    let mut rest = params;
    while let Some(at) = rest.find(MARK) {
        rest = &rest[at + MARK.len()..];
        let Some(end) = rest.find('"') else { break };
        let id = &rest[..end];
        if !found.iter().any(|h| h == id) {
            found.push(id.to_owned());
        }
        rest = &rest[end..];
    }
}

/// A multiply-rotate hasher (the one rustc uses, "FxHash") for the maps keyed by request ids:
/// SipHash cost several hundred instructions per call on them. The ids of `pending` are minted
/// by this side; those of `incoming` come from the peer, which could at worst slow down its own
/// requests by choosing colliding ids.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

/// A map with the cheap [`IdHasher`], for keys the peer cannot use to slow down anyone else.
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

struct Shared {
    queue: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicI64,
    pending: Mutex<IdMap<i64, Pending>>,
    incoming: Mutex<IdMap<Id, CancellationToken>>,
    /// Handlers being polled for the first time on the reader, not in `incoming` (yet): they
    /// count as running for [`Peer::in_flight`], as a spawned handler does.
    polling: AtomicUsize,
    idle: Notify,
    handles: Mutex<HandleTable>,
    max_frame: AtomicUsize,
    /// How many handles this side serves: when none, params are not searched for handles.
    live_handles: AtomicUsize,
    accepting: AtomicBool,
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
    options: Options,
    service: Arc<dyn Service>,
    /// Bytes queued for the writer and not written yet (counted with `max_write_backlog` only).
    backlog: AtomicUsize,
    /// Signalled by the writer when the backlog falls to the limit.
    drained: Notify,
}

/// Locks a mutex, going on with the data when a panicking thread poisoned it (the maps stay
/// consistent: every critical section is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts connections.
#[derive(Debug)]
pub struct Connection(());

impl Connection {
    /// Starts a session over `reader` and `writer` (for example a child's stdout and stdin, or
    /// the two halves of a `tokio::io::duplex`), serving incoming requests with `service`.
    ///
    /// Must be called within a tokio runtime. Returns the [`Peer`] to make calls with, and the
    /// writer task's handle, which ends (with the reason) once the session is closed and the
    /// last answers are written.
    pub fn spawn<R, W>(
        reader: R,
        writer: W,
        options: Options,
        service: impl Service,
    ) -> (Peer, JoinHandle<CloseReason>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(IdMap::default()),
            incoming: Mutex::new(IdMap::default()),
            polling: AtomicUsize::new(0),
            idle: Notify::new(),
            handles: Mutex::new(HandleTable::default()),
            max_frame: AtomicUsize::new(options.max_frame_size),
            live_handles: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            token: CancellationToken::new(),
            reason: OnceLock::new(),
            options,
            service: Arc::new(service),
            backlog: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        tokio::spawn(read_loop(reader, shared.clone()));
        let driver = tokio::spawn(write_loop(writer, rx, shared.clone()));
        (Peer { shared, parent: None }, driver)
    }
}

/// One side's handle on a session: make calls, send notifications, serve handles, close.
///
/// Cheap to clone. A `Peer` taken from a [`RequestContext`] is tied to that request: when the
/// request is cancelled, the calls made through it are cancelled too (SPEC.md §7.2).
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
    parent: Option<CancellationToken>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("closed", &self.shared.token.is_cancelled()).finish_non_exhaustive()
    }
}

impl Peer {
    /// Calls a typed method: `peer.call::<kv::Get>(&params).await`, or with a time-out,
    /// `peer.call::<kv::Get>(&params).timeout(d).await`.
    pub fn call<M: RequestMethod>(&self, params: &M::Params) -> Call<M::Result> {
        Call::new(self.clone(), Cow::Borrowed(M::METHOD), encode_params(params))
    }

    /// Calls a method by name with params already encoded; the result stays encoded.
    pub fn call_raw(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: Box<RawValue>,
    ) -> Call<Box<RawValue>> {
        Call::new(self.clone(), method.into(), Ok(params))
    }

    /// Calls a method by name with any serializable params and result type.
    pub fn call_as<P: Serialize + ?Sized, R>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: &P,
    ) -> Call<R> {
        Call::new(self.clone(), method.into(), encode_params(params))
    }

    /// Sends a typed notification.
    pub fn notify<N: NotificationMethod>(&self, params: &N::Params) -> Result<(), CallError> {
        let params = encode_params(params)?;
        self.notify_raw(N::METHOD, &params)
    }

    /// Sends a notification with params already encoded.
    pub fn notify_raw(&self, method: &str, params: &RawValue) -> Result<(), CallError> {
        let mut body = Vec::with_capacity(40 + method.len() + params.get().len());
        body.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
        write_json_str(&mut body, method);
        body.extend_from_slice(br#","params":"#);
        body.extend_from_slice(params.get().as_bytes());
        body.push(b'}');
        self.shared.send(body)
    }

    /// Serves `server` as a handle (SPEC.md §6) and returns the reference to put in params.
    ///
    /// Put the reference in the params of a request: the handle is then scoped to that request
    /// (found in its params when it is sent) and expires when the answer arrives, unless the
    /// holder retains it (SPEC.md §6.3). A handle that no request carries lives until
    /// [`Peer::revoke_handle`] or the end of the session.
    pub fn serve_handle(&self, server: impl InterfaceServer) -> HandleRef {
        let interface = server.name().to_owned();
        let mut table = lock(&self.shared.handles);
        table.next += 1;
        let id = format!("h{}", table.next);
        table
            .entries
            .insert(id.clone(), HandleEntry { server: Arc::new(server), scopes: 0, retained: false });
        self.shared.live_handles.store(table.entries.len(), Ordering::Relaxed);
        HandleRef::new(id, interface)
    }

    /// Stops serving a handle now.
    pub fn revoke_handle(&self, handle: &HandleRef) {
        let mut table = lock(&self.shared.handles);
        table.entries.remove(&handle.handle);
        self.shared.live_handles.store(table.entries.len(), Ordering::Relaxed);
    }

    /// Whether this side still serves the handle (for tests and diagnostics).
    pub fn serves_handle(&self, handle: &HandleRef) -> bool {
        lock(&self.shared.handles).entries.contains_key(&handle.handle)
    }

    /// Asks the owner of a handle this side received to keep it alive after the call that
    /// carried it (SPEC.md §6.3); send it before answering that call.
    pub async fn retain(&self, handle: &HandleRef) -> Result<(), CallError> {
        self.call::<Retain>(&HandleParams { handle: handle.handle.clone() }).await.map(|_| ())
    }

    /// Tells the owner this side is done with a retained handle.
    pub fn release(&self, handle: &HandleRef) -> Result<(), CallError> {
        self.notify::<Release>(&HandleParams { handle: handle.handle.clone() })
    }

    /// Calls `method` (a short name such as `sum`) on a handle the other side owns, through
    /// `tether/invoke`.
    pub fn invoke<P: Serialize + ?Sized, R>(&self, handle: &HandleRef, method: &str, params: &P) -> Call<R> {
        let params = encode_params(params).and_then(|params| {
            encode_params(&InvokeParams { handle: handle.handle.clone(), method: method.to_owned(), params })
        });
        Call::new(self.clone(), Cow::Borrowed(tether_spec::Invoke::METHOD), params)
    }

    /// Changes the maximum frame size for both directions (after `tether/initialize`).
    pub fn set_max_frame_size(&self, max: usize) {
        self.shared.max_frame.store(max, Ordering::Relaxed);
    }

    /// The maximum frame size in force.
    pub fn max_frame_size(&self) -> usize {
        self.shared.max_frame.load(Ordering::Relaxed)
    }

    /// Stops accepting requests: every request that arrives from now on is answered with
    /// -32005 (shutting down, SPEC.md §4.6). Requests already running go on.
    pub fn stop_accepting(&self) {
        self.shared.accepting.store(false, Ordering::Relaxed);
    }

    /// The number of incoming requests whose handlers are running.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Waits until at most `keep` incoming requests are running (a shutdown handler waits for
    /// the others with `keep = 1`).
    pub async fn wait_in_flight(&self, keep: usize) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() <= keep || self.shared.token.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Ends the session: pending calls fail with [`CallError::Closed`] and `reason`, running
    /// handlers are cancelled, the reader stops and the writer writes what is queued and closes
    /// its stream. The first reason given (or found by the reader) is kept.
    pub fn close(&self, reason: impl Into<Arc<str>>) {
        self.shared.close(CloseReason::new(CloseKind::Closed, reason));
    }

    /// Ends the session with a reason of any kind (see [`Peer::close`]).
    pub fn close_with(&self, reason: CloseReason) {
        self.shared.close(reason);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().cloned()
    }

    /// Waits for the end of the session and says why.
    pub async fn closed(&self) -> CloseReason {
        self.shared.token.cancelled().await;
        self.shared.close_reason()
    }

    /// The cancellation token of the request this peer was taken from, if any.
    pub fn parent_token(&self) -> Option<&CancellationToken> {
        self.parent.as_ref()
    }

    /// The same session, not tied to any request.
    pub fn detached(&self) -> Peer {
        Peer { shared: self.shared.clone(), parent: None }
    }
}

fn encode_params<P: Serialize + ?Sized>(params: &P) -> Result<Box<RawValue>, CallError> {
    to_raw(params).map_err(|e| CallError::Serialize(e.to_string()))
}

/// An outgoing call, not sent until awaited. Set a time-out or the handles it carries first.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<R> {
    peer: Peer,
    method: Cow<'static, str>,
    params: Result<Box<RawValue>, CallError>,
    timeout: Option<Duration>,
    handles: Vec<String>,
    result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call").field("method", &self.method).field("timeout", &self.timeout).finish()
    }
}

impl<R> Call<R> {
    fn new(peer: Peer, method: Cow<'static, str>, params: Result<Box<RawValue>, CallError>) -> Self {
        let timeout = peer.shared.options.default_timeout;
        Call { peer, method, params, timeout, handles: Vec::new(), result: PhantomData }
    }

    /// Fails the call with [`CallError::Timeout`] (and sends `$/cancelRequest`) when no answer
    /// comes within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Scopes a handle served with [`Peer::serve_handle`] to this call: it expires when the
    /// answer arrives, unless the holder retained it (SPEC.md §6.3). Handles written in the
    /// params are found and scoped without it; this is for a handle the params do not show.
    pub fn handle(mut self, handle: &HandleRef) -> Self {
        self.handles.push(handle.handle.clone());
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for Call<R> {
    type Output = Result<R, CallError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, CallError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let raw = self
                .peer
                .shared
                .request(self.method, self.params?, self.handles, &self.peer, self.timeout)
                .await?;
            serde_json::from_str(raw.get()).map_err(|e| CallError::Deserialize(e.to_string()))
        })
    }
}

/// Sends `$/cancelRequest` when a call stops waiting before its answer came.
struct CancelGuard<'a> {
    shared: &'a Arc<Shared>,
    id: i64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let waiting = lock(&self.shared.pending).get_mut(&self.id).map(|p| p.tx.take()).is_some();
        if waiting && !self.shared.token.is_cancelled() {
            let params = CancelParams { id: Id::Int(self.id) };
            if let Ok(params) = to_raw(&params) {
                let _ = (Peer { shared: self.shared.clone(), parent: None })
                    .notify_raw(CancelRequest::METHOD, &params);
            }
        }
    }
}

/// Whether a string is written in JSON as itself between quotes (nothing to escape).
fn plain_json_str(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if plain_json_str(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes an integer in decimal without the `String` that `to_string` would allocate.
fn write_int(out: &mut Vec<u8>, n: i64) {
    tether_spec::format::put_int(out, n);
}

fn write_id(out: &mut Vec<u8>, id: &Id) {
    match id {
        Id::Int(n) => write_int(out, *n),
        Id::Str(s) => write_json_str(out, s),
    }
}

impl Shared {
    fn send(&self, body: Vec<u8>) -> Result<(), CallError> {
        let max = self.max_frame.load(Ordering::Relaxed);
        if body.len() > max {
            return Err(CallError::RequestTooLarge { len: body.len(), max });
        }
        self.enqueue(Outgoing::Body(body)).map_err(|()| CallError::Closed(self.close_reason()))
    }

    /// Queues a message for the writer, counting it in the backlog when that is bounded.
    fn enqueue(&self, out: Outgoing) -> Result<(), ()> {
        if self.options.max_write_backlog.is_none() {
            // Unbounded (a host): no counting on the hot path.
            return self.queue.send(out).map_err(|_| ());
        }
        let weight = out.weight();
        self.backlog.fetch_add(weight, Ordering::Relaxed);
        self.queue.send(out).map_err(|_| {
            self.backlog.fetch_sub(weight, Ordering::Relaxed);
        })
    }

    /// The writer wrote messages of `weight` bytes in all.
    fn written(&self, weight: usize) {
        if let Some(limit) = self.options.max_write_backlog {
            let before = self.backlog.fetch_sub(weight, Ordering::Relaxed);
            if before > limit && before - weight <= limit {
                self.drained.notify_waiters();
            }
        }
    }

    /// Waits while the backlog is above its bound; false when the session closed meanwhile.
    async fn backlog_below_limit(&self) -> bool {
        let Some(limit) = self.options.max_write_backlog else { return true };
        if self.backlog.load(Ordering::Relaxed) <= limit {
            return true;
        }
        loop {
            let drained = self.drained.notified();
            if self.backlog.load(Ordering::Relaxed) <= limit {
                return true;
            }
            tokio::select! {
                () = drained => {}
                () = self.token.cancelled() => return false,
            }
        }
    }

    fn in_flight(&self) -> usize {
        // Read `incoming` first: a handler moves from `polling` into `incoming` before it
        // leaves `polling`, so it is never missed.
        let spawned = lock(&self.incoming).len();
        spawned + self.polling.load(Ordering::SeqCst)
    }

    fn close_reason(&self) -> CloseReason {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| CloseReason::new(CloseKind::Closed, "the connection is closed"))
    }

    fn event(&self, event: Event) {
        if let Some(hook) = &self.options.on_event {
            hook(&event);
        }
    }

    fn end_scopes(&self, ids: &[String]) {
        let mut table = lock(&self.handles);
        for id in ids {
            if let Some(entry) = table.entries.get_mut(id) {
                entry.scopes = entry.scopes.saturating_sub(1);
                if entry.scopes == 0 && !entry.retained {
                    table.entries.remove(id);
                }
            }
        }
        self.live_handles.store(table.entries.len(), Ordering::Relaxed);
    }

    fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
        let reason = self.close_reason();
        let drained: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        for pending in drained {
            if let Some(tx) = pending.tx {
                let _ = tx.send(Err(CallError::Closed(reason.clone())));
            }
        }
        lock(&self.handles).entries.clear();
        self.live_handles.store(0, Ordering::Relaxed);
        self.idle.notify_waiters();
    }

    async fn request(
        self: &Arc<Self>,
        method: Cow<'static, str>,
        params: Box<RawValue>,
        mut handles: Vec<String>,
        peer: &Peer,
        timeout: Option<Duration>,
    ) -> Result<Box<RawValue>, CallError> {
        if self.live_handles.load(Ordering::Relaxed) > 0 {
            handles_in(params.get(), &mut handles);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (out, len) = if plain_json_str(&method) {
            // The writer puts the envelope around the params as it frames them: the params are
            // copied once (into the write buffer), not into a body first.
            let len = REQUEST_HEAD.len()
                + int_len(id)
                + REQUEST_METHOD.len()
                + method.len()
                + REQUEST_PARAMS.len()
                + params.get().len()
                + 1;
            (Outgoing::Request { id, method, params }, len)
        } else {
            let mut body = Vec::with_capacity(48 + method.len() + params.get().len());
            body.extend_from_slice(REQUEST_HEAD);
            write_int(&mut body, id);
            body.extend_from_slice(br#","method":"#);
            write_json_str(&mut body, &method);
            body.extend_from_slice(br#","params":"#);
            body.extend_from_slice(params.get().as_bytes());
            body.push(b'}');
            let len = body.len();
            (Outgoing::Body(body), len)
        };
        let max = self.max_frame.load(Ordering::Relaxed);
        if len > max {
            return Err(CallError::RequestTooLarge { len, max });
        }
        if let Some(parent) = &peer.parent {
            if parent.is_cancelled() {
                return Err(CallError::Cancelled);
            }
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if self.token.is_cancelled() {
                return Err(CallError::Closed(self.close_reason()));
            }
            if !handles.is_empty() {
                let mut table = lock(&self.handles);
                for h in &handles {
                    if let Some(entry) = table.entries.get_mut(h) {
                        entry.scopes += 1;
                    }
                }
            }
            pending.insert(id, Pending { tx: Some(tx), handles });
        }
        let mut guard = CancelGuard { shared: self, id, armed: true };
        if self.enqueue(out).is_err() {
            guard.armed = false;
            return Err(CallError::Closed(self.close_reason()));
        }
        let parent_cancelled = async {
            match &peer.parent {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let timed_out = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            biased;
            answer = rx => {
                guard.armed = false;
                answer.unwrap_or_else(|_| Err(CallError::Closed(self.close_reason())))
            }
            () = parent_cancelled => Err(CallError::Cancelled),
            () = timed_out => Err(CallError::Timeout(timeout.unwrap_or_default())),
        };
        outcome
    }

    fn respond(&self, id: Id, reply: Reply) {
        let body = match (&id, reply) {
            (&Id::Int(n), Ok(result)) => {
                // The writer puts the envelope around the result as it frames it: no body is
                // built here, so the result is copied once (into the write buffer), not twice.
                let len = RESULT_HEAD.len() + int_len(n) + RESULT_MID.len() + result.get().len() + 1;
                let max = self.max_frame.load(Ordering::Relaxed);
                if len <= max {
                    let _ = self.enqueue(Outgoing::Result { id: n, result });
                    return;
                }
                let error = ErrorObject::internal(format!(
                    "the result is {len} bytes, above the maximum frame size of {max}"
                ));
                let _ = self.send(Message::Response(Response::error(Some(id), error)).to_body());
                return;
            }
            (_, Ok(result)) => {
                let mut body = Vec::with_capacity(40 + result.get().len());
                body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
                write_id(&mut body, &id);
                body.extend_from_slice(br#","result":"#);
                body.extend_from_slice(result.get().as_bytes());
                body.push(b'}');
                body
            }
            (_, Err(error)) => Message::Response(Response::error(Some(id.clone()), error)).to_body(),
        };
        if let Err(CallError::RequestTooLarge { len, max }) = self.send(body) {
            let error = ErrorObject::internal(format!(
                "the result is {len} bytes, above the maximum frame size of {max}"
            ));
            let _ = self.send(Message::Response(Response::error(Some(id), error)).to_body());
        }
    }

    fn on_frame(self: &Arc<Self>, frame: Frame) {
        match frame {
            Frame::Message(body) => match parse_message(&body) {
                Ok(Message::Request(request)) => self.on_request(request),
                Ok(Message::Notification(n)) => self.on_notification(&n.method, n.params),
                Ok(Message::Response(response)) => self.on_response(response),
                Err(error) => {
                    if let Some(reply) = error.reply() {
                        let _ = self.send(Message::Response(reply).to_body());
                    }
                    self.event(Event::Invalid(error));
                }
            },
            Frame::Garbage { bytes, reason } => {
                self.event(Event::Garbage { shown: show_bytes(&bytes, SHOWN_BYTES), reason });
            }
            Frame::Oversized(oversized) => {
                let attribution = oversized.attribution();
                match &attribution {
                    Some(Attribution { id, kind: AttributedKind::Request }) => {
                        let error = ErrorObject::frame_too_large(oversized.declared, oversized.max as u64);
                        self.respond(id.clone(), Err(error));
                    }
                    Some(Attribution {
                        id: Id::Int(n),
                        kind: AttributedKind::Response | AttributedKind::Unknown,
                    }) => {
                        let pending = lock(&self.pending).remove(n);
                        if let Some(pending) = pending {
                            self.end_scopes(&pending.handles);
                            if let Some(tx) = pending.tx {
                                let _ = tx.send(Err(CallError::ResponseTooLarge {
                                    size: oversized.declared,
                                    max: oversized.max,
                                }));
                            }
                        }
                    }
                    _ => {}
                }
                self.event(Event::Oversized {
                    declared: oversized.declared,
                    max: oversized.max,
                    attribution,
                });
            }
            Frame::Truncated(bytes) => {
                self.event(Event::Truncated { shown: show_bytes(&bytes, SHOWN_BYTES) });
            }
            // This connection never negotiates attachments, and the codec yields these only once
            // told they are (FrameCodec::set_attachments).
            Frame::Attached(_) | Frame::BadAttachments { .. } => {}
        }
    }

    fn on_response(&self, response: Response) {
        let pending = match &response.id {
            Some(Id::Int(n)) => lock(&self.pending).remove(n),
            _ => None,
        };
        let Some(pending) = pending else {
            if let Some(id) = response.id {
                self.event(Event::UnknownResponse(id));
            }
            return;
        };
        if !pending.handles.is_empty() {
            self.end_scopes(&pending.handles);
        }
        if let Some(tx) = pending.tx {
            let _ = tx.send(match response.outcome {
                Outcome::Result(result) => Ok(result),
                Outcome::Error(error) => Err(CallError::Remote(error)),
            });
        }
    }

    fn on_notification(self: &Arc<Self>, method: &str, params: Box<RawValue>) {
        match method {
            CancelRequest::METHOD => {
                if let Ok(p) = serde_json::from_str::<CancelParams>(params.get()) {
                    if let Some(token) = lock(&self.incoming).get(&p.id) {
                        token.cancel();
                    }
                }
            }
            Release::METHOD => {
                if let Ok(p) = serde_json::from_str::<HandleParams>(params.get()) {
                    let mut table = lock(&self.handles);
                    if let Some(entry) = table.entries.get_mut(&p.handle) {
                        entry.retained = false;
                        if entry.scopes == 0 {
                            table.entries.remove(&p.handle);
                        }
                        self.live_handles.store(table.entries.len(), Ordering::Relaxed);
                    }
                }
            }
            _ => {
                let peer = Peer { shared: self.clone(), parent: None };
                let service = self.service.clone();
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    service.notification(method, params, &peer)
                }));
            }
        }
    }

    fn on_request(self: &Arc<Self>, request: Request) {
        let Request { id, method, params, .. } = request;
        if !self.accepting.load(Ordering::Relaxed) {
            return self.respond(id, Err(ErrorObject::shutting_down()));
        }
        if let Some(error) = self.service.gate(&method) {
            return self.respond(id, Err(error));
        }
        let token = self.token.child_token();
        let cx = RequestContext {
            id: id.clone(),
            peer: Peer { shared: self.clone(), parent: Some(token.clone()) },
        };
        let handled = match method.as_str() {
            tether_spec::Invoke::METHOD => self.on_invoke(&params, cx),
            Retain::METHOD => match serde_json::from_str::<HandleParams>(params.get()) {
                Err(e) => Handled::err(ErrorObject::invalid_params(e)),
                Ok(p) => match lock(&self.handles).entries.get_mut(&p.handle) {
                    Some(entry) => {
                        entry.retained = true;
                        Handled::Now(Ok(empty_object()))
                    }
                    None => Handled::err(ErrorObject::unknown_handle(&p.handle)),
                },
            },
            _ => {
                let service = &self.service;
                std::panic::catch_unwind(AssertUnwindSafe(|| service.request(&method, params, cx)))
                    .unwrap_or_else(|panic| Handled::err(ErrorObject::internal(panic_message(&panic))))
            }
        };
        match handled {
            Handled::Now(reply) => self.respond(id, reply),
            Handled::Later(mut future) => {
                // Most handlers finish without waiting (an in-memory store, an uncontended
                // lock): poll the future once here and answer at once, which saves the task,
                // its wake-up and the `incoming` entry (about 2k instructions per call). The
                // spawned task below polls it first thing with its own waker, so a future that
                // is not ready loses nothing by this first poll with a no-op waker. The order
                // is the task's (the future before the token, `biased`), and a panic is caught
                // the same way.
                let mut poll_cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
                self.polling.fetch_add(1, Ordering::SeqCst);
                let first = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut poll_cx)));
                let ready = match first {
                    Ok(std::task::Poll::Ready(reply)) => Some(reply),
                    Ok(std::task::Poll::Pending) => None,
                    Err(panic) => Some(Err(ErrorObject::internal(panic_message(&panic)))),
                };
                if let Some(reply) = ready {
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    token.cancel();
                    self.respond(id, reply);
                    self.polling.fetch_sub(1, Ordering::SeqCst);
                    self.idle.notify_waiters();
                    return;
                }
                lock(&self.incoming).insert(id.clone(), token.clone());
                self.polling.fetch_sub(1, Ordering::SeqCst);
                let shared = self.clone();
                tokio::spawn(async move {
                    let reply = tokio::select! {
                        biased;
                        reply = AssertUnwindSafe(future).catch_unwind() => {
                            reply.unwrap_or_else(|panic| Err(ErrorObject::internal(panic_message(&panic))))
                        }
                        () = token.cancelled() => Err(ErrorObject::cancelled()),
                    };
                    // Cancel what the handler started and is still waiting for (SPEC.md §7.2).
                    token.cancel();
                    shared.respond(id.clone(), reply);
                    lock(&shared.incoming).remove(&id);
                    shared.idle.notify_waiters();
                });
            }
        }
    }

    fn on_invoke(&self, params: &RawValue, cx: RequestContext) -> Handled {
        let invoke = match serde_json::from_str::<InvokeParams>(params.get()) {
            Ok(invoke) => invoke,
            Err(e) => return Handled::err(ErrorObject::invalid_params(e)),
        };
        let server = lock(&self.handles).entries.get(&invoke.handle).map(|e| e.server.clone());
        let Some(server) = server else {
            return Handled::err(ErrorObject::unknown_handle(&invoke.handle));
        };
        let version = server.versions().iter().copied().max().unwrap_or(1);
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            server.dispatch(version, &invoke.method, invoke.params, cx)
        }))
        .unwrap_or_else(|panic| Handled::err(ErrorObject::internal(panic_message(&panic))))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("the handler panicked: {text}")
}

/// What a handler knows about the request it serves.
#[derive(Clone)]
pub struct RequestContext {
    id: Id,
    peer: Peer,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RequestContext {
    /// The request's id.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The session, tied to this request: calls made through it are cancelled with it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The request's cancellation token: fired by `$/cancelRequest`, or when the session ends.
    pub fn token(&self) -> &CancellationToken {
        // A context's peer always has a parent token; the fallback is the session's.
        self.peer.parent.as_ref().unwrap_or(&self.peer.shared.token)
    }

    /// Whether the request was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token().is_cancelled()
    }

    /// A typed client for a handle the other side passed in this request's params:
    /// `cx.client::<AdderClient>(params.adder).sum(&p).await`.
    pub fn client<C: crate::Client>(&self, handle: HandleRef) -> C {
        C::from_remote(crate::Remote::handle(self.peer.clone(), handle))
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, shared: Arc<Shared>) {
    let mut codec = FrameCodec::builder().max_frame_size(shared.max_frame.load(Ordering::Relaxed)).build();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            // Every frame may add to the backlog: look before each one, not only before reading.
            if !shared.backlog_below_limit().await {
                return;
            }
            // `tether/initialize` changes the maximum synchronously: read the next frame with it.
            codec.set_max_frame_size(shared.max_frame.load(Ordering::Relaxed));
            match codec.decode_frame(&mut buf) {
                Some(frame) => shared.on_frame(frame),
                None => break,
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            read = reader.read_buf(&mut buf) => read,
            () = shared.token.cancelled() => return,
        };
        match read {
            Ok(0) => {
                let mut kind = CloseKind::EndOfInput;
                while let Some(frame) = codec.decode_last(&mut buf) {
                    if matches!(frame, Frame::Truncated(_)) {
                        kind = CloseKind::Truncated;
                    }
                    shared.on_frame(frame);
                }
                if shared.options.close_on_eof {
                    let message = match kind {
                        CloseKind::Truncated => "the input ended in the middle of a frame",
                        _ => "the input reached end of file",
                    };
                    shared.close(CloseReason::new(kind, message));
                } else {
                    shared.event(Event::EndOfInput);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.close(CloseReason::new(CloseKind::ReadFailed, format!("reading failed: {e}")));
                return;
            }
        }
    }
}

/// The lenient codec never fails; these wrappers make that explicit.
trait DecodeExt {
    fn decode_frame(&mut self, buf: &mut BytesMut) -> Option<Frame>;
    fn decode_last(&mut self, buf: &mut BytesMut) -> Option<Frame>;
}

impl DecodeExt for FrameCodec {
    fn decode_frame(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        tokio_util::codec::Decoder::decode(self, buf).ok().flatten()
    }
    fn decode_last(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        tokio_util::codec::Decoder::decode_eof(self, buf).ok().flatten()
    }
}

/// A frame waiting for the writer.
enum Outgoing {
    /// A complete body.
    Body(Vec<u8>),
    /// A request whose method needs no escaping, put in its envelope by the writer.
    Request {
        /// The request's id.
        id: i64,
        /// The method, written between quotes as it is.
        method: Cow<'static, str>,
        /// The params.
        params: Box<RawValue>,
    },
    /// A successful response to an integer id, put in its envelope by the writer.
    Result {
        /// The request's id.
        id: i64,
        /// The result.
        result: Box<RawValue>,
    },
}

const RESULT_HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
const REQUEST_HEAD: &[u8] = RESULT_HEAD;
const REQUEST_METHOD: &[u8] = br#","method":""#;
const REQUEST_PARAMS: &[u8] = br#"","params":"#;
const RESULT_MID: &[u8] = br#","result":"#;

impl Outgoing {
    /// What the message counts for in the write backlog: its payload's size.
    fn weight(&self) -> usize {
        match self {
            Outgoing::Body(body) => body.len(),
            Outgoing::Request { params, .. } => params.get().len(),
            Outgoing::Result { result, .. } => result.get().len(),
        }
    }

    /// The body as three pieces written one after the other: the small head (built in
    /// `scratch`), the payload, and the tail.
    fn parts<'a>(&'a self, scratch: &'a mut Vec<u8>) -> (&'a [u8], &'a [u8], &'a [u8]) {
        match self {
            Outgoing::Body(body) => (&[], body, &[]),
            Outgoing::Request { id, method, params } => {
                scratch.clear();
                scratch.extend_from_slice(REQUEST_HEAD);
                write_int(scratch, *id);
                scratch.extend_from_slice(REQUEST_METHOD);
                scratch.extend_from_slice(method.as_bytes());
                scratch.extend_from_slice(REQUEST_PARAMS);
                (scratch, params.get().as_bytes(), b"}")
            }
            Outgoing::Result { id, result } => {
                scratch.clear();
                scratch.extend_from_slice(RESULT_HEAD);
                write_int(scratch, *id);
                scratch.extend_from_slice(RESULT_MID);
                (scratch, result.get().as_bytes(), b"}")
            }
        }
    }
}

/// The number of bytes `write_int` writes for `n`.
fn int_len(n: i64) -> usize {
    let digits = n.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1);
    digits + usize::from(n < 0)
}

/// Writes the header of a frame of `len` bytes in the writer form (SPEC.md §2.2).
fn frame_header(len: usize, dst: &mut BytesMut) {
    tether_spec::format::encode_frame_header(len, dst);
}

const BATCH_LIMIT: usize = 1 << 20;
const DIRECT_WRITE: usize = 256 * 1024;

async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    scratch: &mut Vec<u8>,
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut next = Some(first);
    let mut weight = 0;
    while let Some(out) = next.take() {
        weight += out.weight();
        let (head, payload, tail) = out.parts(scratch);
        let len = head.len() + payload.len() + tail.len();
        if len >= DIRECT_WRITE {
            // A large body is written from where it is rather than copied into the batch.
            let header = format!("Content-Length: {len}\r\n\r\n");
            buf.extend_from_slice(header.as_bytes());
            buf.extend_from_slice(head);
            writer.write_all(buf).await?;
            buf.clear();
            writer.write_all(payload).await?;
            buf.extend_from_slice(tail);
        } else if head.is_empty() && tail.is_empty() {
            encode_frame(payload, buf);
        } else {
            frame_header(len, buf);
            buf.extend_from_slice(head);
            buf.extend_from_slice(payload);
            buf.extend_from_slice(tail);
        }
        if buf.len() < BATCH_LIMIT {
            next = rx.try_recv().ok();
        }
    }
    writer.write_all(buf).await?;
    writer.flush().await?;
    shared.written(weight);
    buf.clear();
    if buf.capacity() > 4 * BATCH_LIMIT {
        *buf = BytesMut::with_capacity(64 * 1024);
    }
    Ok(())
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) -> CloseReason {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scratch = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            biased;
            first = rx.recv() => first,
            () = shared.token.cancelled() => None,
        };
        let Some(first) = first else { break };
        if let Err(e) = write_batch(&mut writer, &mut buf, &mut scratch, first, &mut rx, &shared).await {
            shared.close(CloseReason::new(CloseKind::WriteFailed, format!("writing failed: {e}")));
            return shared.close_reason();
        }
    }
    // Closed: write the answers of the handlers that are being cancelled, for a short while.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
    loop {
        tokio::task::yield_now().await;
        let first = match rx.try_recv() {
            Ok(first) => Some(first),
            Err(_) if shared.in_flight() == 0 => None,
            Err(_) => tokio::select! {
                first = rx.recv() => first,
                () = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some(first) = first else { break };
        if write_batch(&mut writer, &mut buf, &mut scratch, first, &mut rx, &shared).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    shared.close_reason()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_found_in_params() {
        let mut found = vec!["h1".to_owned()];
        handles_in(
            r#"{"a":{"$handle":"h1","interface":"x"},"b":[{"$handle":"h22","interface":"y"}]}"#,
            &mut found,
        );
        handles_in(r#"{"$handle":"#, &mut found);
        assert_eq!(found, ["h1", "h22"]);
    }

    #[test]
    fn bodies_are_written_in_the_writer_order() {
        let mut out = Vec::new();
        write_json_str(&mut out, "kv.put");
        write_json_str(&mut out, "a\"b");
        assert_eq!(out, br#""kv.put""a\"b""#);
        let mut out = Vec::new();
        write_id(&mut out, &Id::Int(-3));
        write_id(&mut out, &Id::from("x"));
        assert_eq!(out, br#"-3"x""#);
        for n in [0, 7, 9, 10, -1, -10, 99, 100, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(int_len(n), out.len());
        }
        let mut framed = BytesMut::new();
        frame_header(1234, &mut framed);
        assert_eq!(&framed[..], b"Content-Length: 1234\r\n\r\n");
        let result = RawValue::from_string(r#"{"a":1}"#.to_owned()).unwrap_or_default();
        let out = Outgoing::Result { id: -5, result };
        let mut scratch = Vec::new();
        let (head, payload, tail) = out.parts(&mut scratch);
        assert_eq!([head, payload, tail].concat(), br#"{"jsonrpc":"2.0","id":-5,"result":{"a":1}}"#);
        let params = RawValue::from_string(r#"{"key":"k"}"#.to_owned()).unwrap_or_default();
        let out = Outgoing::Request { id: 12, method: Cow::Borrowed("kv.get"), params };
        let (head, payload, tail) = out.parts(&mut scratch);
        assert_eq!(
            [head, payload, tail].concat(),
            br#"{"jsonrpc":"2.0","id":12,"method":"kv.get","params":{"key":"k"}}"#
        );
        assert!(plain_json_str("kv.get") && !plain_json_str("a\"b") && !plain_json_str("a\nb"));
    }
}
