//! File descriptors and a message from one process to another over a Unix socket
//! (`SCM_RIGHTS`): the carrier of a hand-over, which passes a plugin's pipes and the session's
//! state (`tether_core::Detached`, `tether_core::Resume`) to a successor host.
//!
//! The format on the socket: an 8-byte little-endian length sent together with the descriptors,
//! then the message. Blocking calls on a `std` socket: run them on a blocking thread
//! (`tokio::task::spawn_blocking`) from async code.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one message carries (a plugin has three pipes).
pub const MAX_PASSED_FDS: usize = 8;

/// Sends `message` and `fds` (at most [`MAX_PASSED_FDS`]) over `socket`. The descriptors are
/// duplicated into the receiving process; this one keeps its own until it drops them.
pub fn send_with_fds(socket: &UnixStream, message: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(std::io::Error::other(format!("{} descriptors, at most {MAX_PASSED_FDS}", fds.len())));
    }
    let header = (message.len() as u64).to_le_bytes();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("the descriptors do not fit the control buffer"));
    }
    // The descriptors travel with the first byte sent; the rest of the header follows if the
    // first call sent only part of it.
    let sent = sendmsg(socket, &[IoSlice::new(&header)], &mut control, SendFlags::empty())?;
    let mut socket = socket;
    socket.write_all(&header[sent..])?;
    socket.write_all(message)?;
    socket.flush()
}

/// Receives what [`send_with_fds`] sent: the message (refused above `max_len` bytes) and the
/// descriptors, owned by this process (close-on-exec set).
pub fn receive_with_fds(socket: &UnixStream, max_len: usize) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut header = [0u8; 8];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(socket, &mut [IoSliceMut::new(&mut header)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the socket closed before a message",
        ));
    }
    let mut socket = socket;
    socket.read_exact(&mut header[got.bytes..])?;
    let len = u64::from_le_bytes(header);
    let len = usize::try_from(len).ok().filter(|&l| l <= max_len).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message of {len} bytes, at most {max_len}"),
        )
    })?;
    let mut message = vec![0u8; len];
    socket.read_exact(&mut message)?;
    Ok((message, fds))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_pipe_end_and_a_message_cross_a_socket_and_the_pipe_still_works() -> std::io::Result<()> {
        let (a, b) = UnixStream::pair()?;
        let (read_end, write_end) = rustix::pipe::pipe()?;
        let message = vec![7u8; 100_000]; // more than one socket buffer: sent in parts
        let sender = std::thread::spawn(move || send_with_fds(&a, &message, &[read_end.as_fd()]));
        let (got, mut fds) = receive_with_fds(&b, 1 << 20)?;
        assert!(sender.join().is_ok_and(|sent| sent.is_ok()));
        assert_eq!((got.len(), got.iter().all(|&b| b == 7)), (100_000, true));
        assert_eq!(fds.len(), 1);
        // The sender dropped its copy of the read end; the received one is the same pipe.
        let mut received = std::fs::File::from(fds.remove(0));
        std::fs::File::from(write_end).write_all(b"through")?;
        let mut text = String::new();
        received.read_to_string(&mut text)?;
        assert_eq!(text, "through");
        Ok(())
    }

    #[test]
    fn a_message_above_the_limit_is_refused() -> std::io::Result<()> {
        let (a, b) = UnixStream::pair()?;
        send_with_fds(&a, &[0u8; 64], &[])?;
        let error = receive_with_fds(&b, 16).err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("a message of 64 bytes, at most 16"));
        Ok(())
    }
}
