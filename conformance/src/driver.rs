//! The judge's own strict driver: it starts a plugin, writes frames to its stdin and reads every
//! byte of its stdout with a strict [`FrameCodec`] (`FrameCodec::builder().strict()`).
//!
//! This module deliberately duplicates what the `tether` SDK and the `tether-host` crate do: it
//! is built on the wire types of `tether-spec` and nothing else, so that a bug in the SDK or the
//! host cannot hide the same bug in a plugin (a host that tolerates a wrong frame would let a
//! plugin that writes one pass). Do not replace it with either crate.
//!
//! Every plugin runs in its own process group; [`Session::finish`] (or dropping the session)
//! kills the group, so no process is left behind whatever the plugin does.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::value::RawValue;
use serde_json::Value;
use tether_spec::{
    encode_frame, format::show_bytes, parse_message, CancelRequest, ErrorObject, Frame, FrameCodec, Id,
    InitializeParams, LogLevel, LogParams, MagicCookie, Message, Notification, NotificationMethod, Outcome,
    PeerInfo, Request, RequestMethod, Response, SHOWN_BYTES, TRANSPORT_ENV,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use crate::procs;

mod attach;
mod fds;

pub(crate) use attach::ATTACHMENTS_HEADER;

/// How a plugin is started.
#[derive(Debug, Clone)]
pub(crate) struct PluginSpec {
    /// The program and its arguments.
    pub(crate) argv: Vec<String>,
    /// The cookie to set (its variable is always removed from the inherited environment first).
    pub(crate) cookie: MagicCookie,
    /// Which descriptors carry the frames (SPEC.md §13).
    pub(crate) transport: Wire,
    /// The application interfaces (`--interface-file`) whose messages are kept in
    /// [`Observations::iface_messages`], for `iface.<name>.messages-valid`.
    pub(crate) watch: Vec<String>,
}

/// What kind of message on a watched interface the plugin sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeenKind {
    /// The result of one of the interface's methods, which the judge called.
    Result,
    /// An error answer to one of them, with its code (its `data` is the value).
    Error(i64),
    /// A `tether/invoke` of a host handle of this interface (the invoke's params are the value).
    Invoke,
}

/// One message on a watched application interface.
#[derive(Debug, Clone)]
pub(crate) struct SeenMessage {
    /// The interface's name.
    pub(crate) interface: String,
    /// The method's short name (`hello` for `greeter.hello`).
    pub(crate) method: String,
    /// Result, error or invoke.
    pub(crate) kind: SeenKind,
    /// The result, the error's `data` (null when absent) or the invoke's params.
    pub(crate) value: Value,
    /// The frame, shortened, for reports.
    pub(crate) shown: String,
}

/// Which descriptors carry the frames (`--transport`, SPEC.md §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// The plugin's stdin and stdout.
    Stdio,
    /// Two pipes on the plugin's descriptors 3 and 4 (`TETHER_TRANSPORT=fds:3,4`). Its stdin is
    /// a pipe the judge holds open until the session ends, so that a plugin which takes the end
    /// of stdin for the end of the session is caught; what it writes on stdout is the user's
    /// business (a terminal) and is read and dropped. "stdin" and "stdout" in the checks' texts
    /// then mean these two descriptors.
    Fds,
}

/// How the cookie's variable is set for a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieMode {
    /// Set to the expected value.
    Set,
    /// Removed from the environment.
    Absent,
    /// Set to another value.
    Wrong,
}

/// What a scenario observed besides its own check: fed to the checks that span every scenario.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observations {
    /// Bytes on stdout that are not a frame in the writer form (`output.stdout-clean`).
    pub(crate) stdout_violations: Vec<String>,
    /// For each violation, what to fix, from the bytes themselves.
    pub(crate) stdout_fixes: Vec<String>,
    /// How many frames were read from the plugin's stdout.
    pub(crate) frames: usize,
    /// Bodies that are not valid JSON-RPC messages of the Tether profile (`output.messages-valid`).
    pub(crate) bad_messages: Vec<String>,
    /// `$/log` notifications that are not well formed (`log.well-formed`).
    pub(crate) bad_logs: Vec<String>,
    /// `$/log` notifications below the session's level (`log.level-respected`).
    pub(crate) logs_below_level: Vec<String>,
    /// Every well-formed `$/log` seen.
    pub(crate) logs: Vec<LogParams>,
    /// How many of the judge's requests carried a handle (`handle.no-late-retain`).
    pub(crate) handles_given: usize,
    /// `tether/retain` of a handle whose carrying request was already answered (§6.3).
    pub(crate) late_retains: Vec<String>,
    /// Frames with a `Tether-Attachments` header before attachments were negotiated (§2.8.3).
    pub(crate) unnegotiated_attachments: Vec<String>,
    /// Messages on the watched application interfaces (`iface.<name>.messages-valid`).
    pub(crate) iface_messages: Vec<SeenMessage>,
}

