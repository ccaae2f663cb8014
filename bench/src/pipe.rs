//! The raw pipe baseline: the floor every stdio protocol sits on, measured with blocking
//! `read(2)`/`write(2)` on the child's pipes, no runtime, no framing and no parsing.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// A running helper child with its two pipes.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Helper {
    fn spawn(helper: &Path, mode: &str) -> io::Result<Self> {
        let mut child = Command::new(helper)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin pipe"))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?;
        Ok(Self { child, stdin: Some(stdin), stdout })
    }

    fn stdin(&mut self) -> io::Result<&mut ChildStdin> {
        self.stdin.as_mut().ok_or_else(|| io::Error::other("stdin closed"))
    }

    /// Closes stdin and waits for the exit.
    fn finish(mut self) -> io::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("helper exited with {status}")))
        }
    }
}

/// An echo child kept for ping-pongs interleaved with other measurements, so that a series and
/// its baseline see the same machine (the same load, the same CPU placement regime).
pub struct EchoPeer {
    helper: Helper,
    msg: Vec<u8>,
    back: Vec<u8>,
}

impl EchoPeer {
    /// Spawns an echo child for `size`-byte ping-pongs.
    pub fn spawn(helper: &Path, size: usize) -> io::Result<Self> {
        Ok(EchoPeer { helper: Helper::spawn(helper, "echo")?, msg: vec![0x5a; size], back: vec![0; size] })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.helper.child.id()
    }

    /// One timed round trip, in microseconds.
    pub fn round_trip(&mut self) -> io::Result<f64> {
        let t = Instant::now();
        round_trip(&mut self.helper, &self.msg, &mut self.back)?;
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// Ends the child.
    pub fn finish(self) -> io::Result<()> {
        self.helper.finish()
    }
}

/// One round trip of `msg`: write it, read the same number of bytes back.
fn round_trip(h: &mut Helper, msg: &[u8], back: &mut [u8]) -> io::Result<()> {
    h.stdin()?.write_all(msg)?;
    h.stdout.read_exact(back)
}

/// What a ping-pong series measured.
#[derive(Debug, Clone)]
pub struct PingPong {
    /// The wall time of each round trip, in microseconds.
    pub micros: Vec<f64>,
    /// CPU time of both processes per round trip, in microseconds.
    pub cpu_micros: Option<f64>,
}

/// Ping-pong of a `size`-byte message: `warmup` untimed round trips, then the time of each of
/// `iters` round trips. With `pin`, this thread and the child run on CPU 0 only (the child
/// inherits the affinity), so every hand-off is a context switch on one CPU instead of a
/// wake-up of the other CPU.
pub fn ping_pong(helper: &Path, size: usize, warmup: usize, iters: usize, pin: bool) -> io::Result<PingPong> {
    let saved = if pin {
        let saved = rustix::thread::sched_getaffinity(None)?;
        let mut one = rustix::thread::CpuSet::new();
        one.set(0);
        rustix::thread::sched_setaffinity(None, &one)?;
        Some(saved)
    } else {
        None
    };
    let result = ping_pong_inner(helper, size, warmup, iters);
    if let Some(saved) = saved {
        rustix::thread::sched_setaffinity(None, &saved)?;
    }
    result
}

fn ping_pong_inner(helper: &Path, size: usize, warmup: usize, iters: usize) -> io::Result<PingPong> {
    let mut h = Helper::spawn(helper, "echo")?;
    let msg = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    for _ in 0..warmup {
        round_trip(&mut h, &msg, &mut back)?;
    }
    let mut samples = Vec::with_capacity(iters);
    let cpu_before = crate::stats::cpu_pair_ns(Some(h.child.id()));
    for _ in 0..iters {
        let t = Instant::now();
        round_trip(&mut h, &msg, &mut back)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu_after = crate::stats::cpu_pair_ns(Some(h.child.id()));
    if back != msg {
        return Err(io::Error::other("echo returned other bytes"));
    }
    h.finish()?;
    let cpu_micros = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if iters > 0 => Some(a.saturating_sub(b) as f64 / 1e3 / iters as f64),
        _ => None,
    };
    Ok(PingPong { micros: samples, cpu_micros })
}

/// Echo bandwidth: a writer thread streams `total` bytes in `block`-sized writes into the
/// child while this thread reads them back; the seconds each of `reps` streams took (after one
/// untimed stream).
pub fn echo_bandwidth(helper: &Path, block: usize, total: usize, reps: usize) -> io::Result<Vec<f64>> {
    let mut h = Helper::spawn(helper, "echo")?;
    let data = vec![0xa5u8; block];
    let mut back = vec![0u8; block];
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let stdin = h.stdin.take().ok_or_else(|| io::Error::other("stdin closed"))?;
        let t = Instant::now();
        let (stdin, read) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut stdin = stdin;
                let mut left = total;
                while left > 0 {
                    let n = left.min(block);
                    if let Err(e) = stdin.write_all(&data[..n]) {
                        return (stdin, Err(e));
                    }
                    left -= n;
                }
                (stdin, Ok(()))
            });
            let mut got = 0;
            let mut read = Ok(());
            while got < total {
                match h.stdout.read(&mut back) {
                    Ok(0) => {
                        read = Err(io::ErrorKind::UnexpectedEof.into());
                        break;
                    }
                    Ok(n) => got += n,
                    Err(e) => {
                        read = Err(e);
                        break;
                    }
                }
            }
            match writer.join() {
                Ok((stdin, w)) => (Some(stdin), read.and(w)),
                Err(_) => (None, Err(io::Error::other("writer thread panicked"))),
            }
        });
        read?;
        let elapsed = t.elapsed().as_secs_f64();
        h.stdin = stdin;
        if rep > 0 {
            samples.push(elapsed);
        }
    }
    h.finish()?;
    Ok(samples)
}

