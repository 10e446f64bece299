//! Node processes: finding dchatd, starting it detached, pid files, and
//! telling a live node from a dead one.
//!
//! Nodes are started with posix_spawn(3) and `POSIX_SPAWN_SETSID`, so each
//! runs in its own session — no terminal hangup or Ctrl-C of the shell that
//! ran `testnet up` reaches it — without any code running between fork and
//! exec (which would need `unsafe`).

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::CtlError;

/// `DCHATD_BIN`, else `dchatd` next to this dchatctl (a build directory or
/// an install prefix), else the first `dchatd` on `PATH`.
pub fn find_dchatd() -> Result<PathBuf, CtlError> {
    if let Some(bin) = std::env::var_os("DCHATD_BIN").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(bin);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(CtlError::Failed(format!(
                "DCHATD_BIN={} is not an executable file",
                path.display()
            )))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("dchatd")));
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("dchatd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            CtlError::Failed("cannot find dchatd: not next to dchatctl nor on PATH; set DCHATD_BIN to its path".into())
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts `dchatd --config CONFIG` in a new session: stdin from /dev/null,
/// stdout and stderr appended to `log`, `NOTIFY_SOCKET=notify_socket`.
pub fn spawn(dchatd: &Path, config: &Path, log: &Path, notify_socket: &OsStr) -> Result<Pid, CtlError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CtlError::Failed(format!("cannot start dchatd: {what}: {e}"));
    // Both opened close-on-exec (std's default); the dup2 actions below give
    // the child its own copies as fds 0, 1 and 2.
    let null = File::open("/dev/null").map_err(|e| failed("/dev/null", &e))?;
    let log_file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(log)
        .map_err(|e| failed(&log.display().to_string(), &e))?;

    let mut actions = PosixSpawnFileActions::init().map_err(|e| failed("spawn setup", &e))?;
    for (fd, target) in [
        (null.as_raw_fd(), 0),
        (log_file.as_raw_fd(), 1),
        (log_file.as_raw_fd(), 2),
    ] {
        actions.add_dup2(fd, target).map_err(|e| failed("spawn setup", &e))?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(|e| failed("spawn setup", &e))?;
    // The Rust runtime ignores SIGPIPE and a shell may ignore SIGINT and
    // SIGQUIT for background jobs; ignored signals survive exec, so give
    // the daemon the defaults, and an empty signal mask.
    let mut defaults = SigSet::empty();
    for s in [
        Signal::SIGPIPE,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGTERM,
    ] {
        defaults.add(s);
    }
    attr.set_sigdefault(&defaults).map_err(|e| failed("spawn setup", &e))?;
    attr.set_sigmask(&SigSet::empty())
        .map_err(|e| failed("spawn setup", &e))?;
    let setsid = PosixSpawnFlags::from_bits_retain(i32::from(nix::libc::POSIX_SPAWN_SETSID));
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | setsid)
        .map_err(|e| failed("spawn setup", &e))?;

    let args = [
        c_string(dchatd.as_os_str())?,
        c_string(OsStr::new("--config"))?,
        c_string(config.as_os_str())?,
    ];
    let env: Vec<CString> = child_env(notify_socket)
        .iter()
        .map(|kv| c_string(kv))
        .collect::<Result<_, _>>()?;
    posix_spawn(dchatd, &actions, &attr, &args, &env).map_err(|e| failed(&dchatd.display().to_string(), &e))
}

/// This process's environment for the daemon, except what belongs to our
/// own service manager (NOTIFY_SOCKET, socket activation, watchdog) and
/// `DCHAT_*` overrides that would override the node's config file. The
/// `DCHAT_LOG_*` overrides pass, so `DCHAT_LOG_LEVEL=debug` still works.
fn child_env(notify_socket: &OsStr) -> Vec<OsString> {
    let dropped = |key: &str| {
        matches!(key, "NOTIFY_SOCKET" | "LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES")
            || key.starts_with("WATCHDOG_")
            || (key.starts_with("DCHAT_") && !key.starts_with("DCHAT_LOG_"))
    };
    let mut env: Vec<OsString> = std::env::vars_os()
        .filter(|(k, _)| !k.to_str().is_some_and(dropped))
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    let mut notify = OsString::from("NOTIFY_SOCKET=");
    notify.push(notify_socket);
    env.push(notify);
    env
}

