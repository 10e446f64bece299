//! Socket activation: listening sockets handed over by a `.socket` unit.
//!
//! systemd opens the sockets, passes them as fds 3, 4, … and describes them
//! in `LISTEN_PID` (who they are for), `LISTEN_FDS` (how many) and
//! `LISTEN_FDNAMES` (colon-separated `FileDescriptorName=`s). See
//! `sd_listen_fds(3)`.
//!
//! The environment is read once per process, every passed fd is adopted
//! right then, and the variables are removed so that nothing else (no later
//! call, no child process) can claim the same fds a second time. Callers then
//! take sockets out of that table by name.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};

/// What can go wrong taking over a socket from systemd. All of these mean
/// the unit files and the daemon disagree; none is retryable.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID` / `LISTEN_FDS` / `LISTEN_FDNAMES` are malformed or
    /// inconsistent.
    #[error("invalid socket-activation environment from systemd: {0}")]
    Environment(String),
    /// The fds announced by `LISTEN_FDS` are not all open.
    #[error("cannot take over the sockets systemd passed: {0}")]
    Adopt(#[source] std::io::Error),
    /// systemd passed sockets, but none with the name the daemon asked for.
    #[error(
        "systemd passed socket(s) named {passed:?} but none named {wanted:?}: \
         set FileDescriptorName={wanted} in the .socket unit"
    )]
    NotPassed { wanted: String, passed: Vec<String> },
    /// The named socket was already taken by an earlier call.
    #[error("the socket {0:?} passed by systemd was already taken")]
    AlreadyTaken(String),
    /// The passed fd is not what dchatd can serve on.
    #[error("socket {name:?} passed by systemd (fd {fd}) is {found}, expected a listening Unix stream socket")]
    WrongKind { name: String, fd: RawFd, found: String },
}

/// One socket systemd passed, with its `FileDescriptorName=`.
struct Inherited {
    name: String,
    fd: OwnedFd,
}

/// Every socket systemd passed to this process, read once.
struct Table {
    /// Whether the environment has been looked at yet.
    read: bool,
    /// Every name systemd announced, taken or not (for error messages).
    passed: Vec<String>,
    /// The sockets nobody has taken yet.
    left: Vec<Inherited>,
}

/// Process-wide because the fds and the environment are process-wide.
static TABLE: Mutex<Table> = Mutex::new(Table {
    read: false,
    passed: Vec::new(),
    left: Vec::new(),
});

/// The table, filled from the environment on first use.
fn table() -> Result<MutexGuard<'static, Table>, ActivationError> {
    // Nothing panics while holding the lock, but if something ever did, the
    // table is still consistent (each change is a single assignment or
    // remove), so carry on rather than propagate the poison.
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !table.read {
        // Marked before anything can fail, so a bad environment is reported
        // once and later calls see "nothing passed" instead of trying to
        // adopt the same fds again.
        table.read = true;
        let inherited = read_environment()?;
        table.passed = inherited.iter().map(|s| s.name.clone()).collect();
        table.left = inherited;
    }
    Ok(table)
}

/// Reads the socket-activation environment now and adopts every passed fd,
/// returning how many are held. Optional: [`take_listener`] does this on
/// first use. Calling it early in `main`, before any threads exist, is best,
/// because it removes variables from the environment (see [`take_listener`]).
pub fn adopt_inherited() -> Result<usize, ActivationError> {
    Ok(table()?.left.len())
}

/// Takes the listening Unix socket systemd passed under `name`.
///
/// - `Ok(None)`: not socket-activated (no `LISTEN_FDS` for our pid); bind
///   the socket yourself.
/// - `Ok(Some(listener))`: the socket named `name`, or the only socket when
///   systemd passed exactly one without a name (`LISTEN_FDNAMES` absent or
///   `unknown`). It is close-on-exec and in the blocking mode systemd gave
///   it (blocking unless `NonBlocking=yes`); call `set_nonblocking(true)`
///   before handing it to tokio.
/// - `Err`: sockets were passed but the one wanted is missing or is not a
///   listening `AF_UNIX` `SOCK_STREAM` socket. Starting anyway would leave
///   systemd holding a socket nobody serves, so treat this as fatal.
///
/// The first call (or [`adopt_inherited`]) removes `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment so children do not
/// inherit them. Rust's own environment access is serialised, but C code
/// reading the environment on another thread at that instant is not, so
/// prefer calling [`adopt_inherited`] before the runtime starts.
pub fn take_listener(name: &str) -> Result<Option<UnixListener>, ActivationError> {
    let mut table = table()?;
    let Table { passed, left, .. } = &mut *table;
    if passed.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
    let Some(index) = pick(&names, passed, name) else {
        // Would it have matched before anything was taken? Then an earlier
        // call took it.
        let all: Vec<&str> = passed.iter().map(String::as_str).collect();
        return Err(if pick(&all, passed, name).is_some() {
            ActivationError::AlreadyTaken(name.to_owned())
        } else {
            ActivationError::NotPassed {
                wanted: name.to_owned(),
                passed: passed.clone(),
            }
        });
    };
    let Inherited { name: passed_name, fd } = left.remove(index);
    let raw = fd.as_raw_fd();
    if let Err(found) = check_listening_unix_stream(&fd) {
        return Err(ActivationError::WrongKind {
            name: passed_name,
            fd: raw,
            found,
        });
    }
    tracing::info!(name = %passed_name, fd = raw, "using socket passed by systemd");
    Ok(Some(UnixListener::from(fd)))
}

