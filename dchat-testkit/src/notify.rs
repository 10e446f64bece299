//! The test as the service manager: an `sd_notify(3)` socket.
//!
//! systemd reads notifications from an `AF_UNIX` datagram socket with
//! `SO_PASSCRED` on, so the kernel stamps every datagram with the sender's
//! pid; that is how it tells `READY=1` from the main process apart from one
//! sent by a child. [`NotifySocket`] does the same, so tests can check who
//! sent what, in which order.

use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials};
use tempfile::TempDir;

/// systemd reads notifications into a buffer of this size; longer ones are
/// cut (and a test would see the cut).
const MAX_DATAGRAM: usize = 4096;

/// Most fds one datagram may carry before the kernel drops the rest; they
/// are closed on arrival anyway (`FDSTORE=1` is not something we keep).
const MAX_FDS: usize = 16;

/// One datagram received on the notify socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The sender's pid as the kernel reported it (0 if it did not).
    pub pid: i32,
    /// `KEY=VALUE` lines in order; lines without `=` are left out.
    pub fields: Vec<(String, String)>,
    /// The datagram as text.
    pub raw: String,
}

impl Notification {
    fn parse(pid: i32, raw: String) -> Notification {
        let fields = raw
            .split('\n')
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Notification { pid, fields, raw }
    }

    /// The value of `key` (the last one, if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is set to `value`, or to something starting with it.
    pub fn has(&self, key: &str, value_or_prefix: &str) -> bool {
        self.fields
            .iter()
            .any(|(k, v)| k == key && v.starts_with(value_or_prefix))
    }
}

/// A bound notify socket in a private temp dir; set `NOTIFY_SOCKET` to
/// [`NotifySocket::path`] in the child's environment.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    history: Vec<Notification>,
    // Last: the directory goes after the socket is closed.
    _dir: TempDir,
}

impl NotifySocket {
    /// Binds the socket and turns `SO_PASSCRED` on. Panics on failure: a
    /// test cannot go on without it.
    pub fn new() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("dchat-notify-")
            .tempdir()
            .expect("temp dir for the notify socket");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED on the notify socket");
        NotifySocket {
            socket,
            path,
            history: Vec::new(),
            _dir: dir,
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything received so far, oldest first.
    pub fn history(&self) -> &[Notification] {
        &self.history
    }

    /// The next datagram, or `None` if none arrives within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Notification> {
        // A zero timeout means "block forever" to SO_RCVTIMEO.
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("SO_RCVTIMEO on the notify socket");
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut cmsg = nix::cmsg_space!(UnixCredentials, [std::os::fd::RawFd; MAX_FDS]);
        let (len, pid, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<UnixAddr>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut pid = 0;
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().expect("control messages of a notification") {
                        match c {
                            ControlMessageOwned::ScmCredentials(cred) => pid = cred.pid(),
                            ControlMessageOwned::ScmRights(passed) => fds.extend(passed),
                            _ => {}
                        }
                    }
                    break (msg.bytes, pid, fds);
                }
                Err(Errno::EINTR) => continue,
                Err(e)
                    if matches!(
                        std::io::Error::from(e).kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("reading the notify socket: {e}"),
            }
        };
        // systemd-notify's BARRIER=1 waits for its fd to be closed, and we
        // keep no fd store: close whatever was passed.
        for fd in fds {
            let _ = nix::unistd::close(fd);
        }
        let n = Notification::parse(pid, String::from_utf8_lossy(&buf[..len]).into_owned());
        self.history.push(n.clone());
        Some(n)
    }

    /// Waits for a datagram with `key` set to `value_or_prefix` (or a value
    /// starting with it). Only datagrams not yet received count; earlier
    /// ones are in [`history`](Self::history). Panics on timeout, showing
    /// everything seen.
    pub fn wait_for(&mut self, key: &str, value_or_prefix: &str, timeout: Duration) -> Notification {
        self.wait_until(&format!("{key}={value_or_prefix}…"), timeout, |n| {
            n.has(key, value_or_prefix)
        })
    }

    /// Waits for a datagram that satisfies `pred`; `what` names it in the
    /// panic message on timeout.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Notification) -> bool,
    ) -> Notification {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no notification {what} within {timeout:?}; seen: {:#?}", self.history);
            }
            if let Some(n) = self.recv_timeout(left) {
                if pred(&n) {
                    return n;
                }
            }
        }
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        NotifySocket::new()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Read};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{sendmsg, ControlMessage};

    use super::*;

    #[test]
    fn parses_fields_and_stamps_the_sender_pid() {
        let mut n = NotifySocket::new();
        let tx = UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1\nSTATUS=ready; roles user\nnot a field\n", n.path())
            .unwrap();
        let got = n.wait_for("READY", "1", Duration::from_secs(5));
        assert_eq!(got.pid, i32::try_from(std::process::id()).unwrap());
        assert_eq!(got.get("STATUS"), Some("ready; roles user"));
        assert!(got.has("STATUS", "ready;"));
        assert_eq!(got.fields.len(), 2);
        assert_eq!(n.history().len(), 1);
        assert_eq!(n.recv_timeout(Duration::from_millis(10)), None);
    }

    #[test]
    fn closes_passed_fds() {
        let mut n = NotifySocket::new();
        let (mut read_end, write_end) = std::io::pipe().unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        let fds = [write_end.as_raw_fd()];
        let addr = UnixAddr::new(n.path()).unwrap();
        let iov = [IoSlice::new(b"FDSTORE=1\n")];
        sendmsg(
            tx.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )
        .unwrap();
        drop(write_end);
        n.wait_for("FDSTORE", "1", Duration::from_secs(5));
        // Our copy is gone; EOF means the received copy was closed too
        // (non-blocking, so a leak fails instead of hanging).
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(&read_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_end.read_to_end(&mut buf).unwrap(), 0);
    }
}
