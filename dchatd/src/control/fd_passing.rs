//! Receiving a file descriptor a client sends with `SCM_RIGHTS` (a backup
//! into a file the client opened with its own permissions).
//!
//! The descriptor rides on a single byte that the client sends only after
//! it has read the daemon's reply, so the connection's buffered reader
//! holds nothing when we look for it: a plain `read` would discard the
//! descriptor, so this reads that one byte with `recvmsg` on the socket
//! itself.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::{BufReader, Interest};
use tokio::net::unix::OwnedReadHalf;

#[derive(Debug, thiserror::Error)]
pub enum FdError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client did not send the file descriptor within {0:?}")]
    Timeout(Duration),
    #[error("expected a file descriptor from the client: {0}")]
    Protocol(String),
    /// Not exactly one descriptor (or a truncated message): the caller
    /// decides what becomes of them (see `Node::keep_if_own`).
    #[error("expected a file descriptor from the client: {} descriptors arrived, not one", .0.len())]
    NotOne(Vec<File>),
    #[error("cannot receive the file descriptor: {0}")]
    Io(#[from] std::io::Error),
}

/// Waits up to `timeout` for the one byte carrying exactly one descriptor.
pub async fn receive_file(reader: &mut BufReader<OwnedReadHalf>, timeout: Duration) -> Result<File, FdError> {
    if !reader.buffer().is_empty() {
        return Err(FdError::Protocol("the client sent data before the descriptor".into()));
    }
    let socket = reader.get_ref().as_ref();
    let receive = async {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || recv_one(socket.as_raw_fd())) {
                Ok(received) => return received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(FdError::Io(e)),
            }
        }
    };
    tokio::time::timeout(timeout, receive)
        .await
        .map_err(|_| FdError::Timeout(timeout))?
}

/// One `recvmsg` of one byte. The outer `io::Result` is for `try_io`
/// (`WouldBlock` means not yet); the inner one is the outcome.
fn recv_one(socket: RawFd) -> std::io::Result<Result<File, FdError>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    // Room for as many descriptors as one message can carry (SCM_MAX_FD):
    // the kernel installs what fits and the rest would be neither adopted
    // nor closed.
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let msg =
        recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(std::io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        match cmsg {
            ControlMessageOwned::ScmRights(received) => fds.extend(received.into_iter().map(adopt)),
            _ => truncated = true,
        }
    }
    let bytes = msg.bytes;
    // Every descriptor received is owned (and closed on drop) from here on,
    // whatever is wrong with the message.
    Ok(match (bytes, fds.len(), truncated) {
        (0, 0, _) => Err(FdError::Closed),
        (_, 1, false) => Ok(File::from(fds.remove(0))),
        (_, 0, _) => Err(FdError::Protocol("a byte arrived without one".into())),
        _ => Err(FdError::NotOne(fds.into_iter().map(File::from).collect())),
    })
}

/// Takes ownership of a descriptor the kernel just installed for us.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` comes from an SCM_RIGHTS control message that recvmsg
    // has just returned: the kernel installed it in our table for this
    // call, so it is open and nothing else in the process knows its number
    // or owns it. It is adopted exactly once, here.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