/// Parses the variables, adopts the fds they announce and removes the
/// variables, in that order.
fn read_environment() -> Result<Vec<Inherited>, ActivationError> {
    let var = |key: &str| std::env::var(key).ok();
    let parsed = parse_listen_env(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    let result = match parsed {
        Ok(Some(names)) if !names.is_empty() => adopt_all(names),
        Ok(_) => Ok(Vec::new()),
        Err(message) => Err(ActivationError::Environment(message)),
    };
    // Safe to call in edition 2021 (it becomes `unsafe` in 2024 because a
    // concurrent C `getenv` could race); see the note on `take_listener`.
    for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(key);
    }
    result
}

/// Takes ownership of fds 3.. announced by `LISTEN_FDS` (already checked to
/// be for our pid) and pairs them with `names`.
fn adopt_all(names: Vec<String>) -> Result<Vec<Inherited>, ActivationError> {
    // sd_notify::listen_fds re-checks LISTEN_PID, and it probes every fd with
    // fcntl(F_GETFD) and sets FD_CLOEXEC, failing with EBADF on a closed one.
    // Only after that succeeds for all of them do we adopt any.
    let fds: Vec<RawFd> = sd_notify::listen_fds().map_err(ActivationError::Adopt)?.collect();
    if fds.len() != names.len() {
        return Err(ActivationError::Environment(format!(
            "LISTEN_FDS announces {} fds but {} were found",
            names.len(),
            fds.len()
        )));
    }
    Ok(fds
        .into_iter()
        .zip(names)
        .map(|(fd, name)| Inherited { name, fd: adopt(fd) })
        .collect())
}

/// Turns a raw fd that systemd passed into an owned one.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: `OwnedFd::from_raw_fd` needs `fd` to be open and owned by no
    // one else. Open: `adopt_all` only passes fds from `sd_notify::listen_fds`,
    // which has just run fcntl(fd, F_GETFD/F_SETFD) on each and returned an
    // error (so we never get here) if any was closed; they are >= 3, never -1.
    // Unowned: they are the range LISTEN_FDS announced to this very process
    // (LISTEN_PID == our pid), i.e. inherited across exec from systemd, not
    // opened by any Rust object here. This module is the only code in dchatd
    // that reads LISTEN_FDS, `read_environment` runs at most once per process
    // (guarded by TABLE), and it removes the variables right after, so no
    // second `OwnedFd` for the same number can be created through them.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Validates the three variables. `Ok(None)` when they are absent or meant
/// for another process; otherwise one name per passed fd (`"unknown"` when
/// systemd gave no names, as `sd_listen_fds_with_names(3)` does).
fn parse_listen_env(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Option<Vec<String>>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != our_pid {
        // Inherited from a parent that was the real recipient.
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a count"))?;
    if count == 0 {
        return Ok(Some(Vec::new()));
    }
    let names: Vec<String> = match names {
        None => vec!["unknown".to_owned(); count],
        Some(list) => list.split(':').map(str::to_owned).collect(),
    };
    if names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES has {} names but LISTEN_FDS={count}",
            names.len()
        ));
    }
    Ok(Some(names))
}

/// Chooses among the not-yet-taken sockets (`left`): the one named `wanted`,
/// or the single socket when systemd passed exactly one and gave it no name.
fn pick(left: &[&str], passed: &[String], wanted: &str) -> Option<usize> {
    if let Some(index) = left.iter().position(|name| *name == wanted) {
        return Some(index);
    }
    let sole_unnamed = passed.len() == 1 && passed[0] == "unknown";
    (sole_unnamed && left.len() == 1).then_some(0)
}

