//! `tether trace`: a transparent proxy put where a plugin goes. It starts the real plugin with
//! the same environment (the cookie included), relays the bytes of both pipes unchanged as they
//! come (no re-encoding, so attachments and even broken frames pass as they are), and logs a copy
//! of every frame parsed with the spec crate's codec: timestamp, direction, kind, method, id,
//! size, and for a response the round-trip time since its request.
//!
//! The relays are two blocking threads (read, write, flush, then log): the fewest hops between a
//! read and the write that forwards it. The proxy exits with the plugin's status, passes SIGTERM
//! and SIGINT on to it, and closes its stdin when its own stdin ends.

mod log;
mod tap;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use self::log::TraceLog;
use self::tap::{Direction, Pending, Tap};

/// How much one read of a pipe takes at most.
const RELAY_CHUNK: usize = 64 * 1024;
/// How long, after the plugin exited, the proxy waits for the rest of its stdout (a child of the
/// plugin may hold the pipe open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The status when the plugin cannot be started (SPEC.md §1.5: could not start).
const EXIT_CANNOT_START: i32 = 1;

/// `tether trace [--out FILE] [--json] -- <plugin command line>`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// Write the trace to FILE (appended) instead of stderr.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// One JSON object per frame (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// The real plugin's command line: program and arguments.
    #[arg(last = true, required = true, value_name = "PLUGIN COMMAND LINE")]
    command: Vec<String>,
}

/// Runs the proxy; the plugin's exit status (128 + the signal when a signal ended it).
pub(crate) fn run(args: TraceArgs) -> i32 {
    let log = match TraceLog::open(args.out.as_deref(), args.json) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            eprintln!("tether trace: cannot open the trace file: {e}");
            return EXIT_CANNOT_START;
        }
    };
    let Some((program, rest)) = args.command.split_first() else { return EXIT_CANNOT_START };
    let caught = catch_signals();
    let mut child = match Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("tether trace: cannot start {program}: {e}");
            return EXIT_CANNOT_START;
        }
    };
    let pending = Pending::default();
    let (Some(child_stdin), Some(child_stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("tether trace: the plugin's pipes were not created");
        return EXIT_CANNOT_START;
    };
    let reaped = Arc::new(AtomicBool::new(false));
    forward_signals(caught, child.id(), reaped.clone());

    let up = {
        let tap = Tap::new(Direction::HostToPlugin, pending.clone(), log.clone());
        std::thread::spawn(move || {
            relay(std::io::stdin().lock(), child_stdin, tap);
            // The child's stdin is dropped here: end of our stdin is end of its stdin.
        })
    };
    let (drained_tx, drained) = std::sync::mpsc::channel();
    {
        let tap = Tap::new(Direction::PluginToHost, pending, log.clone());
        std::thread::spawn(move || {
            relay(child_stdout, std::io::stdout().lock(), tap);
            let _ = drained_tx.send(());
        });
    }
    drop(up);
    let status = child.wait();
    reaped.store(true, Ordering::SeqCst);
    let _ = drained.recv_timeout(DRAIN_AFTER_EXIT);
    log.flush();
    match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("tether trace: cannot wait for the plugin: {e}");
            EXIT_CANNOT_START
        }
    }
}

/// Copies `from` to `to` as the bytes come: the tap parses a copy first (that is cheap, and
/// registers a request before its answer can come back), the bytes are forwarded, then the
/// lines are written. Returns at the end of `from` or when either side fails.
fn relay(mut from: impl Read, mut to: impl Write, mut tap: Tap) {
    let mut buf = vec![0u8; RELAY_CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let records = tap.feed(chunk);
        let forwarded = to.write_all(chunk).and_then(|()| to.flush());
        tap.write(&records);
        if forwarded.is_err() {
            break;
        }
    }
    tap.finish();
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_CANNOT_START,
    }
}

/// SIGTERM and SIGINT caught (tokio keeps what arrives until it is read) with the small runtime
/// that reads them; installed before the plugin starts, so that a signal sent as soon as the
/// plugin is up is passed on, not taken by this process's default action.
struct CaughtSignals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

fn catch_signals() -> Option<CaughtSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether trace: signals will not be forwarded: {e}");
            return None;
        }
    };
    let streams = runtime.block_on(async {
        Ok::<_, std::io::Error>((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?))
    });
    match streams {
        Ok((term, int)) => Some(CaughtSignals { runtime, term, int }),
        Err(e) => {
            eprintln!("tether trace: signals will not be forwarded: {e}");
            None
        }
    }
}

/// Passes SIGTERM and SIGINT on to the plugin until it is reaped (from a thread of its own).
fn forward_signals(caught: Option<CaughtSignals>, pid: u32, reaped: Arc<AtomicBool>) {
    let Some(CaughtSignals { runtime, mut term, mut int }) = caught else { return };
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return };
    std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                let signal = tokio::select! {
                    Some(()) = term.recv() => rustix::process::Signal::TERM,
                    Some(()) = int.recv() => rustix::process::Signal::INT,
                    else => return,
                };
                if !reaped.load(Ordering::SeqCst) {
                    let _ = rustix::process::kill_process(pid, signal);
                }
            }
        });
    });
}
