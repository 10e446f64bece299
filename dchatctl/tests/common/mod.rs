//! Shared by the dchatctl test files: a dev daemon in a temp dir, and
//! checks on what a dchatctl run printed and returned.

#![allow(dead_code)] // each test file uses its own subset

pub mod testnet;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use dchat_testkit::{ctl, Daemon};
use serde_json::Value;
use tempfile::TempDir;

/// Generous: the workspace's tests start many daemons at once on small CI
/// machines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A `--dev` daemon with its own temp dir, READY before it is returned.
pub struct Dev {
    pub daemon: Daemon,
    pub dir: TempDir,
}

impl Dev {
    pub fn start() -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_on(&dir.path().join("state"));
        Dev { daemon, dir }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> &Path {
        self.daemon.socket_path()
    }

    /// `dchatctl ARGS… --socket <this daemon>`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(self.socket(), args)
    }

    /// Runs `args` and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(args, &self.ctl(args))
    }

    /// Runs `args` with `--json` and expects exit 0; returns the document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = self.ok(&with_json);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("dchatctl {with_json:?} printed no JSON ({e}):\n{out}"))
    }

    /// Runs `args`, expects exit `code`; returns the single stderr line.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        fails(code, args, &self.ctl(args))
    }

    /// `account list --json`, as (name, id) pairs in the daemon's order.
    pub fn accounts(&self) -> Vec<(String, String)> {
        let list = self.json(&["account", "list"]);
        list.as_array()
            .unwrap_or_else(|| panic!("account list --json is not a list: {list}"))
            .iter()
            .map(|a| (str_field(a, "name"), str_field(a, "id")))
            .collect()
    }
}

/// Starts a READY `--dev` daemon on `state_dir`.
pub fn start_on(state_dir: &Path) -> Daemon {
    let mut daemon = Daemon::builder().dev(state_dir).notify(true).spawn();
    daemon.wait_ready(READY_TIMEOUT);
    daemon
}

pub fn ok(args: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dchatctl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Expects exit `code`, nothing on stdout, and exactly one line on stderr.
pub fn fails(code: i32, args: &[&str], out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "dchatctl {args:?}: wanted exit {code}, got {}:\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "dchatctl {args:?} failed but printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "dchatctl {args:?}: stderr should be one line:\n{stderr}"
    );
    stderr.trim_end().to_string()
}

pub fn str_field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
        .to_string()
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Writes a password file (one line) into `dir` and returns its path.
pub fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

/// A socket path where no daemon listens.
pub fn nowhere(dir: &Path) -> PathBuf {
    dir.join("no-daemon.sock")
}