/// Shared state the reader tasks fill.
#[derive(Debug, Default)]
struct Shared {
    stderr: Vec<u8>,
    /// When the first byte arrived on stderr.
    first_stderr_at: Option<Instant>,
    stderr_eof: bool,
    stdout_bytes: u64,
    /// The first bytes the plugin wrote on stdout, kept to show in a diagnosis.
    stdout_head: Vec<u8>,
    /// The judge offered `attachments` in its initialize request: the reader switches its codec
    /// to attachments right after the first response, when that response announces them too
    /// (the reader runs ahead of the checks, so it must decide this itself, frame by frame).
    attachments_offered: bool,
    /// Both sides announced `attachments`: the reader accepts attachment frames.
    attachments_on: bool,
}

/// How many of the first stdout bytes a session keeps for its diagnosis.
const STDOUT_HEAD: usize = 256;
/// After bytes that are not a frame, how long a wait for a message goes on: a stray `print` is
/// usually followed at once by the frame it interrupted, and a plugin that writes nothing but
/// garbage must not hold the judge for a whole time-out (the violation is judged by
/// `output.stdout-clean` either way).
const AFTER_VIOLATION: Duration = Duration::from_millis(750);

const STDERR_KEPT: usize = 64 * 1024;
/// Added to the time-out of a session's first answer (`tether/initialize`): it includes the
/// start of the plugin's process and interpreter, which a busy machine stretches to seconds.
pub(crate) const START_ALLOWANCE: Duration = Duration::from_secs(10);
/// How long writing one frame to the plugin's stdin may take (a plugin that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size are also validated against the spec schema (larger ones, such as a
/// 16 MiB value, are checked by the envelope parser only, to keep the judge fast).
const SCHEMA_CHECKED_BODY: usize = 4 * 1024 * 1024;

enum Event {
    Body(bytes::Bytes),
    /// A frame with attachments (once negotiated): its JSON body and its attachments.
    Attached(bytes::Bytes, Vec<bytes::Bytes>),
    /// What the codec said, the first bytes from where the violation starts, and whether the
    /// frame read before them had a body that is not JSON (a sign of a wrong length).
    Violation(String, Vec<u8>, bool),
    Eof,
}

impl Event {
    /// The bytes it holds, counted against [`QUEUED_MAX`].
    fn weight(&self) -> usize {
        match self {
            Event::Body(body) => body.len(),
            Event::Attached(body, attachments) => {
                body.len() + attachments.iter().map(bytes::Bytes::len).sum::<usize>()
            }
            Event::Violation(..) | Event::Eof => 0,
        }
    }
}

/// The most bytes of frames read from a plugin and not yet taken by the judge. Past it the
/// reader stops reading, so the plugin's writes wait: a plugin that floods its stdout (a stream
/// that ignores its credit, say) while the judge waits for something else cannot fill the
/// judge's memory. A single frame larger than this is still queued, alone.
const QUEUED_MAX: usize = 64 << 20;

/// The bytes queued between the reader task and [`Session::recv`].
#[derive(Default)]
struct Queued {
    bytes: std::sync::atomic::AtomicUsize,
    taken: tokio::sync::Notify,
}

impl Queued {
    /// Waits until `weight` more bytes fit (or nothing is queued), then counts them.
    async fn reserve(&self, weight: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let taken = self.taken.notified();
            let queued = self.bytes.load(SeqCst);
            if queued == 0 || queued + weight <= QUEUED_MAX {
                self.bytes.fetch_add(weight, SeqCst);
                return;
            }
            taken.await;
        }
    }

    fn release(&self, weight: usize) {
        self.bytes.fetch_sub(weight, std::sync::atomic::Ordering::SeqCst);
        self.taken.notify_waiters();
    }
}

/// The most messages [`Session::response`] keeps for later while it waits for its answer.
const KEPT_MAX: usize = 10_000;

/// Why no message came.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// Nothing within the time allowed.
    Timeout,
    /// The plugin closed its stdout (it exited or crashed).
    Closed,
    /// The plugin wrote bytes that are not a frame, and no frame followed them.
    NotAFrame(String),
}

/// One running plugin and the judge's end of its pipes.
pub(crate) struct Session {
    child: Child,
    pgid: Option<i32>,
    /// Where frames to the plugin go: its stdin, or its descriptor 3.
    stdin: Option<Box<dyn AsyncWrite + Unpin + Send + Sync>>,
    /// With the fds transport, the plugin's real stdin, held open until the session ends.
    real_stdin: Option<ChildStdin>,
    /// With the fds transport, the inode numbers of the two frame pipes.
    pub(crate) frame_pipes: Vec<u64>,
    /// With the fds transport, the inode numbers of the plugin's stdin and stdout pipes.
    pub(crate) stdio_pipes: [Option<u64>; 2],
    events: mpsc::UnboundedReceiver<Event>,
    /// The bytes of `events` not yet taken (see [`QUEUED_MAX`]).
    queued: Arc<Queued>,
    backlog: VecDeque<Message>,
    shared: Arc<Mutex<Shared>>,
    next_id: i64,
    /// The handles each of the judge's requests carries, until it is answered (§6.3).
    carried: std::collections::HashMap<Id, Vec<String>>,
    /// Handles whose carrying request was answered: expired unless retained before.
    expired: std::collections::HashSet<String>,
    closed: bool,
    /// A wait for a message ran out of time (counted by the judge's stall limit).
    pub(crate) timed_out: bool,
    /// A wait for the exit already timed out: do not wait a whole grace period again.
    waited_in_vain: bool,
    /// The session's `$/log` level, once initialized.
    level: LogLevel,
    pub(crate) obs: Observations,
    transcript: Vec<String>,
    verbose: bool,
    /// The watched interfaces ([`PluginSpec::watch`]).
    watch: Vec<String>,
    /// The judge's requests on a watched interface, until answered: id to method.
    asked: std::collections::HashMap<Id, String>,
    /// The handles the judge passed that serve a watched interface: handle id to interface.
    handle_interfaces: std::collections::HashMap<String, String>,
}

