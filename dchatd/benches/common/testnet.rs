//! A local testnet for a bench: `dchatctl testnet init` and `up` in a temp
//! dir with the bench's release `dchatd`, brought down on drop (also when a
//! phase panics).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the testnet may take to start and reach its first block.
const SETUP_WAIT: Duration = Duration::from_secs(90);

/// What `testnet init` creates.
pub struct Layout<'a> {
    pub validators: u16,
    pub relays: u16,
    pub users: u16,
    pub block_interval_ms: u64,
    /// Nodes given a `[metrics] listen` address (in this order in
    /// [`Testnet::metrics`]).
    pub metrics_on: &'a [&'a str],
    /// Nodes that listen nowhere, like nodes behind NAT: they dial out and
    /// are reached through relay circuits.
    pub behind_nat: &'a [&'a str],
}

pub struct Testnet {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    ctl: PathBuf,
    dchatd: PathBuf,
    /// The metrics listeners of [`Layout::metrics_on`].
    pub metrics: Vec<SocketAddr>,
}

impl Testnet {
    /// Inits and starts every node, then waits for block 1 on validator1.
    pub fn up(ctl: &Path, dchatd: &str, layout: &Layout) -> Testnet {
        let mut tmp = tempfile::Builder::new()
            .prefix("dchat-bench-")
            .tempdir()
            .expect("temp dir");
        if std::env::var_os("DCHAT_BENCH_KEEP").is_some_and(|v| v == "1") {
            tmp.disable_cleanup(true);
        }
        let mut net = Testnet {
            dir: tmp.path().join("net"),
            _tmp: tmp,
            ctl: ctl.to_path_buf(),
            dchatd: PathBuf::from(dchatd),
            metrics: Vec::new(),
        };
        let d = net.d();
        // `DCHAT_BENCH_LOG_LEVEL` (default warn) for the nodes' logs;
        // `DCHAT_BENCH_KEEP=1` leaves the testnet directory for reading.
        let log_level = std::env::var("DCHAT_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
        let (validators, relays, users, interval) = (
            layout.validators.to_string(),
            layout.relays.to_string(),
            layout.users.to_string(),
            layout.block_interval_ms.to_string(),
        );
        net.ctl(&[
            "testnet",
            "init",
            &d,
            "--validators",
            &validators,
            "--relays",
            &relays,
            "--users",
            &users,
            "--block-interval-ms",
            &interval,
            "--log-level",
            &log_level,
        ]);
        for node in layout.metrics_on {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port");
            let config = net.dir.join(node).join("dchatd.toml");
            let mut text = std::fs::read_to_string(&config).expect("read a node's config");
            text.push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
            std::fs::write(&config, text).expect("write a node's config");
            net.metrics.push(addr);
        }
        for node in layout.behind_nat {
            let config = net.dir.join(node).join("dchatd.toml");
            let text = std::fs::read_to_string(&config).expect("read a node's config");
            // The first `listen` is [network]'s (the testnet writes it first).
            let start = text.find("\nlisten = [").expect("a network listen line") + 1;
            let end = start + text[start..].find('\n').expect("a whole line");
            let text = format!("{}listen = []{}", &text[..start], &text[end..]);
            std::fs::write(&config, text).expect("write a node's config");
        }
        net.ctl(&["testnet", "up", &d]);
        net.wait_height(&["validator1"], 1);
        net
    }

    pub fn d(&self) -> String {
        self.dir.display().to_string()
    }

    /// The pid of `node`'s dchatd, from its state lock.
    pub fn pid(&self, node: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(node).join("dchatd.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn socket(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("dchatd.sock")
    }

    /// Runs dchatctl; panics with its stderr unless it succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.ctl)
            .args(args)
            .env("DCHATD_BIN", &self.dchatd)
            .output()
            .expect("run dchatctl");
        assert!(
            out.status.success(),
            "dchatctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dchatctl --json ARGS` against `node`.
    pub fn json(&self, node: &str, args: &[&str]) -> Value {
        let s = self.socket(node).display().to_string();
        let mut all = vec!["--socket", &s, "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ctl(&all)).expect("dchatctl --json output")
    }

    /// Waits until every one of `nodes` has finalized height `h`.
    pub fn wait_height(&self, nodes: &[&str], h: u64) {
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            let heights: Vec<u64> = nodes
                .iter()
                .map(|n| self.json(n, &["chain", "status"])["height"].as_u64().unwrap_or(0))
                .collect();
            if heights.iter().all(|x| *x >= h) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{nodes:?} did not reach height {h}: {heights:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new(&self.ctl)
            .args(["testnet", "down"])
            .arg(&self.dir)
            .args(["--timeout", "5"])
            .output();
    }
}
