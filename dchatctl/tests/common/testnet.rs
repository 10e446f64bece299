//! A testnet made and run by `dchatctl testnet` in a temp dir, torn down on
//! drop, and dchatctl runs against its nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dchat_testkit::bin;
use serde_json::Value;

pub struct Net {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new(bin("dchatctl"))
            .args(["testnet", "down"])
            .arg(&self.dir)
            .args(["--timeout", "5"])
            .output();
    }
}

impl Net {
    /// `testnet init` with these arguments (after DIR), then `testnet up`.
    pub fn up(init_args: &[&str]) -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let net = Net {
            dir: tmp.path().join("net"),
            _tmp: tmp,
        };
        let d = net.d();
        let mut args = vec!["testnet", "init", &d];
        args.extend_from_slice(init_args);
        ok(&args);
        ok(&["testnet", "up", &d]);
        net
    }

    pub fn d(&self) -> String {
        self.dir.display().to_string()
    }
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin("dchatctl")).args(args).output().unwrap()
}

pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "dchatctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn sock(dir: &Path, node: &str) -> String {
    dir.join(node).join("dchatd.sock").display().to_string()
}

pub fn on(dir: &Path, node: &str, args: &[&str]) -> Output {
    let s = sock(dir, node);
    let mut all = vec!["--socket", &s];
    all.extend_from_slice(args);
    run(&all)
}

pub fn json_on(dir: &Path, node: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = on(dir, node, &a);
    assert!(
        out.status.success(),
        "{node} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn height(dir: &Path, node: &str) -> u64 {
    json_on(dir, node, &["chain", "status"])["height"].as_u64().unwrap()
}

/// Polls until every node in `nodes` is at `h` or above.
pub fn wait_height(dir: &Path, nodes: &[&str], h: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let heights: Vec<u64> = nodes.iter().map(|n| height(dir, n)).collect();
        if heights.iter().all(|x| *x >= h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {nodes:?} did not reach height {h} in {within:?}: {heights:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` every 100 ms until it gives Some, or fails after `within`
/// saying what was awaited.
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
