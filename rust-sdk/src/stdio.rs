//! The plugin's frame descriptors: stdin and stdout with stdout protected (SPEC.md §8.4), or the
//! two inherited descriptors of the `fds` transport (SPEC.md §13), as non-blocking pipes.

use std::io::{self, Read as _, Write as _};
use std::os::fd::OwnedFd;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;

/// A boxed reader half.
pub(crate) type Reader = Box<dyn AsyncRead + Unpin + Send>;
/// A boxed writer half.
pub(crate) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

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

/// Whether `input` (a duplicate of the descriptor frames are read from) reaches end of file
/// within `window`; what is still unread is discarded (the session it belonged to has ended).
pub(crate) async fn ends_within(input: OwnedFd, window: std::time::Duration) -> bool {
    let Ok(mut stdin) = reader(input) else { return false };
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(window, drain).await.unwrap_or(false)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?)
}

fn clear_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK);
    }
}

/// Reads `fd` without a thread when it is a pipe or a socket (non-blocking, registered with the
/// runtime's reactor: measured 4x faster than `tokio::io::stdin`); otherwise (a file,
/// `/dev/null`) through a thread that does blocking reads.
pub(crate) fn reader(fd: OwnedFd) -> io::Result<Reader> {
    set_nonblocking(&fd)?;
    if let Ok(pipe) = pipe::Receiver::from_owned_fd_unchecked(fd.try_clone()?) {
        return Ok(Box::new(pipe));
    }
    clear_nonblocking(&fd);
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let runtime = tokio::runtime::Handle::current();
    let mut file = std::fs::File::from(fd);
    std::thread::Builder::new().name("tether-stdin".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if runtime.block_on(tx.write_all(&buf[..n])).is_err() {
                        break;
                    }
                }
            }
        }
    })?;
    Ok(Box::new(rx))
}

/// Writes `fd` without a thread when it is a pipe or a socket, otherwise through a thread.
pub(crate) fn writer(fd: OwnedFd) -> io::Result<Writer> {
    set_nonblocking(&fd)?;
    if let Ok(pipe) = pipe::Sender::from_owned_fd_unchecked(fd.try_clone()?) {
        return Ok(Box::new(pipe));
    }
    clear_nonblocking(&fd);
    let (tx, mut rx) = tokio::io::duplex(64 * 1024);
    let runtime = tokio::runtime::Handle::current();
    let mut file = std::fs::File::from(fd);
    std::thread::Builder::new().name("tether-stdout".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match runtime.block_on(rx.read(&mut buf)) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if file.write_all(&buf[..n]).and_then(|()| file.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    })?;
    Ok(Box::new(tx))
}
