//! The plugin's frame descriptors: stdin and stdout with stdout protected (SPEC.md §8.4), or the
//! two inherited descriptors of the `fds` transport (SPEC.md §13), read and written with
//! blocking calls (`Session::start_blocking`).

use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// Keeps a private duplicate of descriptor 1 for frames and points descriptor 1 at stderr, so
/// that a stray `println!`, or a child process that inherits stdout, lands on stderr.
pub(crate) fn protect_stdout() -> io::Result<OwnedFd> {
    io::stdout().flush()?;
    let frames = rustix::io::dup(io::stdout())?;
    rustix::stdio::dup2_stdout(io::stderr())?;
    Ok(frames)
}

/// A duplicate of descriptor 0.
pub(crate) fn stdin_fd() -> io::Result<OwnedFd> {
    Ok(rustix::io::dup(io::stdin())?)
}

/// Adopts a descriptor the host announced in `TETHER_TRANSPORT` (SPEC.md §13.2) and marks it
/// close-on-exec, so that the plugin's own children do not inherit the session's pipes (a child
/// holding the read end open would keep the host from seeing the plugin's end).
pub(crate) fn inherited(fd: i32) -> io::Result<OwnedFd> {
    // Adopting a descriptor by number is what inheritance is; the standard library marks it
    // unsafe because the number might belong to another owner. Check first that it is open
    // (the host may not have passed it), so that an absent descriptor is an error, not a
    // descriptor that some later `open` would reuse under us.
    #[cfg(target_os = "linux")]
    if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(io::Error::other(format!("descriptor {fd} is not open (the host did not pass it)")));
    }
    let fd = adopt(fd);
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

#[allow(unsafe_code)]
fn adopt(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `fd` is open (checked above on Linux), is not 0, 1 or 2 (the grammar of SPEC.md
    // §13.2), and nothing else in this process owns it: the host passed it for the session, and
    // `Plugin::serve` adopts each announced descriptor once, before the runtime starts.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Clears `O_NONBLOCK` on `fd`, which the session reads or writes with blocking calls: a host
/// may hand over a descriptor it made non-blocking.
fn make_blocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    if flags.contains(rustix::fs::OFlags::NONBLOCK) {
        rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(())
}

/// The descriptor frames are read from, for blocking reads (`Session::start_blocking`), and a
/// duplicate of it for [`exit_on_hangup`].
pub(crate) fn input(fd: OwnedFd) -> io::Result<(Input, OwnedFd)> {
    make_blocking(&fd)?;
    let watched = fd.try_clone()?;
    Ok((Input { file: std::fs::File::from(fd) }, watched))
}

/// The plugin's deadline for leaving once the host has gone: when the host closes its end of
/// `input`, the process exits with status 0 after `grace` at the latest (SPEC.md §1.6), even
/// when the thread that reads is blocked writing an answer to a host that no longer reads. A
/// thread of its own waits for the hang-up without reading (a `poll` for no event reports
/// only `POLLHUP` and errors), so nothing the reader has to read is taken from it.
pub(crate) fn exit_on_hangup(input: OwnedFd, name: String, grace: Duration) -> io::Result<()> {
    std::thread::Builder::new().name("tether-hangup".into()).spawn(move || {
        let mut fds = [rustix::event::PollFd::new(&input, rustix::event::PollFlags::empty())];
        loop {
            match rustix::event::poll(&mut fds, None) {
                Err(rustix::io::Errno::INTR) => continue,
                // A descriptor that cannot be polled (a regular file) never hangs up.
                Err(_) => return,
                Ok(_) if fds[0].revents().intersects(rustix::event::PollFlags::NVAL) => return,
                Ok(_) => break,
            }
        }
        // `serve` exits well before this when nothing is stuck: this thread then dies with the
        // process.
        std::thread::sleep(grace);
        eprintln!("{name}: the host closed the input and did not read the last answers; exiting");
        std::process::exit(0);
    })?;
    Ok(())
}

/// The descriptor frames are written to, for blocking writes.
pub(crate) fn output(fd: OwnedFd) -> io::Result<std::fs::File> {
    make_blocking(&fd)?;
    Ok(std::fs::File::from(fd))
}

/// See [`input`].
pub(crate) struct Input {
    file: std::fs::File,
}

impl io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Wait in `poll`, then read: measured on a 2-vCPU machine with a tokio host, a reader
        // that sleeps in `read` itself was woken on the other CPU from the host for most calls
        // (60 µs per sequential call instead of 6.5 µs), one that sleeps in `poll` (as an
        // `epoll` reactor does) was not. BENCHMARKS.md, "Blocking reads in the plugin".
        let mut fds = [rustix::event::PollFd::new(&self.file, rustix::event::PollFlags::IN)];
        // A failed or interrupted poll leaves the read to block and report.
        let _ = rustix::event::poll(&mut fds, None);
        self.file.read(buf)
    }
}
