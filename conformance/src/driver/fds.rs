//! The judge's side of the `fds` transport (SPEC.md §13): two pipes placed on the plugin's
//! descriptors 3 and 4 and announced in `TETHER_TRANSPORT`.

use command_fds::{CommandFdExt as _, FdMapping};
use tether_spec::{Transport, REFERENCE_READ_FD, REFERENCE_WRITE_FD, TRANSPORT_ENV};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::unix::pipe;

/// The judge's ends of the frame pipes, and the pipes' inode numbers (to find them among the
/// plugin's descriptors in `/proc`).
pub(crate) type Ends =
    (Box<dyn AsyncWrite + Unpin + Send + Sync>, Box<dyn AsyncRead + Unpin + Send + Sync>, [u64; 2]);

/// Creates the two pipes, hands the plugin's ends to `cmd` as descriptors 3 and 4 (through
/// `command-fds`: placing a descriptor above 2 in a child needs code between fork and exec,
/// which is `unsafe` and denied in this workspace) and announces them.
pub(crate) fn attach(cmd: &mut tokio::process::Command) -> anyhow::Result<Ends> {
    let (plugin_reads, judge_writes) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (judge_reads, plugin_writes) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let inodes = [rustix::fs::fstat(&judge_writes)?.st_ino, rustix::fs::fstat(&judge_reads)?.st_ino];
    cmd.fd_mappings(vec![
        FdMapping { parent_fd: plugin_reads, child_fd: REFERENCE_READ_FD },
        FdMapping { parent_fd: plugin_writes, child_fd: REFERENCE_WRITE_FD },
    ])?;
    cmd.env(TRANSPORT_ENV, Transport::REFERENCE_FDS.to_string());
    let to_plugin = pipe::Sender::from_owned_fd(judge_writes)?;
    let from_plugin = pipe::Receiver::from_owned_fd(judge_reads)?;
    Ok((Box::new(to_plugin), Box::new(from_plugin), inodes))
}

/// Reads what the plugin writes on its stdout and drops it: with this transport stdout is the
/// user's (a terminal), free text like stderr, and must not fill a pipe the plugin blocks on.
pub(crate) async fn drop_terminal_output(mut stdout: tokio::process::ChildStdout) {
    let mut buf = vec![0u8; 8192];
    while let Ok(1..) = stdout.read(&mut buf).await {}
}
