//! dchat-testkit: run the real `dchatd` and `dchatctl` from tests.
//!
//! Integration tests start the binaries cargo built (`target/<profile>/`),
//! act as systemd's service manager through a notify socket, talk raw
//! Varlink to the control socket, and clean up after themselves: every
//! [`Daemon`] is killed and reaped when dropped. Conditions are polled, not
//! slept for.
//!
//! The kit depends on no dchat crate on purpose: it is a plain process
//! harness, so the tests exercise what the binaries do, not what our
//! libraries say they do.
//!
//! ```no_run
//! use std::time::Duration;
//! use dchat_testkit::{call, Daemon};
//!
//! let state = tempfile::tempdir().unwrap();
//! let mut d = Daemon::builder().dev(state.path().join("s")).notify(true).spawn();
//! let ready = d.wait_ready(Duration::from_secs(5));
//! assert_eq!(ready.pid, d.pid());
//! let info = call(d.socket_path(), "org.varlink.service.GetInfo", serde_json::json!({}));
//! assert_eq!(info["parameters"]["product"], "dchatd");
//! ```
// Test support: a failed unwrap here is a failed test with its message,
// which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod builder;
mod daemon;
mod locks;
mod metrics;
mod notify;
mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use builder::DaemonBuilder;
pub use daemon::Daemon;
pub use locks::record_lock_held;
pub use metrics::{metrics_addr, scrape_value};
pub use nix::sys::signal::Signal;
pub use notify::{Notification, NotifySocket};
pub use raw::{call, raw_call, raw_call_as, RawConn, Recv, CALL_TIMEOUT};

/// `target/<profile>/<name>`, found next to the running test executable
/// (which lives in `target/<profile>/deps/`). Panics if it is not built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not inside target/<profile>/deps", exe.display()));
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `dchatctl ARGS… --socket SOCKET` and returns what it did.
pub fn ctl(socket: &Path, args: &[&str]) -> Output {
    ctl_command(socket, args).output().expect("run dchatctl")
}

/// [`ctl`] as `uid`:`gid` with no supplementary groups. Needs root, and
/// the path to the binary must be searchable by that user.
pub fn ctl_as(uid: u32, gid: u32, socket: &Path, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    // std clears the supplementary groups itself when it changes the uid
    // of a child spawned by root (setgroups(0) before setuid), so no
    // pre_exec hook is needed to shed root's groups.
    ctl_command(socket, args)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run dchatctl as another user")
}

fn ctl_command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("dchatctl"));
    cmd.args(args).arg("--socket").arg(socket).env_remove("DCHAT_SOCKET");
    cmd
}

/// Whether this runs in CI (the `CI` variable is set and not empty).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// For a test that cannot run here: fails in CI, where the prerequisite
/// must exist, and otherwise prints a note so the skip is visible.
pub fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("{why} (required when CI is set)");
    }
    eprintln!("note: skipping: {why}");
}

/// Whether we run as root (the authorization tests need it).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