/// Checks that `fd` is something `accept()` on a Unix stream listener will
/// work with; on failure describes what it is instead.
fn check_listening_unix_stream(fd: &OwnedFd) -> Result<(), String> {
    match socket::getsockopt(fd, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(other) => return Err(format!("a {} socket", format!("{other:?}").to_lowercase())),
        Err(Errno::ENOTSOCK) => return Err("not a socket".into()),
        // SO_TYPE values nix does not model (e.g. SOCK_PACKET) land here too.
        Err(e) => return Err(format!("a socket whose type cannot be read ({e})")),
    }
    match socket::getsockname::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(addr) if addr.family() == Some(AddressFamily::Unix) => {}
        Ok(addr) => {
            let family = match addr.family() {
                Some(AddressFamily::Inet) => "AF_INET".to_owned(),
                Some(AddressFamily::Inet6) => "AF_INET6".to_owned(),
                Some(other) => format!("{other:?}"),
                None => "unknown".to_owned(),
            };
            return Err(format!("a socket of family {family} (ListenStream= must be a path)"));
        }
        Err(e) => return Err(format!("a socket whose address cannot be read ({e})")),
    }
    match socket::getsockopt(fd, sockopt::AcceptConn) {
        Ok(true) => Ok(()),
        // With Accept=yes systemd passes one connected socket per client.
        Ok(false) => Err("a socket that is not listening (is Accept=yes set?)".into()),
        Err(e) => Err(format!("a socket whose listening state cannot be read ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn env_absent_or_for_another_pid_means_not_activated() {
        assert_eq!(parse_listen_env(None, None, None, 7), Ok(None));
        assert_eq!(parse_listen_env(None, Some("1"), None, 7), Ok(None));
        assert_eq!(parse_listen_env(Some("8"), Some("1"), Some("control"), 7), Ok(None));
    }

    #[test]
    fn env_names_default_to_unknown() {
        assert_eq!(
            parse_listen_env(Some("7"), Some("2"), None, 7),
            Ok(Some(names(&["unknown", "unknown"])))
        );
        assert_eq!(parse_listen_env(Some("7"), Some("0"), None, 7), Ok(Some(vec![])));
    }

    #[test]
    fn env_names_are_split_and_counted() {
        assert_eq!(
            parse_listen_env(Some("7"), Some("2"), Some("control:metrics"), 7),
            Ok(Some(names(&["control", "metrics"])))
        );
        assert!(parse_listen_env(Some("7"), Some("2"), Some("control"), 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("1"), Some("a:b"), 7).is_err());
    }

    #[test]
    fn env_rejects_garbage_numbers() {
        assert!(parse_listen_env(Some("me"), Some("1"), None, 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("-1"), None, 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("many"), None, 7).is_err());
    }

    #[test]
    fn pick_by_name_or_sole_unnamed() {
        let passed = names(&["metrics", "control"]);
        assert_eq!(pick(&["metrics", "control"], &passed, "control"), Some(1));
        assert_eq!(pick(&["metrics"], &passed, "control"), None);
        assert_eq!(pick(&["metrics", "control"], &passed, "admin"), None);

        let sole = names(&["unknown"]);
        assert_eq!(pick(&["unknown"], &sole, "control"), Some(0));
        assert_eq!(pick(&[], &sole, "control"), None);

        // A single socket with some other name is a configuration mistake,
        // not something to guess about.
        let other = names(&["dchatd.socket"]);
        assert_eq!(pick(&["dchatd.socket"], &other, "control"), None);
        // Two unnamed sockets: ambiguous.
        let two = names(&["unknown", "unknown"]);
        assert_eq!(pick(&["unknown", "unknown"], &two, "control"), None);
    }

    #[test]
    fn check_accepts_listening_unix_stream() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(check_listening_unix_stream(&OwnedFd::from(listener)), Ok(()));
    }

    #[test]
    fn check_rejects_other_kinds() {
        let (stream, _peer) = UnixStream::pair().unwrap();
        let found = check_listening_unix_stream(&OwnedFd::from(stream)).unwrap_err();
        assert!(found.contains("not listening"), "{found}");

        let (dgram, _peer) = UnixDatagram::pair().unwrap();
        let found = check_listening_unix_stream(&OwnedFd::from(dgram)).unwrap_err();
        assert!(found.contains("a datagram socket"), "{found}");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let found = check_listening_unix_stream(&OwnedFd::from(tcp)).unwrap_err();
        assert!(found.contains("AF_INET"), "{found}");

        let file = tempfile::tempfile().unwrap();
        let found = check_listening_unix_stream(&OwnedFd::from(file)).unwrap_err();
        assert_eq!(found, "not a socket");
    }

    #[test]
    fn errors_name_the_fix() {
        let e = ActivationError::NotPassed {
            wanted: "control".into(),
            passed: names(&["dchatd.socket"]),
        };
        assert!(e.to_string().contains("FileDescriptorName=control"), "{e}");
    }
}
