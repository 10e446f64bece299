//! Foundation figures of a dev node, measured on the real release binary:
//!
//! - cold start: spawn → `READY=1` with an empty state directory;
//! - idle RSS: `VmRSS` after READY and 2 s of idling;
//! - control round trip: `io.dchat.Daemon.Status` over one persistent
//!   connection.
//!
//! Run with `cargo bench -p dchatd --bench foundation`. It prints the
//! figures and a final `foundation: key=value …` line for scripts; targets
//! are printed beside them but never fail the run (a loaded CI machine is
//! not a regression).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dchat_control::{api, Client};
use dchat_testkit::NotifySocket;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::percentile;

const COLD_RUNS: usize = 20;
const IDLE: Duration = Duration::from_secs(2);
const WARMUP_CALLS: usize = 1_000;
const TIMED_CALLS: usize = 20_000;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET_COLD_P50_MS: f64 = 100.0;
const TARGET_IDLE_RSS_MB: f64 = 20.0;
const TARGET_RTT_P50_US: f64 = 200.0;

/// The release `dchatd` cargo built for this bench.
const DCHATD: &str = env!("CARGO_BIN_EXE_dchatd");

fn main() {
    // `cargo bench -- --list` and friends pass flags; there is nothing to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("foundation: dchatd = {DCHATD}");

    let cold = cold_starts();
    let cold_ms: Vec<f64> = cold.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!(
        "cold start to READY ({COLD_RUNS} runs, empty state dir): min {:.1} ms  p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms  (target p50 <= {TARGET_COLD_P50_MS} ms)",
        percentile(&cold_ms, 0.0),
        percentile(&cold_ms, 0.5),
        percentile(&cold_ms, 0.9),
        percentile(&cold_ms, 1.0),
    );

    let state = tempfile::tempdir().expect("temp state dir");
    let mut node = Node::start(state.path());
    std::thread::sleep(IDLE);
    let idle_rss_mb = rss_mb(node.pid());
    println!(
        "idle RSS of a dev node after READY + {} s: {idle_rss_mb:.1} MB  (target <= {TARGET_IDLE_RSS_MB} MB)",
        IDLE.as_secs()
    );

    let rtt = status_round_trips(&state.path().join("dchatd.sock"));
    let rss_after_mb = rss_mb(node.pid());
    println!(
        "Status round trip ({TIMED_CALLS} calls on one connection after {WARMUP_CALLS} warm-up): p50 {:.1} µs  p99 {:.1} µs  p999 {:.1} µs  max {:.1} µs  {:.0} calls/s  (target p50 <= {TARGET_RTT_P50_US} µs)",
        rtt.p50_us, rtt.p99_us, rtt.p999_us, rtt.max_us, rtt.calls_per_s,
    );
    println!("RSS after the round-trip run: {rss_after_mb:.1} MB");
    node.stop();

    println!(
        "foundation: cold_start_min_ms={:.1} cold_start_p50_ms={:.1} cold_start_p90_ms={:.1} cold_start_max_ms={:.1} idle_rss_mb={idle_rss_mb:.1} status_rtt_p50_us={:.1} status_rtt_p99_us={:.1} status_rtt_p999_us={:.1} status_calls_per_s={:.0}",
        percentile(&cold_ms, 0.0),
        percentile(&cold_ms, 0.5),
        percentile(&cold_ms, 0.9),
        percentile(&cold_ms, 1.0),
        rtt.p50_us,
        rtt.p99_us,
        rtt.p999_us,
        rtt.calls_per_s,
    );
    let misses: Vec<&str> = [
        (percentile(&cold_ms, 0.5) > TARGET_COLD_P50_MS, "cold_start_p50_ms"),
        (idle_rss_mb > TARGET_IDLE_RSS_MB, "idle_rss_mb"),
        (rtt.p50_us > TARGET_RTT_P50_US, "status_rtt_p50_us"),
    ]
    .into_iter()
    .filter_map(|(missed, name)| missed.then_some(name))
    .collect();
    if misses.is_empty() {
        println!("foundation: all targets met");
    } else {
        println!("foundation: targets missed: {}", misses.join(", "));
    }
}

/// A running dev node, stopped (and reaped) on drop.
struct Node {
    child: Child,
}

impl Node {
    /// Spawns `dchatd --dev` on `state_dir` and waits for `READY=1`.
    fn start(state_dir: &Path) -> Node {
        Node::start_timed(state_dir).0
    }

    /// Like [`Node::start`], also returning the time from spawn to READY.
    fn start_timed(state_dir: &Path) -> (Node, Duration) {
        let mut notify = NotifySocket::new();
        let started = Instant::now();
        let child = Command::new(DCHATD)
            .args(["--dev", "--log-level", "warn", "--state-dir"])
            .arg(state_dir)
            .env("NOTIFY_SOCKET", notify.path())
            .env_remove("WATCHDOG_USEC")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dchatd");
        let node = Node { child };
        notify.wait_for("READY", "1", READY_TIMEOUT);
        let took = started.elapsed();
        (node, took)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; SIGKILL if it takes longer than 10 s.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cold_starts() -> Vec<Duration> {
    (0..COLD_RUNS)
        .map(|_| {
            let state = tempfile::tempdir().expect("temp state dir");
            let (mut node, took) = Node::start_timed(state.path());
            node.stop();
            took
        })
        .collect()
}

/// `VmRSS` of `pid` in MiB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb / 1024.0
}

struct RoundTrips {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    calls_per_s: f64,
}

fn status_round_trips(socket: &Path) -> RoundTrips {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut client = Client::connect(socket).await.expect("connect to the control socket");
        for _ in 0..WARMUP_CALLS {
            let _: api::Status = client.call(api::STATUS, &api::Empty {}).await.expect("Status");
        }
        let mut samples = Vec::with_capacity(TIMED_CALLS);
        let all = Instant::now();
        for _ in 0..TIMED_CALLS {
            let one = Instant::now();
            let status: api::Status = client.call(api::STATUS, &api::Empty {}).await.expect("Status");
            samples.push(one.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(status);
        }
        let total = all.elapsed();
        RoundTrips {
            p50_us: percentile(&samples, 0.5),
            p99_us: percentile(&samples, 0.99),
            p999_us: percentile(&samples, 0.999),
            max_us: percentile(&samples, 1.0),
            calls_per_s: TIMED_CALLS as f64 / total.as_secs_f64(),
        }
    })
}