impl Session {
    /// Starts the plugin with the cookie set, absent or wrong.
    pub(crate) fn start(spec: &PluginSpec, cookie: CookieMode, verbose: bool) -> anyhow::Result<Session> {
        let (program, args) =
            spec.argv.split_first().ok_or_else(|| anyhow::anyhow!("the plugin command line is empty"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove(&spec.cookie.key)
            .env_remove(TRANSPORT_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        procs::die_with_parent(&mut cmd);
        match cookie {
            CookieMode::Set => {
                cmd.env(&spec.cookie.key, &spec.cookie.value);
            }
            CookieMode::Wrong => {
                cmd.env(&spec.cookie.key, format!("not-{}", spec.cookie.value));
            }
            CookieMode::Absent => {}
        }
        let fds = match spec.transport {
            Wire::Stdio => None,
            Wire::Fds => Some(fds::attach(&mut cmd)?),
        };
        let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("cannot start {program:?}: {e}"))?;
        // The plugin's ends of the frame pipes go with the command: only ours are left.
        drop(cmd);
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        if let Some(pgid) = pgid {
            procs::register_group(pgid);
        }
        let child_stdin = child.stdin.take();
        let mut frame_pipes = Vec::new();
        let mut stdio_pipes = [None, None];
        let child_stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout pipe"))?;
        let mut stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr pipe"))?;
        let (stdin, real_stdin, stdout): (
            Box<dyn AsyncWrite + Unpin + Send + Sync>,
            _,
            Box<dyn AsyncRead + Unpin + Send + Sync>,
        ) = match fds {
            None => {
                let stdin = child_stdin.ok_or_else(|| anyhow::anyhow!("no stdin pipe"))?;
                (Box::new(stdin), None, Box::new(child_stdout))
            }
            Some((to_plugin, from_plugin, inodes)) => {
                frame_pipes = inodes.to_vec();
                let inode = |fd: rustix::fd::BorrowedFd<'_>| rustix::fs::fstat(fd).map(|st| st.st_ino).ok();
                use std::os::fd::AsFd as _;
                stdio_pipes =
                    [child_stdin.as_ref().and_then(|i| inode(i.as_fd())), inode(child_stdout.as_fd())];
                tokio::spawn(fds::drop_terminal_output(child_stdout));
                (to_plugin, child_stdin, from_plugin)
            }
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, events) = mpsc::unbounded_channel();

        let stderr_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = stderr_shared.lock() {
                    s.first_stderr_at.get_or_insert_with(Instant::now);
                    s.stderr.extend_from_slice(&buf[..n]);
                    let len = s.stderr.len();
                    if len > STDERR_KEPT {
                        s.stderr.drain(..len - STDERR_KEPT);
                    }
                }
            }
            if let Ok(mut s) = stderr_shared.lock() {
                s.stderr_eof = true;
            }
        });
        let queued = Arc::new(Queued::default());
        tokio::spawn(read_stdout(stdout, tx, Arc::clone(&shared), Arc::clone(&queued)));
        Ok(Session {
            child,
            pgid,
            stdin: Some(stdin),
            real_stdin,
            frame_pipes,
            stdio_pipes,
            events,
            queued,
            backlog: VecDeque::new(),
            shared,
            next_id: 1,
            carried: std::collections::HashMap::new(),
            expired: std::collections::HashSet::new(),
            closed: false,
            timed_out: false,
            waited_in_vain: false,
            level: LogLevel::Info,
            obs: Observations::default(),
            transcript: Vec::new(),
            verbose,
            watch: spec.watch.clone(),
            asked: std::collections::HashMap::new(),
            handle_interfaces: std::collections::HashMap::new(),
        })
    }

    /// The plugin's process group (its pid).
    pub(crate) fn pgid(&self) -> Option<i32> {
        self.pgid
    }

    /// The last `lines` lines of the plugin's stderr.
    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
        let text =
            self.shared.lock().map(|s| String::from_utf8_lossy(&s.stderr).into_owned()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole of the plugin's stderr kept so far (the last 64 KiB).
    pub(crate) fn stderr_all(&self) -> String {
        self.shared.lock().map(|s| String::from_utf8_lossy(&s.stderr).into_owned()).unwrap_or_default()
    }

    /// Waits up to `timeout` for the first byte on the plugin's stderr (or any on its stdout);
    /// when the first stderr byte came.
    pub(crate) async fn wait_first_stderr(&self, timeout: Duration) -> Option<Instant> {
        let until = Instant::now() + timeout;
        loop {
            let (first, eof, wrote) = self
                .shared
                .lock()
                .map(|s| (s.first_stderr_at, s.stderr_eof, s.stdout_bytes > 0))
                .unwrap_or((None, true, false));
            // Bytes on stdout also end the wait: the plugin is past its start and already wrong.
            if first.is_some() || eof || wrote || Instant::now() >= until {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to `timeout` for the plugin's stderr to reach end of file (after it exited).
    pub(crate) async fn wait_stderr_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.shared.lock().map(|s| s.stderr_eof).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The first bytes the plugin wrote on stdout (up to 256).
    pub(crate) fn stdout_head(&self) -> Vec<u8> {
        self.shared.lock().map(|s| s.stdout_head.clone()).unwrap_or_default()
    }

    /// The plugin's exit status, if it has exited (without waiting).
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// How many bytes the plugin wrote on stdout so far.
    pub(crate) fn stdout_bytes(&self) -> u64 {
        self.shared.lock().map(|s| s.stdout_bytes).unwrap_or_default()
    }

    /// The frames exchanged, shortened (kept with `--verbose`).
    pub(crate) fn transcript(&self) -> &[String] {
        &self.transcript
    }

    fn note(&mut self, dir: &str, body: &[u8]) {
        if self.verbose {
            self.transcript.push(format!("{dir} {}", show_bytes(body, 160)));
        }
    }

    /// A fresh id for a request of the judge.
    pub(crate) fn fresh_id(&mut self) -> Id {
        let id = Id::Int(self.next_id);
        self.next_id += 1;
        id
    }

    /// Writes one frame with `body` to the plugin's stdin.
    pub(crate) async fn send_raw(&mut self, body: &[u8]) -> anyhow::Result<()> {
        self.note(">>", body);
        self.watch_sent(body);
        let mut frame = BytesMut::new();
        encode_frame(body, &mut frame);
        self.send_wire(&frame).await
    }

    /// Writes a scenario's host line: like [`Session::send_raw`], and the handles a request
    /// carries stay valid for `tether/retain` until it is answered (§6.3), as with
    /// [`Session::request_with_id`].
    pub(crate) async fn send_scenario(&mut self, body: &[u8]) -> anyhow::Result<()> {
        if let Ok(Message::Request(r)) = parse_message(body) {
            let mut handles = Vec::new();
            if let Ok(params) = serde_json::from_str::<Value>(r.params.get()) {
                handles_in(&params, &mut handles);
            }
            if !handles.is_empty() {
                self.carried.insert(r.id, handles);
            }
        }
        self.send_raw(body).await
    }

    /// Keeps what a request the judge sends on a watched interface needs for its answer to be
    /// judged: the method of its id, and the interfaces of the handles it carries.
    fn watch_sent(&mut self, body: &[u8]) {
        if self.watch.is_empty() || body.len() > SCHEMA_CHECKED_BODY {
            return;
        }
        let Ok(Message::Request(r)) = parse_message(body) else { return };
        if let Ok(params) = serde_json::from_str::<Value>(r.params.get()) {
            handle_interfaces_in(&params, &self.watch, &mut self.handle_interfaces);
        }
        if let Some((iface, _)) = r.method.split_once('.') {
            if self.watch.iter().any(|w| w == iface) {
                self.asked.insert(r.id, r.method);
            }
        }
    }

    /// Keeps a message of the plugin on a watched interface (see [`SeenMessage`]).
    fn watch_received(&mut self, msg: &Message, body: &[u8]) {
        if self.watch.is_empty() {
            return;
        }
        let seen = match msg {
            Message::Response(r) => {
                let Some(method) = r.id.as_ref().and_then(|id| self.asked.remove(id)) else { return };
                let (kind, value) = match &r.outcome {
                    Outcome::Result(raw) => {
                        (SeenKind::Result, serde_json::from_str(raw.get()).unwrap_or(Value::Null))
                    }
                    Outcome::Error(e) => (SeenKind::Error(e.code), e.data.clone().unwrap_or(Value::Null)),
                };
                method.split_once('.').map(|(i, m)| (i.to_owned(), m.to_owned(), kind, value))
            }
            Message::Request(r) if r.method == tether_spec::Invoke::METHOD => {
                let params: Value = serde_json::from_str(r.params.get()).unwrap_or(Value::Null);
                let handle = params.get("handle").and_then(Value::as_str).unwrap_or_default();
                let method = params.get("method").and_then(Value::as_str).unwrap_or_default();
                self.handle_interfaces.get(handle).map(|iface| {
                    let value = params.get("params").cloned().unwrap_or(Value::Null);
                    (iface.clone(), method.to_owned(), SeenKind::Invoke, value)
                })
            }
            _ => None,
        };
        if let Some((interface, method, kind, value)) = seen {
            let shown = show_bytes(body, 300);
            self.obs.iface_messages.push(SeenMessage { interface, method, kind, value, shown });
        }
    }

    /// Writes bytes as they are to the plugin's stdin (framing checks build their own frames).
    pub(crate) async fn send_wire(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        if frame.len() < 2048 {
            self.note(">>wire", frame);
        }
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow::anyhow!("stdin is already closed"))?;
        let write = async {
            stdin.write_all(frame).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!("writing to the plugin's stdin failed: {e}")),
            Err(_) => Err(anyhow::anyhow!(
                "the plugin did not read its stdin for {} s (a frame of {} bytes is still unwritten)",
                WRITE_TIMEOUT.as_secs(),
                frame.len()
            )),
        }
    }

    /// Writes a message whose JSON references `attachments` (§2.8): the judge sends these only
    /// after reading an initialize answer that announced them, or on purpose to test a plugin.
    pub(crate) async fn send_attached(
        &mut self,
        msg: &Message,
        attachments: &[bytes::Bytes],
    ) -> anyhow::Result<()> {
        let json = msg.to_body();
        self.note(">>att", &json);
        let mut frame = BytesMut::new();
        tether_spec::encode_attached_frame_head(&json, attachments, &mut frame);
        for a in attachments {
            frame.extend_from_slice(a);
        }
        self.send_wire(&frame).await
    }

    /// Whether the reader accepts attachment frames (both sides announced `attachments`).
    pub(crate) fn attachments_on(&self) -> bool {
        self.shared.lock().map(|s| s.attachments_on).unwrap_or(false)
    }

    /// The next initialize request offers `attachments`: the reader watches the answer.
    pub(crate) fn offer_attachments(&self) {
        if let Ok(mut s) = self.shared.lock() {
            s.attachments_offered = true;
        }
    }

    /// Writes a message.
    pub(crate) async fn send(&mut self, msg: &Message) -> anyhow::Result<()> {
        self.send_raw(&msg.to_body()).await
    }

    /// Sends a request with a fresh id and returns the id.
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Id> {
        let id = self.fresh_id();
        self.request_with_id(id.clone(), method, params).await?;
        Ok(id)
    }

    /// Sends a request with the given id.
    pub(crate) async fn request_with_id(
        &mut self,
        id: Id,
        method: &str,
        params: Value,
    ) -> anyhow::Result<()> {
        let mut handles = Vec::new();
        handles_in(&params, &mut handles);
        if !handles.is_empty() {
            self.obs.handles_given += 1;
            self.carried.insert(id.clone(), handles);
        }
        let msg = Message::Request(Request::new(id, method, raw(&params)));
        self.send(&msg).await
    }

    /// Sends a notification.
    pub(crate) async fn notify(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        self.send(&Message::Notification(Notification::new(method, raw(&params)))).await
    }

    /// Answers a request of the plugin.
    pub(crate) async fn respond_ok(&mut self, id: Id, result: Value) -> anyhow::Result<()> {
        self.send(&Message::Response(Response::ok(id, raw(&result)))).await
    }

    /// Answers a request of the plugin with an error.
    pub(crate) async fn respond_err(&mut self, id: Option<Id>, error: ErrorObject) -> anyhow::Result<()> {
        self.send(&Message::Response(Response::error(id, error))).await
    }

    /// With the fds transport, closes the plugin's real stdin (the frames go on: SPEC.md §13.3).
    pub(crate) fn close_real_stdin(&mut self) {
        self.real_stdin = None;
    }

    /// Closes the plugin's stdin, or its read descriptor with the fds transport (end of file for
    /// the plugin).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next message from the plugin other than `$/log` (which is checked and kept in
    /// [`Observations`]). Requests of the plugin other than `tether/invoke` are answered here:
    /// `tether/ping` with `{}`, anything else with -32601.
    pub(crate) async fn recv(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        if let Some(m) = self.backlog.pop_front() {
            return Ok(m);
        }
        let mut deadline = tokio::time::Instant::now() + timeout;
        let mut violation: Option<String> = None;
        loop {
            if self.closed {
                return Err(RecvError::Closed);
            }
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => {
                    self.timed_out |= violation.is_none();
                    return Err(violation.map_or(RecvError::Timeout, RecvError::NotAFrame));
                }
                Ok(None) => {
                    self.closed = true;
                    return Err(RecvError::Closed);
                }
                Ok(Some(e)) => e,
            };
            self.queued.release(event.weight());
            match event {
                Event::Eof => {
                    self.closed = true;
                    return Err(RecvError::Closed);
                }
                Event::Violation(v, head, previous_bad) => {
                    deadline = deadline.min(tokio::time::Instant::now() + AFTER_VIOLATION);
                    let (fault, fix) = if head.is_empty() {
                        (
                            v.clone(),
                            "write whole frames within the session's maxFrameSize (§2.2, §2.5)".to_owned(),
                        )
                    } else {
                        crate::checks::classify(&head, previous_bad)
                    };
                    violation.get_or_insert_with(|| fault.clone());
                    if attach::has_attachments_header(&head) {
                        self.obs.unnegotiated_attachments.push(format!(
                            "a frame with a {ATTACHMENTS_HEADER} header before attachments were negotiated: {}",
                            show_bytes(&head, 160)
                        ));
                    }
                    self.obs.stdout_violations.push(format!("{fault} ({v})"));
                    self.obs.stdout_fixes.push(fix);
                }
                Event::Attached(json, attachments) => {
                    self.obs.frames += 1;
                    self.note("<<att", &json);
                    match attach::resolve(&json, &attachments) {
                        Ok(body) => {
                            if let Some(msg) = self.classify(&body) {
                                return Ok(msg);
                            }
                        }
                        Err(e) => self.obs.bad_messages.push(format!(
                            "a frame with {} attachments: {e}: {}",
                            attachments.len(),
                            show_bytes(&json, SHOWN_BYTES)
                        )),
                    }
                }
                Event::Body(body) => {
                    self.obs.frames += 1;
                    self.note("<<", &body);
                    if let Some(msg) = self.classify(&body) {
                        match msg {
                            Message::Request(r) if r.method == "tether/ping" => {
                                let _ = self.respond_ok(r.id, serde_json::json!({})).await;
                            }
                            Message::Request(r) if r.method == "tether/retain" => {
                                let handle = serde_json::from_str::<Value>(r.params.get())
                                    .ok()
                                    .and_then(|v| v.get("handle").and_then(Value::as_str).map(str::to_owned))
                                    .unwrap_or_default();
                                if self.carried.values().flatten().any(|h| *h == handle) {
                                    // In time (§6.3 item 3); the judge invokes nothing later anyway.
                                    let _ = self.respond_ok(r.id, serde_json::json!({})).await;
                                } else {
                                    if self.expired.contains(&handle) {
                                        self.obs.late_retains.push(format!(
                                            "tether/retain of {handle:?} after its request was answered: {}",
                                            show_bytes(&body, 200)
                                        ));
                                    }
                                    let _ = self
                                        .respond_err(Some(r.id), ErrorObject::unknown_handle(&handle))
                                        .await;
                                }
                            }
                            Message::Response(r) => {
                                if let Some(gone) = r.id.as_ref().and_then(|id| self.carried.remove(id)) {
                                    self.expired.extend(gone);
                                }
                                return Ok(Message::Response(r));
                            }
                            Message::Request(r) if r.method != "tether/invoke" => {
                                let err = ErrorObject::method_not_found(
                                    &r.method,
                                    "the judge serves no such method",
                                );
                                let _ = self.respond_err(Some(r.id), err).await;
                            }
                            other => return Ok(other),
                        }
                    }
                }
            }
        }
    }

    /// Parses a body, records what is wrong with it, and keeps `$/log` aside.
    fn classify(&mut self, body: &[u8]) -> Option<Message> {
        let msg = match parse_message(body) {
            Ok(m) => m,
            Err(e) => {
                self.obs.bad_messages.push(format!("{e}: {}", show_bytes(body, SHOWN_BYTES)));
                return None;
            }
        };
        let objects = match &msg {
            Message::Request(r) => r.params.get().starts_with('{'),
            Message::Notification(n) => n.params.get().starts_with('{'),
            Message::Response(Response { outcome: Outcome::Result(r), .. }) => r.get().starts_with('{'),
            Message::Response(_) => true,
        };
        if body.len() <= SCHEMA_CHECKED_BODY {
            if let Ok(value) = serde_json::from_slice::<Value>(body) {
                let errors = crate::schema::message_errors(&value);
                if let Some(first) = errors.first() {
                    self.obs
                        .bad_messages
                        .push(format!("does not match the spec schema: {first}: {}", show_bytes(body, 300)));
                }
            }
        }
        if !objects {
            self.obs
                .bad_messages
                .push(format!("params and results must be JSON objects (§3.1): {}", show_bytes(body, 200)));
        }
        if body.len() <= SCHEMA_CHECKED_BODY {
            self.watch_received(&msg, body);
        }
        if let Message::Notification(n) = &msg {
            if n.method == tether_spec::Log::METHOD {
                match serde_json::from_str::<LogParams>(n.params.get()) {
                    Ok(log) => {
                        if log.level < self.level {
                            self.obs.logs_below_level.push(format!(
                                "a {} $/log in a session at level {}: {}",
                                log.level,
                                self.level,
                                show_bytes(body, 200)
                            ));
                        }
                        self.obs.logs.push(log);
                    }
                    Err(e) => self.obs.bad_logs.push(format!("{e}: {}", show_bytes(body, 200))),
                }
                return None;
            }
        }
        Some(msg)
    }

    /// Puts a message back to be returned by the next [`Session::recv`].
    pub(crate) fn unread(&mut self, msg: Message) {
        self.backlog.push_back(msg);
    }

    /// Waits for the response to `id`. Other messages are kept for later (the first
    /// [`KEPT_MAX`]), except invokes, which are answered with -32003 (no handle is live outside
    /// the counter checks that expect them), and stream traffic, which is dropped.
    pub(crate) async fn response(&mut self, id: &Id, timeout: Duration) -> Result<Response, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut kept = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Ok(Message::Response(r)) if r.id.as_ref() == Some(id) => break Ok(r),
                Ok(Message::Request(r)) => {
                    let handle = serde_json::from_str::<Value>(r.params.get())
                        .ok()
                        .and_then(|v| v.get("handle").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    let _ = self.respond_err(Some(r.id), ErrorObject::unknown_handle(&handle)).await;
                }
                // Stream traffic means something only to a `Book`, which reads it itself; a
                // plugin streaming while the judge waits for an answer elsewhere (a stream that
                // ignores its credit, at the end of a scenario) must not pile up here.
                Ok(Message::Notification(n)) if n.method.starts_with("$/stream.") => {}
                Ok(other) if kept.len() < KEPT_MAX => kept.push(other),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.backlog.extend(kept);
        result
    }

    /// Sends a request and waits for its response.
    pub(crate) async fn call(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let id = self.request(method, params).await?;
        self.response(&id, timeout).await.map_err(|e| self.explain(method, e))
    }

    /// A readable error for a missing answer.
    pub(crate) fn explain(&self, what: &str, e: RecvError) -> anyhow::Error {
        match e {
            RecvError::Timeout => anyhow::anyhow!("no answer to {what} in time"),
            RecvError::Closed => {
                anyhow::anyhow!("the plugin closed its stdout (exited?) before answering {what}")
            }
            RecvError::NotAFrame(v) => {
                anyhow::anyhow!(
                    "instead of answering {what}, the plugin wrote bytes that are not a frame: {v}"
                )
            }
        }
    }

    /// Sends `tether/initialize` and waits for its response, for `timeout` plus
    /// [`START_ALLOWANCE`].
    pub(crate) async fn initialize(
        &mut self,
        params: &InitializeParams,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        self.level = params.log_level.unwrap_or_default();
        if params.capabilities.attachments.is_some() {
            self.offer_attachments();
        }
        let value = serde_json::to_value(params)?;
        self.call(tether_spec::Initialize::METHOD, value, timeout + START_ALLOWANCE).await
    }

    /// Sets the level below which `$/log` is a violation (after `$/setLogLevel`).
    pub(crate) fn set_level(&mut self, level: LogLevel) {
        self.level = level;
    }

    /// Sends `$/cancelRequest` for one of the judge's requests.
    pub(crate) async fn cancel(&mut self, id: &Id) -> anyhow::Result<()> {
        self.notify(CancelRequest::METHOD, serde_json::json!({ "id": id })).await
    }

    /// The plugin has visibly failed (it wrote garbage, or stayed silent): [`Session::finish`]
    /// gives it no grace period to exit.
    pub(crate) fn give_up(&mut self) {
        self.waited_in_vain = true;
    }

    /// Whether the plugin exits within `timeout`, for a check that expects it to live on (a
    /// plugin still running then is no reason to shorten the wait at the session's end).
    pub(crate) async fn exits_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok().and_then(Result::ok)
    }

    /// Waits up to `timeout` for the plugin to exit by itself.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait()).await.ok().and_then(Result::ok);
        self.waited_in_vain |= status.is_none();
        status
    }

    /// Ends the session: closes stdin, gives the plugin `grace` to exit, kills its process group,
    /// drains stdout, and returns what was observed and whether the plugin exited by itself.
    pub(crate) async fn finish(mut self, grace: Duration) -> (Observations, bool) {
        self.close_stdin();
        let grace = if self.waited_in_vain { Duration::from_millis(50) } else { grace };
        let exited = self.wait_exit(grace).await.is_some();
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        // Read what is left, so that stray bytes written at the end are judged too.
        let drain_until = Instant::now() + Duration::from_secs(2);
        while !self.closed {
            let left = drain_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (std::mem::take(&mut self.obs), exited)
    }

    /// Kills the plugin's process group (every process the plugin started in it).
    pub(crate) fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            procs::kill_group(pgid);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(pgid) = self.pgid {
            procs::forget_group(pgid);
        }
    }
}

