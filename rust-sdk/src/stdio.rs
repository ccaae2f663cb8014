//! The plugin's frame descriptors: stdin and stdout with stdout protected (SPEC.md §8.4), or the
//! two inherited descriptors of the `fds` transport (SPEC.md §13), read and written with
//! blocking calls (`Session::start_blocking`).

use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::sync::Arc;
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

/// Sets or clears `O_NONBLOCK` on `fd`: a host may hand over a descriptor in either mode.
fn set_nonblocking(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let wanted = if on { flags | rustix::fs::OFlags::NONBLOCK } else { flags - rustix::fs::OFlags::NONBLOCK };
    if wanted != flags {
        rustix::fs::fcntl_setfl(fd, wanted)?;
    }
    Ok(())
}

/// The descriptor frames are read from, for blocking reads (`Session::start_blocking`).
pub(crate) fn input(fd: OwnedFd) -> io::Result<Input> {
    set_nonblocking(&fd, false)?;
    Ok(Input { file: std::fs::File::from(fd), wake: None })
}

/// The descriptor frames are written to, written as blocking writes are, with the plugin's
/// deadline for leaving once the host has gone: a write that cannot go on (the host does not
/// read) waits in `poll` for the output to drain or for the host to close `input` (a `poll`
/// for no event on it reports only its hang-up, so nothing the reader has to read is taken),
/// and once the host has closed the input it exits the process with status 0 after `grace`,
/// since the answers it waits to write will never be read (SPEC.md §1.6).
pub(crate) fn output(
    fd: OwnedFd,
    input: std::os::fd::BorrowedFd<'_>,
    name: String,
    grace: Duration,
) -> io::Result<Output> {
    set_nonblocking(&fd, true)?;
    Ok(Output { file: std::fs::File::from(fd), input: input.try_clone_to_owned()?, name, grace })
}

/// See [`output`].
pub(crate) struct Output {
    file: std::fs::File,
    input: OwnedFd,
    name: String,
    grace: Duration,
}

impl Output {
    /// Waits until the output takes bytes again; exits the process once the host has closed
    /// the input and `grace` has passed.
    fn wait_writable(&self, hung_up: &mut Option<std::time::Instant>) {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.file, PollFlags::OUT), PollFd::new(&self.input, PollFlags::empty())];
        // With a hang-up seen, wake up to check the deadline.
        let timeout = hung_up.map(|_| Timespec { tv_sec: 0, tv_nsec: 100_000_000 });
        let _ = poll(&mut fds, timeout.as_ref());
        if hung_up.is_none() && !fds[1].revents().is_empty() {
            *hung_up = Some(std::time::Instant::now());
        }
        if hung_up.is_some_and(|at| at.elapsed() >= self.grace) {
            eprintln!("{}: the host closed the input and did not read the last answers; exiting", self.name);
            std::process::exit(0);
        }
    }
}

impl io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut hung_up = None;
        loop {
            match self.file.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable(&mut hung_up),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// See [`input`].
pub(crate) struct Input {
    file: std::fs::File,
    /// Made readable by [`Input::waker`]'s function: a `read` then returns `Interrupted`.
    wake: Option<Arc<OwnedFd>>,
}

impl Input {
    /// The descriptor, for [`output`] to watch for the host's hang-up.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// A function that makes this input's pending or next `read` return
    /// [`io::ErrorKind::Interrupted`] (`BlockingInput::run_handlers_here`), from any thread.
    pub(crate) fn waker(&mut self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        self.wake = Some(fd.clone());
        // A counter that is already non-zero (a wake not yet seen) has nothing to add: a
        // failed write is one that would overflow it.
        Ok(move || {
            let _ = rustix::io::write(&*fd, &1u64.to_ne_bytes());
        })
    }
}

impl io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Wait in `poll`, then read: measured on a 2-vCPU machine with a tokio host, a reader
        // that sleeps in `read` itself was woken on the other CPU from the host for most calls
        // (60 µs per sequential call instead of 6.5 µs), one that sleeps in `poll` (as an
        // `epoll` reactor does) was not. BENCHMARKS.md, "Blocking reads in the plugin".
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(wake) = &self.wake else {
            // A failed or interrupted poll leaves the read to block and report.
            let _ = poll(&mut [PollFd::new(&self.file, PollFlags::IN)], None);
            return self.file.read(buf);
        };
        let mut fds = [PollFd::new(&self.file, PollFlags::IN), PollFd::new(&**wake, PollFlags::IN)];
        let _ = poll(&mut fds, None);
        if !fds[1].revents().is_empty() {
            // Reset the counter, so the next poll waits for the next wake.
            let _ = rustix::io::read(&**wake, &mut [0u8; 8]);
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.file.read(buf)
    }
}
