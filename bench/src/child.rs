//! The other end of the raw pipe baseline: a child that speaks no protocol and uses no runtime.
//!
//! It runs as the small `tether-bench-helper` binary of this crate, with its mode as the first
//! argument (the binary also has a `memory` mode, see [`crate::memory`], which does use a
//! runtime and `tether-host`):
//!
//! - `echo`: copies stdin to stdout with blocking `read(2)`/`write(2)` on the raw descriptors,
//!   through one 64 KiB buffer, until end of file. The ping-pong and the echo bandwidth use it.
//! - `store`: the "binary attachment" what-if. The parent sends an op byte; `P` is followed by
//!   a little-endian `u64` length and that many raw bytes, which the child reads into a fresh
//!   buffer, keeps, and acknowledges with one byte; `G` makes the child send the kept bytes
//!   back, after their `u64` length. That is what a `kv.put`/`kv.get` costs when the value
//!   travels as raw bytes after a header instead of base64 inside JSON.

use std::io;

use rustix::stdio::{stdin, stdout};

/// The block size of the echo child's buffer.
pub const ECHO_BUFFER: usize = 64 * 1024;

fn write_all(mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::write(stdout(), buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on end of file before the first byte.
fn read_exact(buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = rustix::io::read(stdin(), &mut buf[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(true)
}

/// The `echo` mode: stdin to stdout until end of file.
pub fn echo() -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_BUFFER];
    loop {
        let n = rustix::io::read(stdin(), &mut buf[..])?;
        if n == 0 {
            return Ok(());
        }
        write_all(&buf[..n])?;
    }
}

/// The `store` mode: raw-bytes put and get (see the module documentation).
pub fn store() -> io::Result<()> {
    let mut kept: Vec<u8> = Vec::new();
    let mut op = [0u8; 1];
    while read_exact(&mut op)? {
        match op[0] {
            b'P' => {
                let mut len = [0u8; 8];
                read_exact(&mut len)?;
                let len = usize::try_from(u64::from_le_bytes(len)).map_err(io::Error::other)?;
                let mut value = vec![0u8; len];
                read_exact(&mut value)?;
                kept = value;
                write_all(b"k")?;
            }
            b'G' => {
                write_all(&(kept.len() as u64).to_le_bytes())?;
                write_all(&kept)?;
            }
            other => return Err(io::Error::other(format!("unknown op byte {other}"))),
        }
    }
    Ok(())
}

/// Runs the mode named by the first argument (`echo`, `store`, `memory` (see [`crate::memory`]),
/// `fleet` (see [`crate::scaling`])
/// or `workload` (see [`crate::workload`])); the exit status of the helper binary.
pub fn main_with_args(args: &[String]) -> i32 {
    let result = match args.first().map(String::as_str) {
        Some("echo") => echo(),
        Some("store") => store(),
        Some("workload") => {
            crate::workload::child_main(&args[1..]).map_err(|e| io::Error::other(format!("{e:#}")))
        }
        Some("fleet") => {
            crate::scaling::child_main(&args[1..]).map_err(|e| io::Error::other(format!("{e:#}")))
        }
        Some("memory") => {
            crate::memory::child_main(&args[1..]).map_err(|e| io::Error::other(format!("{e:#}")))
        }
        _ => {
            eprintln!("tether-bench-helper: the raw pipe child of the Tether benchmark; usage: tether-bench-helper echo|store|memory|fleet|workload ...");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tether-bench-helper: {e}");
            2
        }
    }
}