fn c_string(s: &OsStr) -> Result<CString, CtlError> {
    CString::new(s.as_bytes()).map_err(|_| CtlError::Failed(format!("{} contains a NUL byte", s.to_string_lossy())))
}

/// Reaps `pid` if it is our child and has exited: how it ended, else None.
pub fn try_reap(pid: Pid) -> Option<String> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exited with status {code}")),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("killed by {signal}")),
        Ok(_) => None,
        // Not our child (or already reaped): judge by /proc instead.
        Err(_) => (!is_alive(pid.as_raw(), None)).then(|| "exited".to_string()),
    }
}

/// The pid recorded in `path`, if the file exists and holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// Writes the pid file atomically (temp file, then rename).
pub fn write_pid(path: &Path, pid: Pid) -> Result<(), CtlError> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CtlError::Failed(format!("cannot write {}: {e}", path.display())))
}

pub fn remove_pid(path: &Path) {
    // Missing already is fine: the goal is that it does not exist.
    let _ = std::fs::remove_file(path);
}

/// The node's pid when its pid file names a live dchatd running `config`.
pub fn running_pid(pid_file: &Path, config: &Path) -> Option<i32> {
    read_pid(pid_file).filter(|pid| is_alive(*pid, Some(config)))
}

/// Whether `pid` is a live process (not a zombie waiting for a parent that
/// never reaps it, as under some container inits). With `config`, it must
/// also be running with that config path among its arguments, so a pid
/// reused by an unrelated process does not count.
pub fn is_alive(pid: i32, config: Option<&Path>) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // Field 3, after the parenthesised command name (which may itself
        // contain spaces or parentheses).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X")) {
            return false;
        }
    }
    match (config, std::fs::read(proc_dir.join("cmdline"))) {
        (Some(config), Ok(cmdline)) => cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == config.as_os_str().as_bytes()),
        // No /proc to ask: trust kill(2).
        _ => true,
    }
}

pub fn signal(pid: i32, signal: Signal) -> Result<(), Errno> {
    kill(Pid::from_raw(pid), signal)
}

/// The log's current length, to show only what a start adds to it.
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The last `n` lines written to `log` after byte `since`.
pub fn log_tail(log: &Path, since: u64, n: usize) -> Vec<String> {
    let mut text = Vec::new();
    let read = File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(since))?;
        f.read_to_end(&mut text)
    });
    if read.is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_env_replaces_the_notify_socket_and_drops_config_overrides() {
        // Reads this test process's environment, which cargo does not give
        // NOTIFY_SOCKET or DCHAT_* variables; only check what we add.
        let env = child_env(OsStr::new("/x/.notify.sock"));
        let notify: Vec<&OsString> = env
            .iter()
            .filter(|kv| kv.as_bytes().starts_with(b"NOTIFY_SOCKET="))
            .collect();
        assert_eq!(notify, [&OsString::from("NOTIFY_SOCKET=/x/.notify.sock")]);
    }

    #[test]
    fn log_tail_reads_only_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("l");
        std::fs::write(&log, "old\n").unwrap();
        let since = log_len(&log);
        std::fs::write(&log, "old\na\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, since, 2), ["b", "c"]);
        assert_eq!(log_tail(&log, since, 10), ["a", "b", "c"]);
        assert!(log_tail(&dir.path().join("none"), 0, 3).is_empty());
    }

    #[test]
    fn this_process_is_alive_and_a_pid_file_round_trips() {
        assert!(is_alive(std::process::id() as i32, None));
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("x.pid");
        assert_eq!(read_pid(&pid_file), None);
        write_pid(&pid_file, Pid::this()).unwrap();
        assert_eq!(read_pid(&pid_file), Some(std::process::id() as i32));
        // Our own command line does not name this config.
        assert_eq!(running_pid(&pid_file, Path::new("/no/such/dchatd.toml")), None);
        remove_pid(&pid_file);
        assert!(!pid_file.exists());
    }
}
