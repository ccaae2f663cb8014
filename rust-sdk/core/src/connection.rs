//! The connection: one Tether session over any byte stream, for either role.
//!
//! [`Session::start`] starts two tasks on the current tokio runtime: a **reader** that decodes
//! frames with the lenient [`FrameCodec`] and routes each message, and a **writer** that drains
//! the queue of outgoing frames into one buffer and writes it with one `write` and one `flush`.
//! While the writer is idle, a call or an answer sent when nothing else is in flight is
//! written by the task that sends it (a non-blocking write), saving a task hop per message.
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
//! on a current-thread runtime (the fast path on small machines, and what the plugin SDK uses)
//! as well as on a multi-thread one.
//!
//! The pieces, each in its own module:
//!
//! - [`options`] and [`error`]: what a connection is given ([`Options`]) and what it reports
//!   ([`Event`], [`CloseReason`], [`CallError`]);
//! - [`service`]: what answers the other side ([`Service`], [`Handled`], [`RequestContext`]);
//! - [`peer`] and [`call`]: what makes calls ([`Peer`], [`Call`]);
//! - [`shared`]: the state the tasks and peers share, with the two ways out (a request, an
//!   answer);
//! - [`pending`]: the calls waiting for their answer, with [`progress`] (SPEC.md §14): where
//!   their `$/progress` go and the `_meta` calls carry; [`handles`]: the objects served as handles
//!   and their scopes (SPEC.md §6.3);
//! - [`envelope`]: the messages waiting for the writer, and the envelope written around
//!   payloads that are already encoded;
//! - [`reader`], [`dispatch`] and [`writer`]: the reader task, the routing of what it read, and
//!   the writer task; [`through`]: the gate where the idle writer leaves its stream, so that
//!   a message sent when nothing else is in flight is written by its sender, without the hop
//!   to the writer task.
//!
//! - [`messages`]: the message-level transport ([`Session::start_messages`]): whole messages
//!   handed to a [`MessageSink`] and taken from a [`MessageInput`] on the calling thread, with
//!   no reader or writer task (in-process plugins).
//! - [`blocking`]: frames over blocking streams ([`Session::start_blocking`]): read and
//!   dispatched on the thread that runs the input, written by their sender; what a plugin
//!   process runs on, with no reactor and no task woken per call.
//! - [`diagnostics`]: counts of what a session holds, for the fuzz target and tests.
//! - [`handover`]: the end of a session in one process and its resumption in another
//!   ([`Peer::detach`], [`Session::resume`]), for a host that hands its plugins to a successor.
//! - [`streams`]: the stream table beside `pending` and `handles` (SPEC.md §12), with
//!   [`stream_io`] routing the `$/stream.*` notifications to it; [`negotiated`]: what
//!   `tether/initialize` agreed on; [`scope`]: the thread-local scopes that let typed params and
//!   results carry attachments (SPEC.md §2.8) and stream fields without changing the typed API.

mod blocking;
mod call;
mod diagnostics;
mod dispatch;
mod envelope;
mod error;
mod handles;
mod handover;
mod local_tasks;
mod messages;
mod negotiated;
mod options;
mod peer;
mod pending;
mod progress;
mod reader;
pub(crate) mod scope;
mod service;
pub(crate) mod shared;
mod stream_io;
pub(crate) mod streams;
mod through;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::blocking::{BlockingInput, InputEnd};
pub use self::call::{Call, CallFuture};
pub use self::diagnostics::Diagnostics;
pub use self::error::{CallError, CloseKind, CloseReason};
pub use self::handover::{DetachError, Detached, Resume, HANDED_OVER};
pub use self::messages::{MessageInput, MessageSink};
pub use self::options::{Event, Options};
pub use self::peer::{Peer, WeakPeer};
pub use self::service::{Handled, Reply, ReplyFuture, RequestContext, Service};

use self::handles::HandleTable;
use self::negotiated::Negotiated;
use self::pending::PendingCalls;
use self::reader::read_loop;
use self::shared::Shared;
use self::streams::StreamTable;
use self::writer::write_loop;

/// One running session over a byte stream: the [`Peer`] to call the other side with, the end
/// of the session, and the writer task that flushes the last answers.
///
/// Dropping a `Session` does not end it: the tasks run on until the session closes (end of
/// input, [`Peer::close`]); keep a [`Peer`] (it is cheap to clone) to go on calling.
#[derive(Debug)]
pub struct Session {
    peer: Peer,
    writer: JoinHandle<CloseReason>,
}

