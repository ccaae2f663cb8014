//! Test-only: a Tether plugin that misbehaves on purpose, for the integration tests of
//! `tether-host` (as nushell's `nu_plugin_stress_internals`). Not meant for anything else.
//!
//! It is written on `tether-spec` types at the wire level, without the SDK, so that it can break
//! the protocol. It checks the reference cookie, answers `tether/initialize` (interfaces `kv`
//! versions 1 and 2, and `test` version 1), serves `kv.put`, `kv.get`, `test.env` (its
//! environment and working directory) and `test.echo`, and misbehaves when the host calls
//! `test.go`, as `TETHER_TEST_MODE` says:
//!
//! | mode | on `test.go` |
//! |---|---|
//! | `normal` (default) | answers `{}` |
//! | `garbage-stdout` | writes `TETHER_TEST_GARBAGE` (default `hello from a stray print\n`) to stdout, then answers |
//! | `huge-length` | answers with a frame of `TETHER_TEST_HUGE_BYTES` bytes (default 48 MiB), streamed |
//! | `half-frame` | writes half a frame, then stays silent on stdout for good |
//! | `exit-mid-call` | writes a few lines to stderr, then exits with `TETHER_TEST_EXIT_CODE` (default 3) |
//! | `never-answer` | never answers |
//! | `log-flood` | sends `TETHER_TEST_FLOOD_BYTES` (default 32 MiB) of `$/log` and stderr lines, then answers |
//! | `unknown-ids` | sends answers to ids 424242 and `"stranger"`, then answers |
//! | `ignore-sigterm` | answers; the plugin ignores SIGTERM and does not exit at end of stdin |
//! | `grandchild` | answers; at start the plugin spawned a grandchild that keeps stdout open |
//! | `silent-init` | (never answers `tether/initialize`) |
//! | `huge-header-at-start` | (answers `tether/initialize` with the header `Content-Length: 99999999999` alone, then hangs) |
//! | `half-frame-at-start` | (answers `tether/initialize` with half a frame, then hangs) |
//! | `close-stdout` | answers, then closes its stdout (fd 1 becomes `/dev/null`) and lives on until the end of stdin |
//! | `close-stdout-at-start` | (closes its stdout before the handshake and lives on until the end of stdin) |
//! | `deaf` | answers nothing more, `tether/ping` included, but goes on reading; exits at the end of stdin |
//!
//! With `TETHER_TEST_EXIT_AFTER_INIT_MS` set to a number, it exits with `TETHER_TEST_EXIT_CODE`
//! (default 3) that many milliseconds after it answered `tether/initialize` (a crash loop).
//! With `TETHER_TEST_LINGER` set, it does not exit at the end of stdin (it waits for a signal).
//! With `TETHER_TEST_IGNORE_SHUTDOWN` set, it does not answer `tether/shutdown` (but still exits
//! at the end of stdin). Every `$/cancelRequest` it receives is written to stderr as `cancel received for id <id>`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{json, Value};
use tether_spec::{
    encode_frame, highest_common, parse_message, ErrorObject, Frame, FrameCodec, Id, InitializeParams,
    MagicCookie, Message, MethodSchema, VersionMismatch,
};
use tokio_util::codec::Decoder;

type Out = Arc<Mutex<std::io::Stdout>>;

fn main() {
    let mode = std::env::var("TETHER_TEST_MODE").unwrap_or_else(|_| "normal".to_owned());
    if mode == "sleeper" {
        // The grandchild of `grandchild` mode: holds the inherited stdout open and waits.
        std::thread::sleep(Duration::from_secs(300));
        return;
    }
    let cookie = MagicCookie::reference();
    if !cookie.matches(std::env::var(&cookie.key).ok().as_deref()) {
        eprintln!(
            "This program is a Tether plugin (the test plugin of tether-host) and is not meant to be \
             run directly: start it from a Tether host."
        );
        std::process::exit(1);
    }
    eprintln!("test plugin pid {} mode {mode}", std::process::id());
    if mode == "ignore-sigterm" {
        ignore_sigterm();
    }
    if mode == "close-stdout-at-start" {
        close_stdout();
    }
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let mut state = State { mode, out, kv: BTreeMap::new(), initialized: false, silent: false };
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let mut stdin = std::io::stdin();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Frame::Message(body))) => state.handle(&body),
                Ok(Some(other)) => eprintln!("test plugin: skipped input: {other:?}"),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("test plugin: codec error: {e}");
                    std::process::exit(2);
                }
            }
        }
        match stdin.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if state.mode == "ignore-sigterm" || std::env::var_os("TETHER_TEST_LINGER").is_some() {
        // Not `eprintln!`: when the host died its end of stderr is closed too, and a panic on
        // the failed write would end the plugin that is meant to linger.
        let _ =
            writeln!(std::io::stderr(), "test plugin: stdin closed, but not exiting ({} mode)", state.mode);
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    eprintln!("test plugin: stdin closed, exiting");
}

