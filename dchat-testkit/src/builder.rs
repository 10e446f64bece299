//! How a [`Daemon`] is started: flags, environment, launcher, and where
//! its output goes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::daemon::Daemon;
use crate::notify::NotifySocket;

/// Numbers log files so several daemons can share a state dir in turn.
static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Variables a test runner may have that would change how dchatd behaves
/// (systemd's and our own overrides); children never inherit them.
const SCRUBBED: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
];

/// How to start a [`Daemon`]; from [`Daemon::builder`]. Without
/// [`dev`](Self::dev) the daemon gets only the flags given with
/// [`arg`](Self::arg): pass `--state-dir` and `--socket` so it stays out of
/// `/var/lib/dchat` and `/run/dchat`.
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    launcher: Option<(OsString, Vec<OsString>)>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    notify: bool,
}

impl DaemonBuilder {
    /// `--dev --state-dir DIR`; the log file goes in DIR too.
    pub fn dev(mut self, state_dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(state_dir.as_ref().to_path_buf());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// `--socket PATH`.
    pub fn socket(mut self, path: impl AsRef<Path>) -> Self {
        self.socket = Some(path.as_ref().to_path_buf());
        self
    }

    /// Act as the service manager: give the daemon a `NOTIFY_SOCKET`.
    pub fn notify(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// Start dchatd through `program args… dchatd …`, a launcher that execs
    /// it (so the pid stays the same), e.g. `systemd-socket-activate`.
    pub fn launcher<I, S>(mut self, program: impl AsRef<OsStr>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.launcher = Some((
            program.as_ref().to_os_string(),
            args.into_iter().map(|a| a.as_ref().to_os_string()).collect(),
        ));
        self
    }

    /// Starts the process; panics if it cannot be started at all.
    pub fn spawn(self) -> Daemon {
        let dchatd = crate::bin("dchatd");
        let (scratch, log_dir) = match &self.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).expect("create the state dir");
                (None, dir.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("dchatd-log-")
                    .tempdir()
                    .expect("temp dir for the log");
                let dir = t.path().to_path_buf();
                (Some(t), dir)
            }
        };
        let log_path = log_dir.join(format!("dchatd-{}.log", LOG_SEQ.fetch_add(1, Ordering::Relaxed)));
        let log = File::create(&log_path).expect("create the daemon log file");

        let mut cmd = match &self.launcher {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&dchatd);
                c
            }
            None => Command::new(&dchatd),
        };
        if let Some(dir) = &self.state_dir {
            cmd.arg("--dev").arg("--state-dir").arg(dir);
        }
        if let Some(socket) = &self.socket {
            cmd.arg("--socket").arg(socket);
        }
        cmd.args(&self.args);
        for key in SCRUBBED {
            cmd.env_remove(key);
        }
        for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("DCHAT_")) {
            cmd.env_remove(key);
        }
        let notify = self.notify.then(NotifySocket::new);
        if let Some(n) = &notify {
            cmd.env("NOTIFY_SOCKET", n.path());
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));

        let socket = self
            .socket
            .or_else(|| self.state_dir.as_ref().map(|d| d.join("dchatd.sock")));
        Daemon {
            child,
            exit: None,
            notify,
            socket,
            log_path,
            _scratch: scratch,
        }
    }
}
