//! A testnet made and run by `dchatctl testnet` in a temp dir, torn down on
//! drop, and dchatctl runs against its nodes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
        Net::up_with(init_args, |_| {})
    }

    /// As [`Net::up`], with `prepare` run on the testnet's directory
    /// between `testnet init` and `testnet up` (to edit a node's config).
    pub fn up_with(init_args: &[&str], prepare: impl FnOnce(&Path)) -> Net {
        let net = Net::init_with(init_args, prepare);
        ok(&["testnet", "up", &net.d()]);
        net
    }

    /// `testnet init` and `prepare`, with no node started.
    pub fn init_with(init_args: &[&str], prepare: impl FnOnce(&Path)) -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let net = Net {
            dir: tmp.path().join("net"),
            _tmp: tmp,
        };
        let d = net.d();
        let mut args = vec!["testnet", "init", &d];
        args.extend_from_slice(init_args);
        ok(&args);
        prepare(&net.dir);
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

/// Turns on the Prometheus listener of `node` (call before `testnet up`)
/// on a free loopback port, and returns its address.
pub fn enable_metrics(dir: &Path, node: &str) -> SocketAddr {
    let port = dchatctl::commands::testnet::ports::free_ports(1).unwrap()[0];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.join(node).join("dchatd.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains("[metrics]"), "{node} already configures metrics");
    text.push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
    std::fs::write(&config, text).unwrap();
    addr
}

/// The body of `GET /metrics` (plain HTTP/1.1, one connection).
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of one series (name and labels as exposed) in a scrape; 0
/// when absent.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Edits `node`'s config before it starts: `key = value` in [network].
pub fn set_network_key(dir: &Path, node: &str, key: &str, value: &str) {
    let config = dir.join(node).join("dchatd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut out = Vec::new();
    let mut replaced = false;
    for line in text.lines() {
        if line.starts_with(&format!("{key} = ")) && !replaced {
            out.push(format!("{key} = {value}"));
            replaced = true;
        } else {
            out.push(line.to_string());
        }
        if line == "[network]" && !text.contains(&format!("\n{key} = ")) {
            out.push(format!("{key} = {value}"));
            replaced = true;
        }
    }
    assert!(replaced, "{node}'s config has no [network] section");
    std::fs::write(&config, out.join("\n") + "\n").unwrap();
}

/// The multiaddress `node` listens on (its config's first `listen`).
pub fn listen_addr(dir: &Path, node: &str) -> String {
    let text = std::fs::read_to_string(dir.join(node).join("dchatd.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen = [\"/")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}
