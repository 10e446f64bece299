//! A real `dchatd` process: started from `target/<profile>/dchatd` (see
//! [`DaemonBuilder`]), its output captured to a log file, killed and
//! reaped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::builder::DaemonBuilder;
use crate::notify::{Notification, NotifySocket};

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// A running (or exited) dchatd. Dropping it SIGKILLs and reaps the
/// process if it is still running, and prints its log if the test failed.
pub struct Daemon {
    pub(crate) child: Child,
    /// Set once the child has been reaped.
    pub(crate) exit: Option<ExitStatus>,
    pub(crate) notify: Option<NotifySocket>,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) log_path: PathBuf,
    /// Holds the log when there is no state dir to put it in.
    pub(crate) _scratch: Option<TempDir>,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// The pid of the process we started (the main pid).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// The control socket: `--socket`, else `<state dir>/dchatd.sock`.
    pub fn socket_path(&self) -> &Path {
        self.socket
            .as_deref()
            .expect("the daemon was started without --dev or --socket; its socket path is not known")
    }

    /// The notify socket; panics unless the builder asked for `.notify(true)`.
    pub fn notify(&mut self) -> &mut NotifySocket {
        self.notify.as_mut().expect("start the daemon with .notify(true)")
    }

    /// Waits for `READY=1` and returns it (compare its `pid` with [`pid`](Self::pid)).
    pub fn wait_ready(&mut self, timeout: Duration) -> Notification {
        self.wait_notify("READY", "1", timeout)
    }

    /// [`NotifySocket::wait_for`], but fails at once if the daemon exits
    /// first. (A failing test prints the daemon's log when it drops it.)
    pub fn wait_notify(&mut self, key: &str, value_or_prefix: &str, timeout: Duration) -> Notification {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            if let Some(n) = self.notify().recv_timeout(slice) {
                if n.has(key, value_or_prefix) {
                    return n;
                }
                continue;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "dchatd exited ({status}) before {key}={value_or_prefix}; seen {:#?}",
                    self.notify().history()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {key}={value_or_prefix} within {timeout:?}; seen {:#?}",
                    self.notify().history()
                );
            }
        }
    }

    /// Sends `signal` to the process; panics if it has already been reaped
    /// (its pid may belong to someone else by now).
    pub fn signal(&mut self, signal: Signal) {
        if let Some(status) = self.try_exit() {
            panic!("cannot send {signal}: dchatd already exited ({status})");
        }
        kill(Pid::from_raw(self.pid()), signal).unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// Whether the process is still running (it is reaped if not).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("waitpid on dchatd");
        }
        self.exit
    }

    /// Polls until the process exits; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then waits up to 10 s for the exit; panics (and Drop kills
    /// it) if it does not stop.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(Duration::from_secs(10)) {
            Some(status) => status,
            None => panic!("dchatd did not stop within 10 s of SIGTERM"),
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Polls the log until a line contains every one of `needles`; returns
    /// that line, or panics with the log after `timeout`.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                panic!("no log line with {needles:?} within {timeout:?}; log:\n{log}");
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- dchatd log {} ---\n{}--- end of log ---",
                self.log_path.display(),
                self.log()
            );
        }
    }
}