/// Reads the plugin's stdout to its end with the strict codec. After a violation the reader
/// reports it, then recovers with the lenient codec up to the next frame and goes back to strict
/// reading, so that one stray `print` fails `output.stdout-clean` and not every later check.
async fn read_stdout(
    mut stdout: Box<dyn AsyncRead + Unpin + Send + Sync>,
    tx: mpsc::UnboundedSender<Event>,
    shared: Arc<Mutex<Shared>>,
    queued: Arc<Queued>,
) {
    // Waits for room in the queue's budget before each frame goes on.
    let send = |event: Event| {
        let (tx, queued) = (&tx, &queued);
        async move {
            queued.reserve(event.weight()).await;
            let _ = tx.send(event);
        }
    };
    let mut strict = FrameCodec::builder().strict().build();
    let mut lenient = FrameCodec::new();
    let mut recovering = false;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut eof = false;
    let mut last_body: Option<bytes::Bytes> = None;
    let head = |buf: &BytesMut| buf[..buf.len().min(256)].to_vec();
    let body_bad = |b: &Option<bytes::Bytes>| {
        b.as_ref().is_some_and(|b| serde_json::from_slice::<serde::de::IgnoredAny>(b).is_err())
    };
    loop {
        // Decode everything the buffer holds.
        loop {
            if recovering {
                let got = if eof { lenient.decode_eof(&mut buf) } else { lenient.decode(&mut buf) };
                match got {
                    Ok(Some(Frame::Message(body))) => {
                        recovering = false;
                        if attach::negotiates(&shared, &body) {
                            strict.set_attachments(true);
                            lenient.set_attachments(true);
                        }
                        last_body = Some(body.clone());
                        send(Event::Body(body)).await;
                    }
                    Ok(Some(Frame::Garbage { .. })) => recovering = false,
                    Ok(Some(Frame::Attached(frame))) => {
                        recovering = false;
                        send(Event::Attached(frame.body, frame.attachments)).await;
                    }
                    Ok(Some(Frame::BadAttachments { bytes, reason })) => {
                        recovering = false;
                        // The reason, not the bytes: they may be megabytes long.
                        let _ = tx.send(Event::Violation(
                            format!(
                                "a frame whose {ATTACHMENTS_HEADER} header is wrong ({reason:?}; {} bytes skipped)",
                                bytes.len()
                            ),
                            Vec::new(),
                            false,
                        ));
                    }
                    Ok(Some(Frame::Oversized(o))) => {
                        recovering = false;
                        let _ = tx.send(Event::Violation(
                            format!("a frame of {} bytes, above the maximum of {}", o.declared, o.max),
                            Vec::new(),
                            false,
                        ));
                    }
                    Ok(Some(Frame::Truncated(b))) => {
                        let _ = tx.send(Event::Violation(
                            format!("end of output in the middle of a frame: {}", show_bytes(&b, 200)),
                            b.to_vec(),
                            false,
                        ));
                        buf.clear();
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Event::Violation(e.to_string(), head(&buf), body_bad(&last_body)));
                        buf.clear();
                        break;
                    }
                }
            } else {
                let got = if eof { strict.decode_eof(&mut buf) } else { strict.decode(&mut buf) };
                match got {
                    Ok(Some(Frame::Message(body))) => {
                        if attach::negotiates(&shared, &body) {
                            strict.set_attachments(true);
                            lenient.set_attachments(true);
                        }
                        last_body = Some(body.clone());
                        send(Event::Body(body)).await;
                    }
                    Ok(Some(Frame::Attached(frame))) => {
                        last_body = None;
                        send(Event::Attached(frame.body, frame.attachments)).await;
                    }
                    Ok(Some(other)) => {
                        // The strict codec reports problems as errors; keep this arm total.
                        let _ =
                            tx.send(Event::Violation(format!("not a frame: {other:?}"), Vec::new(), false));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Event::Violation(e.to_string(), head(&buf), body_bad(&last_body)));
                        if buf.is_empty() || eof {
                            buf.clear();
                            break;
                        }
                        recovering = true;
                        // The lenient codec resynchronises on the next `Content-Length:` after
                        // the first byte; without any progress it would wait for more input.
                    }
                }
            }
        }
        if eof {
            break;
        }
        match stdout.read_buf(&mut buf).await {
            Ok(0) | Err(_) => eof = true,
            Ok(n) => {
                if let Ok(mut s) = shared.lock() {
                    s.stdout_bytes += n as u64;
                    let keep = STDOUT_HEAD.saturating_sub(s.stdout_head.len()).min(buf.len());
                    if keep > 0 {
                        // The new bytes are at the end of `buf`.
                        let start = buf.len() - n;
                        let end = (start + keep).min(buf.len());
                        let head = buf[start..end].to_vec();
                        s.stdout_head.extend_from_slice(&head);
                    }
                }
            }
        }
    }
    let _ = tx.send(Event::Eof);
}

