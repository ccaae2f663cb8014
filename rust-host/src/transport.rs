//! The `fds` transport (SPEC.md §13): frames on two extra pipes the plugin inherits as
//! descriptors 3 and 4, so that its stdin, stdout and stderr can stay the user's terminal.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;

use command_fds::{CommandFdExt as _, FdMapping};
use tether_spec::{REFERENCE_READ_FD, REFERENCE_WRITE_FD};
use tokio::net::unix::pipe;

/// Which descriptors carry the frames ([`PluginBuilder::transport`](crate::PluginBuilder::transport)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Frames on the plugin's stdin and stdout; its stderr is forwarded to the host's logs
    /// (SPEC.md §1.2, §8.3). The default.
    #[default]
    Stdio,
    /// Frames on two pipes the plugin inherits as descriptors 3 (it reads) and 4 (it writes),
    /// announced as `TETHER_TRANSPORT=fds:3,4`. The plugin's stdin, stdout and stderr are what
    /// [`PluginBuilder::child_stdin`](crate::PluginBuilder::child_stdin) and its siblings say,
    /// the host's own by default: a plugin run from a terminal keeps it (password prompts,
    /// `isatty`, colours). Its stderr is then not captured: `$/log` still reaches the host's
    /// logs, and an [`ExitInfo`](crate::ExitInfo) has no stderr lines.
    Fds,
}

/// What one of the plugin's standard streams is in the `fds` transport: the host's own
/// (inherited, the default), `/dev/null`, or a descriptor the application opened (the slave
/// side of a pseudo-terminal, a file).
#[derive(Debug, Clone, Default)]
pub enum ChildStdio {
    /// The host's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A descriptor of the application's; the plugin gets a duplicate of it.
    Fd(Arc<OwnedFd>),
}

impl From<OwnedFd> for ChildStdio {
    fn from(fd: OwnedFd) -> Self {
        ChildStdio::Fd(Arc::new(fd))
    }
}

impl From<std::fs::File> for ChildStdio {
    fn from(file: std::fs::File) -> Self {
        ChildStdio::from(OwnedFd::from(file))
    }
}

impl ChildStdio {
    pub(crate) fn to_stdio(&self) -> std::io::Result<Stdio> {
        Ok(match self {
            ChildStdio::Inherit => Stdio::inherit(),
            ChildStdio::Null => Stdio::null(),
            ChildStdio::Fd(fd) => Stdio::from(fd.try_clone()?),
        })
    }
}

/// The host's end of the pipe frames go to the plugin through (its stdin, or descriptor 3): a
/// tokio pipe over either transport, so that a hand-over can take its descriptor.
pub(crate) type ToPlugin = pipe::Sender;
/// The host's end of the pipe frames come from the plugin through (its stdout, or descriptor 4).
pub(crate) type FromPlugin = pipe::Receiver;

/// Creates the two pipes of the `fds` transport, hands the plugin's ends to `command` as
/// descriptors 3 and 4, and returns the host's ends.
///
/// The standard library can only place descriptors 0 to 2 in a child; anything else needs code
/// between `fork` and `exec`, which is `unsafe` (`CommandExt::pre_exec`) and denied in this
/// workspace. `command-fds` is that code, written once and reviewed: it `dup2`s each parent
/// descriptor onto its child number (moving collisions out of the way first) and clears
/// close-on-exec on the result only. Every other descriptor of the host stays close-on-exec, so
/// another plugin started at the same moment inherits none of these pipes. The command keeps
/// the plugin's ends until it is dropped, right after the spawn, so that the host then holds
/// only its own ends and sees the end of file when the plugin goes.
pub(crate) fn attach(command: &mut tokio::process::Command) -> std::io::Result<(ToPlugin, FromPlugin)> {
    let (plugin_reads, host_writes) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (host_reads, plugin_writes) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    command
        .fd_mappings(vec![
            FdMapping { parent_fd: plugin_reads, child_fd: REFERENCE_READ_FD },
            FdMapping { parent_fd: plugin_writes, child_fd: REFERENCE_WRITE_FD },
        ])
        .map_err(std::io::Error::other)?;
    let to_plugin = pipe::Sender::from_owned_fd(host_writes)?;
    let from_plugin = pipe::Receiver::from_owned_fd(host_reads)?;
    Ok((to_plugin, from_plugin))
}
