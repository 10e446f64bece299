//! `sd_notify(3)` state changes for the service manager.
//!
//! Each call sends one datagram to `$NOTIFY_SOCKET`. When the variable is
//! unset (not started by systemd, or `Type=` does not ask for notifications)
//! nothing happens. A failed send is logged at debug and otherwise ignored:
//! losing a status update must never take the daemon down, and systemd itself
//! notices a missing READY or WATCHDOG through its own timeouts.
//!
//! We deliberately leave `NOTIFY_SOCKET` in the environment (unlike
//! `sd_notify(unset_environment=1)`): the daemon notifies many times over its
//! life (STATUS updates, watchdog pings, reloads, STOPPING).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Longest STATUS= text we send, in bytes. systemd reads a notification into
/// a buffer of a few KiB and drops longer datagrams whole; a status line is
/// meant to be a short summary, so we cut it well below that.
const MAX_STATUS_BYTES: usize = 1024;

/// How long one send may block. The notify socket is a datagram socket that
/// systemd drains promptly; if its queue is full anyway we would rather drop
/// one notification than stall the (async) caller indefinitely.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Startup is complete: sends `READY=1` together with `STATUS=`.
///
/// Also used after a reload finishes, which is how systemd learns that the
/// RELOADING phase is over.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
}

/// Updates the free-form `STATUS=` line shown by `systemctl status`.
pub fn status(status: &str) {
    send(&format!("STATUS={}\n", one_line(status)));
}

/// A reload (SIGHUP) has begun: `RELOADING=1` plus `MONOTONIC_USEC=`.
///
/// systemd ≥ 253 (Type=notify-reload) insists on MONOTONIC_USEC in the same
/// message so it can tell this reload apart from an earlier one; older
/// versions ignore the extra field. Follow up with [`ready`] when done.
pub fn reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => send(&format!("RELOADING=1\n{now}\n")),
        Err(error) => {
            // Without the timestamp new systemd versions reject the message,
            // but old ones still accept it, so send what we can.
            tracing::debug!(%error, "cannot read CLOCK_MONOTONIC for MONOTONIC_USEC");
            send("RELOADING=1\n");
        }
    }
}

/// Shutdown has begun: `STOPPING=1`.
pub fn stopping() {
    send("STOPPING=1\n");
}

/// Asks for more time for the current start, reload or stop step
/// (`EXTEND_TIMEOUT_USEC=`), e.g. during a long database migration. The
/// extension counts from now, so call it again before `d` runs out.
pub fn extend_timeout(d: Duration) {
    send(&format!("EXTEND_TIMEOUT_USEC={}\n", saturating_micros(d)));
}

/// Feeds the service watchdog: `WATCHDOG=1`. See [`super::watchdog`].
pub fn watchdog_ping() {
    send("WATCHDOG=1\n");
}

/// Makes `text` safe for a single `STATUS=` line: the notify protocol is
/// newline-separated `KEY=VALUE` pairs, so an embedded newline would end the
/// status early and could even inject another key (a stray `READY=1` in a peer
/// name, say). Control characters become single spaces and the result is cut
/// to [`MAX_STATUS_BYTES`] on a character boundary.
fn one_line(text: &str) -> String {
    let mut line = text
        .split(char::is_control)
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.len() > MAX_STATUS_BYTES {
        let mut cut = MAX_STATUS_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// Microseconds in `d`, capped at `u64::MAX` (the width systemd parses).
fn saturating_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sends `message` to `$NOTIFY_SOCKET`, if set; failures are logged, not
/// returned, because no caller could do anything useful with them.
fn send(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match send_to(&socket, message.as_bytes()) {
        Ok(()) => tracing::trace!(message = message.trim_end(), "sd_notify sent"),
        Err(error) => tracing::debug!(
            %error,
            socket = %socket.to_string_lossy(),
            message = message.trim_end(),
            "sd_notify failed"
        ),
    }
}

/// One datagram to the notify socket. systemd accepts a filesystem path or,
/// with a leading `@`, a Linux abstract socket name (used e.g. by containers
/// and test harnesses); the `sd-notify` crate only handles the former, which
/// is why we send it ourselves.
fn send_to(socket: &OsStr, payload: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => sock.send_to_addr(payload, &SocketAddr::from_abstract_name(name)?)?,
        None => sock.send_to(payload, socket)?,
    };
    if sent == payload.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", payload.len()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_replaces_newlines_and_controls() {
        assert_eq!(
            one_line("roles: user\npeers: 3\r\nheight: 7"),
            "roles: user peers: 3 height: 7"
        );
        assert_eq!(one_line("a\tb\0c"), "a b c");
        assert_eq!(one_line("\n\nready\n"), "ready");
        assert_eq!(one_line("x\nREADY=1"), "x READY=1");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn one_line_caps_length_on_char_boundary() {
        let long = "é".repeat(MAX_STATUS_BYTES); // 2 bytes per char
        let line = one_line(&long);
        assert!(line.len() <= MAX_STATUS_BYTES);
        assert!(line.len() >= MAX_STATUS_BYTES - 1);
        assert!(line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn extend_timeout_micros_saturate() {
        assert_eq!(saturating_micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(saturating_micros(Duration::MAX), u64::MAX);
    }

    /// Sends through a real socket we bind ourselves, both the path and the
    /// abstract form, without touching the process environment.
    #[test]
    fn send_to_reaches_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        let name = format!("dchatd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), b"STOPPING=1\n").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn send_to_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(send_to(dir.path().join("absent").as_os_str(), b"READY=1\n").is_err());
    }
}