/// Closes the pipe on fd 1 (the host sees the end of stdout) while the process lives on: fd 1
/// becomes `/dev/null`, so later writes go nowhere instead of failing.
fn close_stdout() {
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => match rustix::stdio::dup2_stdout(&null) {
            Ok(()) => eprintln!("test plugin: closed stdout, still alive"),
            Err(e) => eprintln!("test plugin: could not close stdout: {e}"),
        },
        Err(e) => eprintln!("test plugin: cannot open /dev/null: {e}"),
    }
}

/// Installs a SIGTERM handler (tokio's) that only writes a line to stderr.
fn ignore_sigterm() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            let _ = ready_tx.send(());
            while term.recv().await.is_some() {
                eprintln!("test plugin: ignoring SIGTERM");
            }
        });
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
}

struct State {
    mode: String,
    out: Out,
    kv: BTreeMap<String, String>,
    initialized: bool,
    /// Set once half a frame was written: nothing more may go to stdout.
    silent: bool,
}

fn write_raw(out: &Out, bytes: &[u8]) {
    if let Ok(mut out) = out.lock() {
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

fn write_message(out: &Out, message: &Value) {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = BytesMut::new();
    encode_frame(&body, &mut frame);
    write_raw(out, &frame);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn test_methods() -> BTreeMap<String, MethodSchema> {
    let object = || json!({"type": "object"});
    ["go", "env", "echo"]
        .into_iter()
        .map(|m| (m.to_owned(), MethodSchema { params: object(), result: object() }))
        .collect()
}

impl State {
    fn answer(&self, id: &Id, result: Value) {
        if !self.silent {
            write_message(&self.out, &json!({"jsonrpc": "2.0", "id": id, "result": result}));
        }
    }

    fn fail(&self, id: &Id, error: ErrorObject) {
        if !self.silent {
            write_message(&self.out, &json!({"jsonrpc": "2.0", "id": id, "error": error}));
        }
    }

    fn handle(&mut self, body: &[u8]) {
        let message = match parse_message(body) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("test plugin: bad message: {e}");
                return;
            }
        };
        match message {
            Message::Notification(n) => {
                if n.method == "$/cancelRequest" {
                    let id = serde_json::from_str::<Value>(n.params.get()).unwrap_or_default();
                    eprintln!("cancel received for id {}", id["id"]);
                }
            }
            Message::Response(r) => eprintln!("test plugin: unexpected response {:?}", r.id),
            Message::Request(r) => {
                let params: Value = serde_json::from_str(r.params.get()).unwrap_or_default();
                self.request(&r.id, &r.method, params);
            }
        }
    }

    fn request(&mut self, id: &Id, method: &str, params: Value) {
        if method == "tether/initialize" {
            return self.initialize(id, params);
        }
        if !self.initialized {
            return self.fail(id, ErrorObject::not_initialized());
        }
        match method {
            "tether/shutdown" if std::env::var_os("TETHER_TEST_IGNORE_SHUTDOWN").is_some() => {
                eprintln!("test plugin: not answering tether/shutdown");
            }
            "tether/ping" | "tether/shutdown" => self.answer(id, json!({})),
            "kv.put" => {
                let key = params["key"].as_str().unwrap_or_default().to_owned();
                let value = params["value"].as_str().unwrap_or_default().to_owned();
                self.kv.insert(key, value);
                self.answer(id, json!({}));
            }
            "kv.get" => {
                let key = params["key"].as_str().unwrap_or_default();
                match self.kv.get(key) {
                    Some(value) => self.answer(id, json!({ "value": value })),
                    None => self.fail(id, tether_spec::interfaces::kv::key_not_found(key)),
                }
            }
            "test.env" => {
                let env: BTreeMap<String, String> = std::env::vars().collect();
                let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
                self.answer(id, json!({ "env": env, "cwd": cwd }));
            }
            "test.echo" => self.answer(id, params),
            "test.go" => self.go(id),
            _ => self.fail(id, ErrorObject::method_not_found(method, "the test plugin does not serve it")),
        }
    }

    fn initialize(&mut self, id: &Id, params: Value) {
        if self.mode == "silent-init" {
            eprintln!("test plugin: not answering initialize (silent-init mode)");
            return;
        }
        if self.mode == "huge-header-at-start" {
            write_raw(&self.out, b"Content-Length: 99999999999\r\n\r\n");
            self.silent = true;
            eprintln!("test plugin: wrote a huge header, now silent");
            return;
        }
        if self.mode == "half-frame-at-start" {
            let head = format!("Content-Length: 200\r\n\r\n{{\"jsonrpc\":\"2.0\",\"id\":{id},\"res");
            write_raw(&self.out, head.as_bytes());
            self.silent = true;
            eprintln!("test plugin: wrote half a frame, now silent");
            return;
        }
        let params: InitializeParams = match serde_json::from_value(params) {
            Ok(p) => p,
            Err(e) => return self.fail(id, ErrorObject::invalid_params(e)),
        };
        if highest_common(&params.protocol_versions, &[1]).is_none() {
            let mismatch = VersionMismatch {
                interface: "tether".into(),
                host: params.protocol_versions,
                plugin: vec![1],
            };
            return self.fail(id, mismatch.to_error());
        }
        let spoken: [(&str, &[u32]); 2] = [("kv", &[1, 2]), ("test", &[1])];
        let mut interfaces = serde_json::Map::new();
        for (name, versions) in spoken {
            let Some(offered) = params.interfaces.get(name) else { continue };
            let Some(version) = highest_common(offered, versions) else {
                let mismatch = VersionMismatch {
                    interface: name.into(),
                    host: offered.clone(),
                    plugin: versions.to_vec(),
                };
                return self.fail(id, mismatch.to_error());
            };
            let methods =
                if name == "kv" { tether_spec::interfaces::kv::methods(version) } else { test_methods() };
            interfaces.insert(name.into(), json!({ "version": version, "methods": methods }));
        }
        self.initialized = true;
        if self.mode == "grandchild" {
            spawn_grandchild();
        }
        if let Some(ms) = std::env::var("TETHER_TEST_EXIT_AFTER_INIT_MS").ok().and_then(|v| v.parse().ok()) {
            exit_later(Duration::from_millis(ms));
        }
        self.answer(
            id,
            json!({
                "protocolVersion": 1,
                "plugin": {"name": "tether-test-plugin", "version": env!("CARGO_PKG_VERSION")},
                "capabilities": {},
                "interfaces": interfaces,
            }),
        );
    }

    fn go(&mut self, id: &Id) {
        match self.mode.as_str() {
            "garbage-stdout" => {
                let garbage = std::env::var("TETHER_TEST_GARBAGE")
                    .unwrap_or_else(|_| "hello from a stray print\n".to_owned());
                write_raw(&self.out, garbage.as_bytes());
                self.answer(id, json!({"ok": true}));
            }
            "huge-length" => self.huge(id),
            "half-frame" => {
                let head = format!("Content-Length: 200\r\n\r\n{{\"jsonrpc\":\"2.0\",\"id\":{id},\"res");
                write_raw(&self.out, head.as_bytes());
                self.silent = true;
                eprintln!("test plugin: wrote half a frame, now silent");
            }
            "exit-mid-call" => {
                let code = env_or("TETHER_TEST_EXIT_CODE", 3);
                eprintln!("test plugin: something went badly wrong");
                eprintln!("test plugin: crashing on purpose with status {code}");
                std::process::exit(code);
            }
            "close-stdout" => {
                self.answer(id, json!({}));
                close_stdout();
                self.silent = true;
            }
            "never-answer" => eprintln!("test plugin: not answering request {id}"),
            "deaf" => {
                // The same flag as after half a frame: nothing more goes to stdout.
                self.silent = true;
                eprintln!("test plugin: deaf from now on (not answering ping either)");
            }
            "log-flood" => {
                self.flood();
                self.answer(id, json!({}));
            }
            "unknown-ids" => {
                write_message(&self.out, &json!({"jsonrpc": "2.0", "id": 424242, "result": {}}));
                write_message(
                    &self.out,
                    &json!({"jsonrpc": "2.0", "id": "stranger", "error": {"code": 1, "message": "who?"}}),
                );
                self.answer(id, json!({}));
            }
            _ => self.answer(id, json!({})),
        }
    }

    fn huge(&mut self, id: &Id) {
        let total: usize = env_or("TETHER_TEST_HUGE_BYTES", 48 * 1024 * 1024);
        let head = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"pad\":\"");
        let tail = "\"}}";
        let pad = total.saturating_sub(head.len() + tail.len());
        write_raw(
            &self.out,
            format!("Content-Length: {}\r\n\r\n{head}", head.len() + pad + tail.len()).as_bytes(),
        );
        let chunk = vec![b'A'; 64 * 1024];
        let mut left = pad;
        while left > 0 {
            let n = left.min(chunk.len());
            write_raw(&self.out, &chunk[..n]);
            left -= n;
        }
        write_raw(&self.out, tail.as_bytes());
    }

    fn flood(&self) {
        let total: usize = env_or("TETHER_TEST_FLOOD_BYTES", 32 * 1024 * 1024);
        let line = "x".repeat(1000);
        let mut sent = 0;
        let mut n = 0u64;
        let stderr = std::io::stderr();
        while sent < total {
            n += 1;
            write_message(
                &self.out,
                &json!({"jsonrpc": "2.0", "method": "$/log",
                        "params": {"level": "info", "message": line, "fields": {"n": n}}}),
            );
            let _ = writeln!(stderr.lock(), "flood line {n} {line}");
            sent += 2 * line.len();
        }
        eprintln!("test plugin: flood done after {n} rounds");
    }
}

fn spawn_grandchild() {
    let Ok(exe) = std::env::current_exe() else { return };
    match std::process::Command::new(exe)
        .env("TETHER_TEST_MODE", "sleeper")
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => eprintln!("grandchild pid {}", child.id()),
        Err(e) => eprintln!("test plugin: could not spawn the grandchild: {e}"),
    }
}

/// Exits with `TETHER_TEST_EXIT_CODE` (default 3) after `delay`, whatever the plugin is doing.
fn exit_later(delay: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let code = env_or("TETHER_TEST_EXIT_CODE", 3);
        eprintln!("test plugin: crashing on purpose with status {code} after {delay:?}");
        std::process::exit(code);
    });
}
