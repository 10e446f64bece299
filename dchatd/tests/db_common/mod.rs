//! Shared by the database tests: dev daemons, a writer that creates
//! accounts and remembers which creates were acknowledged, and reading a
//! database file directly.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dchat_testkit::{ctl, Daemon, RawConn, Recv};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

/// Generous: the workspace's tests start many daemons at once.
pub const READY: Duration = Duration::from_secs(30);

pub fn dev(state: &Path) -> Daemon {
    let mut d = Daemon::builder().dev(state).notify(true).spawn();
    d.wait_ready(READY);
    d
}

pub fn db_path(state: &Path) -> PathBuf {
    state.join("dchat.sqlite3")
}

/// `dchatctl ARGS…`, expecting success; returns stdout.
pub fn ok(socket: &Path, args: &[&str]) -> String {
    let out = ctl(socket, args);
    assert!(out.status.success(), "dchatctl {args:?} failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dchatctl ARGS… --json`, expecting success; returns the document.
pub fn json(socket: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(socket, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dchatctl {all:?}: not JSON ({e}): {out}"))
}

/// `dchatctl ARGS…`, expecting exit 1 and one line on stderr; returns it.
pub fn fails(socket: &Path, args: &[&str]) -> String {
    let out = ctl(socket, args);
    assert_eq!(out.status.code(), Some(1), "dchatctl {args:?}: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    stderr
}

pub fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names of the local accounts, as the daemon lists them.
pub fn local_accounts(socket: &Path) -> Vec<String> {
    let list = json(socket, &["account", "list"]);
    let mut names: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter(|a| a["local"] == true)
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Account names in a database file, read directly (read-only).
pub fn accounts_in_file(path: &Path) -> Vec<String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM accounts ORDER BY name").unwrap();
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    names
}

/// `PRAGMA integrity_check` of a database file.
pub fn integrity(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Creates accounts one after another on its own connection until stopped
/// (or until the daemon goes away), recording each name whose create the
/// daemon acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(socket: &Path, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (socket, prefix) = (socket.to_path_buf(), prefix.to_string());
        let (s, a) = (Arc::clone(&stop), Arc::clone(&acked));
        let handle = std::thread::spawn(move || {
            let Ok(mut conn) = RawConn::connect(&socket) else {
                return;
            };
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let name = format!("{prefix}{n}");
                n += 1;
                let call = format!(r#"{{"method":"io.dchat.Accounts.Create","parameters":{{"name":"{name}"}}}}"#);
                if conn.send_frame(&call).is_err() {
                    return;
                }
                match conn.recv(Duration::from_secs(10)) {
                    Recv::Frame(reply) => {
                        let v: Value = serde_json::from_str(&reply).unwrap();
                        assert!(v.get("error").is_none(), "create {name}: {reply}");
                        a.lock().unwrap().push(name);
                    }
                    // Killed mid-call: this create was never acknowledged.
                    Recv::Closed | Recv::TimedOut => return,
                }
            }
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    pub fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops and returns every acknowledged name.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
