//! A profiling driver, not a benchmark: a host with no runtime at all (blocking `write` and
//! `read` on the plugin's pipes, one call at a time) that makes N sequential `kv.get` calls of a
//! 16 B value to a plugin command and prints the mean time per call. Beside the raw pipe
//! ping-pong it shows what the plugin alone costs per call, with no host machinery in the way.
//!
//! `cargo run --release -p tether-bench --example blocking_host -- <N> <plugin> [args...]`

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};
use tether_spec::{REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE};

/// Writes one frame.
fn send(to: &mut impl std::io::Write, body: &str) -> anyhow::Result<()> {
    let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    to.write_all(frame.as_bytes())?;
    Ok(())
}

/// Reads one frame's body (plain frames only: attachments are not offered).
fn receive(from: &mut impl std::io::Read, buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .context("no Content-Length")?
                .trim()
                .parse()?;
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Ok(body);
            }
        }
        let mut chunk = [0u8; 65536];
        let n = from.read(&mut chunk)?;
        if n == 0 {
            bail!("the plugin closed its stdout");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [calls, program, rest @ ..] = args.as_slice() else {
        bail!("usage: blocking_host <calls> <plugin> [args...]");
    };
    let calls: u64 = calls.parse().context("the number of calls")?;
    let mut child = Command::new(program)
        .args(rest)
        .env(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to = child.stdin.take().context("stdin")?;
    let mut from = child.stdout.take().context("stdout")?;
    let mut buf = Vec::new();
    send(
        &mut to,
        r#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"host":{"name":"blocking-host","version":"0"},"interfaces":{"kv":[1,2]},"maxFrameSize":67108864}}"#,
    )?;
    receive(&mut from, &mut buf)?;
    send(
        &mut to,
        r#"{"jsonrpc":"2.0","id":2,"method":"kv.put","params":{"key":"k","value":"BwcHBwcHBwcHBwcHBwcHBw=="}}"#,
    )?;
    receive(&mut from, &mut buf)?;
    let start = Instant::now();
    for id in 3..3 + calls {
        send(&mut to, &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"kv.get","params":{{"key":"k"}}}}"#))?;
        let body = receive(&mut from, &mut buf)?;
        if !body.windows(6).any(|w| w == b"result") {
            bail!("{}", String::from_utf8_lossy(&body));
        }
    }
    let elapsed = start.elapsed();
    eprintln!("{calls} calls, {:.3} µs per call (mean)", elapsed.as_secs_f64() * 1e6 / calls.max(1) as f64);
    drop(to);
    let _ = child.wait();
    Ok(())
}