/// The "binary attachment" what-if: a put of `size` raw bytes (header + bytes, one-byte
/// acknowledgement) and a get of them back, the way a value would travel outside JSON. Returns
/// the seconds of each put and each get, after one untimed pair.
pub fn attachment(helper: &Path, size: usize, reps: usize) -> io::Result<(Vec<f64>, Vec<f64>)> {
    let mut h = Helper::spawn(helper, "store")?;
    let value = vec![0x3cu8; size];
    let mut puts = Vec::with_capacity(reps);
    let mut gets = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t = Instant::now();
        {
            let stdin = h.stdin()?;
            let mut header = [0u8; 9];
            header[0] = b'P';
            header[1..].copy_from_slice(&(size as u64).to_le_bytes());
            stdin.write_all(&header)?;
            stdin.write_all(&value)?;
        }
        let mut ack = [0u8; 1];
        h.stdout.read_exact(&mut ack)?;
        let put = t.elapsed().as_secs_f64();

        let t = Instant::now();
        h.stdin()?.write_all(b"G")?;
        let mut len = [0u8; 8];
        h.stdout.read_exact(&mut len)?;
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(io::Error::other)?;
        let mut got = vec![0u8; len];
        h.stdout.read_exact(&mut got)?;
        let get = t.elapsed().as_secs_f64();
        if got.len() != size {
            return Err(io::Error::other("store returned another size"));
        }
        if rep > 0 {
            puts.push(put);
            gets.push(get);
        }
    }
    h.finish()?;
    Ok((puts, gets))
}

/// Spawn of the echo child to its first echoed byte, in milliseconds, `reps` times after one
/// untimed start: the process-creation floor under any plugin's start.
pub fn spawn_to_first_echo(helper: &Path, reps: usize) -> io::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t = Instant::now();
        let mut h = Helper::spawn(helper, "echo")?;
        let mut b = [0u8; 1];
        round_trip(&mut h, b"x", &mut b)?;
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        h.finish()?;
        if rep > 0 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

/// Start of a bare command to its exit (`python3 -c pass`), in milliseconds, `reps` times after
/// one untimed run.
pub fn bare_start(program: &Path, args: &[&str], reps: usize) -> io::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()?;
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if !status.success() {
            return Err(io::Error::other(format!("{} exited with {status}", program.display())));
        }
        if rep > 0 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}