/// The ids of the handles (`{"$handle": id, ...}` objects) anywhere in a value.
fn handles_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("$handle") {
                out.push(id.clone());
            }
            map.values().for_each(|v| handles_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| handles_in(v, out)),
        _ => {}
    }
}

/// The handles (`{"$handle": id, "interface": name}`) of a watched interface in a value.
fn handle_interfaces_in(
    value: &Value,
    watch: &[String],
    out: &mut std::collections::HashMap<String, String>,
) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(id)), Some(Value::String(iface))) =
                (map.get("$handle"), map.get("interface"))
            {
                if watch.contains(iface) {
                    out.insert(id.clone(), iface.clone());
                }
            }
            map.values().for_each(|v| handle_interfaces_in(v, watch, out));
        }
        Value::Array(items) => items.iter().for_each(|v| handle_interfaces_in(v, watch, out)),
        _ => {}
    }
}

/// A JSON value as raw JSON.
pub(crate) fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_raw())
}

fn empty_raw() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
}

/// Initialize params with the judge as host.
pub(crate) fn init_params(interfaces: &[(&str, Vec<u32>)], level: LogLevel) -> InitializeParams {
    init_params_with(interfaces, level, tether_spec::Capabilities::new())
}

/// Initialize params with the judge as host, announcing `capabilities` (§10.2).
pub(crate) fn init_params_with(
    interfaces: &[(&str, Vec<u32>)],
    level: LogLevel,
    capabilities: tether_spec::Capabilities,
) -> InitializeParams {
    InitializeParams {
        protocol_versions: vec![tether_spec::PROTOCOL_VERSION],
        interfaces: interfaces.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect(),
        host: PeerInfo::new("tether-conformance", env!("CARGO_PKG_VERSION")),
        capabilities,
        max_frame_size: tether_spec::DEFAULT_MAX_FRAME_SIZE as u64,
        log_level: Some(level),
    }
}