impl Session {
    /// Starts a session over `reader` and `writer` (for example a child's stdout and stdin, or
    /// the two halves of a `tokio::io::duplex`), serving incoming requests with `service`.
    ///
    /// Must be called within a tokio runtime: it starts the reader and the writer tasks.
    pub fn start<R, W>(reader: R, writer: W, options: Options, service: impl Service) -> Session
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Session::launch(reader, writer, options, Arc::new(service), None)
    }

    /// Resumes, over `reader` and `writer`, a session that another process started and handed
    /// over ([`Peer::detach`] there): no `tether/initialize` is sent; request ids go on from
    /// `state.next_id`, the bytes the old reader had read and not parsed are read first, and
    /// what the handshake negotiated is taken from `state`. `options` should have the frame
    /// size the handshake agreed on.
    pub fn resume<R, W>(
        reader: R,
        writer: W,
        options: Options,
        service: impl Service,
        state: Resume,
    ) -> Session
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Session::launch(reader, writer, options, Arc::new(service), Some(state))
    }

    fn launch<R, W>(
        reader: R,
        writer: W,
        options: Options,
        service: Arc<dyn Service>,
        resume: Option<Resume>,
    ) -> Session
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = new_shared(queue, options, service, None);
        let mut unread = bytes::BytesMut::new();
        if let Some(state) = resume {
            shared.next_id.store(state.next_id.max(1), std::sync::atomic::Ordering::Relaxed);
            shared.negotiated.set(&state.own_capabilities, &state.peer_capabilities);
            if state.host {
                shared::lock(&shared.streams).set_opener(tether_spec::Opener::Host);
            }
            unread.extend_from_slice(&state.unread);
        }
        tokio::spawn(read_loop(reader, unread, shared.clone()));
        let writer = tokio::spawn(write_loop(writer, rx, shared.clone()));
        Session { peer: Peer::new(shared, None), writer }
    }

    /// The session's peer: make calls, send notifications, serve handles, close.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Takes the peer, leaving the tasks to run until the session closes.
    pub fn into_peer(self) -> Peer {
        self.peer
    }

    /// Waits for the end of the session (the last answers may still be being written) and
    /// says why it ended.
    pub async fn closed(&self) -> CloseReason {
        self.peer.closed().await
    }

    /// Waits until the session has ended and the writer has written what was queued (for at
    /// most a short while after the end) and closed its stream; says why the session ended.
    pub async fn join(self) -> CloseReason {
        match self.writer.await {
            Ok(reason) => reason,
            // The writer task panicked or was aborted: the session is over all the same.
            Err(_) => self.peer.closed().await,
        }
    }
}

/// The state of a new session: what it sends goes to `queue` (the writer task's), or to `sink`
/// when there is one (the message-level transport).
fn new_shared(
    queue: mpsc::UnboundedSender<self::envelope::Outgoing>,
    options: Options,
    service: Arc<dyn Service>,
    sink: Option<Arc<dyn MessageSink>>,
) -> Arc<Shared> {
    Arc::new(Shared {
        queue,
        next_id: AtomicI64::new(1),
        pending: Mutex::new(PendingCalls::default()),
        incoming: Mutex::new(FxHashMap::default()),
        polling: AtomicUsize::new(0),
        idle: Notify::new(),
        idle_watchers: AtomicUsize::new(0),
        handles: Mutex::new(HandleTable::default()),
        max_frame: AtomicUsize::new(options.max_frame_size),
        live_handles: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        token: CancellationToken::new(),
        reason: OnceLock::new(),
        options,
        service,
        backlog: AtomicUsize::new(0),
        drained: Notify::new(),
        // The side that sends `tether/initialize` turns out to be the host (odd ids); until
        // then a side is taken for a plugin.
        streams: Mutex::new(StreamTable::new(tether_spec::Opener::Plugin)),
        negotiated: Negotiated::default(),
        initialize: Mutex::new(None),
        detaching: AtomicBool::new(false),
        reader_detach: CancellationToken::new(),
        reader_back: Mutex::new(None),
        writer_detach: CancellationToken::new(),
        writer_back: Mutex::new(None),
        sink,
        gate: Mutex::new(self::through::Gate::default()),
    })
}
