//! The service manager's side of sd_notify(3), for `testnet up`: a datagram
//! socket passed to the nodes as `NOTIFY_SOCKET`, read with the sender's
//! credentials so each `READY=1` is matched to the node that sent it.
//!
//! The socket lives in the testnet directory and is removed when `up`
//! returns. The daemons keep sending STATUS= updates to it afterwards; with
//! the file gone those sends fail, which the daemon ignores by design.

use std::ffi::OsString;
use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};

use crate::error::CtlError;

/// systemd reads notifications into a buffer of this order; the daemon
/// keeps its messages far below it.
const MAX_MESSAGE: usize = 4096;

pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// One notification: who sent it and the `KEY=VALUE` lines.
#[derive(Debug)]
pub struct Message {
    pub pid: i32,
    pub text: String,
}

impl Message {
    pub fn is_ready(&self) -> bool {
        self.text.lines().any(|l| l == "READY=1")
    }
}

impl NotifySocket {
    /// Binds `DIR/.notify-<our pid>.sock` with SO_PASSCRED on.
    pub fn bind(dir: &Path) -> Result<NotifySocket, CtlError> {
        let path = dir.join(format!(".notify-{}.sock", std::process::id()));
        let failed = |e: &dyn std::fmt::Display| {
            CtlError::Failed(format!("cannot make the notify socket {}: {e}", path.display()))
        };
        // Left by an earlier dchatctl that had our pid and was killed.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(failed(&e)),
            _ => {}
        }
        let socket = UnixDatagram::bind(&path).map_err(|e| failed(&e))?;
        // Made before `notify` takes `path`; returned after, so that its
        // Drop removes the file if this fails.
        let passcred = setsockopt(&socket, sockopt::PassCred, &true).map_err(|e| failed(&e));
        let notify = NotifySocket { socket, path };
        passcred.map(|()| notify)
    }

    /// The value for the children's `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> OsString {
        self.path.clone().into_os_string()
    }

    /// Waits up to `timeout` for one notification. None when none came (or
    /// a signal interrupted the wait); a datagram without credentials is
    /// skipped, since it cannot be matched to a node.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Message>, CtlError> {
        // A zero timeout would mean "block forever" to SO_RCVTIMEO.
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| CtlError::Failed(format!("notify socket: {e}")))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<UnixAddr>(self.socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
            Ok(msg) => msg,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(CtlError::Failed(format!("notify socket: {e}"))),
        };
        let pid = msg.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
            _ => None,
        });
        let len = msg.bytes;
        let Some(pid) = pid else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
        Ok(Some(Message { pid, text }))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // Best effort: a leftover socket file only costs a directory entry.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_carries_the_senders_pid_and_the_file_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let notify = NotifySocket::bind(dir.path()).unwrap();
        let path = PathBuf::from(notify.env_value());
        assert!(path.exists());
        assert!(notify.recv(Duration::from_millis(10)).unwrap().is_none());

        let sender = UnixDatagram::unbound().unwrap();
        sender.send_to(b"READY=1\nSTATUS=up\n", &path).unwrap();
        let msg = notify.recv(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(msg.pid, std::process::id() as i32);
        assert!(msg.is_ready());
        sender.send_to(b"STATUS=READY=1\n", &path).unwrap();
        assert!(!notify.recv(Duration::from_secs(5)).unwrap().unwrap().is_ready());

        drop(notify);
        assert!(!path.exists());
    }
}
