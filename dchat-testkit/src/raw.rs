//! Raw Varlink over the control socket: bytes in, NUL-terminated frames
//! out, with timeouts. Tests of bad input need exactly this much control,
//! and no more of our own code than the daemon under test.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a reply may take before a call gives up.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What came back from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    /// One frame, without its NUL.
    Frame(String),
    /// The daemon closed the connection (end of stream or reset).
    Closed,
    /// Nothing complete arrived in time.
    TimedOut,
}

/// One client connection that speaks raw bytes.
pub struct RawConn {
    stream: UnixStream,
    /// Bytes read past the last frame.
    pending: Vec<u8>,
}

impl RawConn {
    pub fn connect(socket: &Path) -> std::io::Result<RawConn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        Ok(RawConn {
            stream,
            pending: Vec::new(),
        })
    }

    /// Writes `bytes` as they are: no terminator added.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `json` and the terminating NUL.
    pub fn send_frame(&mut self, json: &str) -> std::io::Result<()> {
        let mut bytes = json.as_bytes().to_vec();
        bytes.push(0);
        self.send(&bytes)
    }

    /// Writes `bytes` in one sendmsg(2) with `fds` attached as
    /// `SCM_RIGHTS` (a file handed to the daemon).
    pub fn send_with_fds(&mut self, bytes: &[u8], fds: &[std::os::fd::RawFd]) -> std::io::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
        let sent = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &[std::io::IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != bytes.len() {
            return Err(std::io::Error::other(format!("sent {sent} of {} bytes", bytes.len())));
        }
        Ok(())
    }

    /// Reads exactly `n` raw bytes (the payload of a bulk `data` message);
    /// `None` if the connection ends or `timeout` passes first.
    pub fn recv_exact(&mut self, n: usize, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 1024 * 1024];
        while self.pending.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("SO_RCVTIMEO");
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(got) => self.pending.extend_from_slice(&chunk[..got]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(self.pending.drain(..n).collect())
    }

    /// Reads until a NUL, the end of the stream, or `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Recv {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        // Bytes already searched for the NUL: a large reply arrives in many
        // reads, and searching it all again after each one is quadratic.
        let mut searched = 0;
        loop {
            if let Some(end) = self.pending[searched..].iter().position(|b| *b == 0) {
                let end = searched + end;
                let frame: Vec<u8> = self.pending.drain(..=end).take(end).collect();
                return Recv::Frame(String::from_utf8_lossy(&frame).into_owned());
            }
            searched = self.pending.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::TimedOut;
            }
            self.stream.set_read_timeout(Some(left)).expect("SO_RCVTIMEO");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Recv::Closed,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Recv::TimedOut,
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                    return Recv::Closed
                }
                Err(e) => panic!("reading from the control socket: {e}"),
            }
        }
    }

    /// Sends one frame and returns the reply frame; panics if none comes.
    pub fn call(&mut self, json: &str) -> String {
        self.send_frame(json).unwrap_or_else(|e| panic!("sending {json}: {e}"));
        match self.recv(CALL_TIMEOUT) {
            Recv::Frame(reply) => reply,
            other => panic!("no reply to {json}: {other:?}"),
        }
    }

    /// Waits for the daemon to close the connection and returns how long
    /// that took; panics if a frame arrives instead or `timeout` passes.
    pub fn expect_closed(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        match self.recv(timeout) {
            Recv::Closed => start.elapsed(),
            other => panic!("expected the daemon to close the connection, got {other:?}"),
        }
    }
}

/// Connects, sends `json` + NUL, returns the reply frame.
pub fn raw_call(socket: &Path, json: &str) -> String {
    RawConn::connect(socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()))
        .call(json)
}

/// Calls `method` with `params` and returns the whole reply as JSON
/// (`parameters`, or `error` and its `parameters`).
pub fn call(socket: &Path, method: &str, params: Value) -> Value {
    let request = json!({ "method": method, "parameters": params }).to_string();
    let reply = raw_call(socket, &request);
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply to {method} is not JSON ({e}): {reply}"))
}

/// Like [`raw_call`], but from a process running as `uid`:`gid` with no
/// supplementary groups, so the daemon sees that user in SO_PEERCRED. Needs
/// root. Runs `dchat-testkit-call`, which drops privileges before it
/// connects: exit 0 and the reply on stdout; 1 closed without a reply; 69
/// cannot connect (the reason on stderr); 75 no reply in time.
pub fn raw_call_as(uid: u32, gid: u32, socket: &Path, json: &str) -> Output {
    let helper = crate::bin("dchat-testkit-call");
    Command::new(&helper)
        .arg("--uid")
        .arg(uid.to_string())
        .arg("--gid")
        .arg(gid.to_string())
        .arg(socket)
        .arg(json)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helper.display()))
}
