//! Observability figures of a dev node, measured on the real release binary:
//!
//! - scrape time of `GET /metrics` (p50/p99 over 1000 scrapes, each on a new
//!   connection as Prometheus does) on a node that has served control calls
//!   of every kind, errors included;
//! - the cost of metrics on the control round trip: `io.dchat.Daemon.Status`
//!   calls/s on a node without the metrics listener and on one with it while
//!   it is scraped 10 times a second, in alternating rounds of the same run;
//! - the in-process cost of counting one control call.
//!
//! Run with `cargo bench -p dchatd --bench observability`. It prints the
//! figures and a final `observability: key=value …` line for scripts.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dchat_control::{api, Client};
use dchat_testkit::NotifySocket;
use dchatd::metrics::Metrics;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{percentile, scrape};

const SCRAPES: usize = 1_000;
const WARMUP_CALLS: usize = 2_000;
const ROUND_CALLS: usize = 10_000;
const ROUNDS: usize = 9;
const SCRAPE_EVERY: Duration = Duration::from_millis(100);
const COUNT_CALLS: u32 = 200_000;
const COUNT_BATCHES: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The release `dchatd` cargo built for this bench.
const DCHATD: &str = env!("CARGO_BIN_EXE_dchatd");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("observability: dchatd = {DCHATD}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let plain_dir = tempfile::tempdir().expect("temp state dir");
    let scraped_dir = tempfile::tempdir().expect("temp state dir");
    let plain = Node::start(plain_dir.path(), false);
    let scraped = Node::start(scraped_dir.path(), true);
    let metrics = scraped.metrics.expect("the scraped node has a metrics listener");

    // A node that served requests: every read-only method, unknown methods
    // and failing calls, so every family has series and samples.
    runtime.block_on(busy(&scraped.socket));
    let mut scrape_ms = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let start = Instant::now();
        bytes = scrape(metrics).len();
        scrape_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "GET /metrics ({SCRAPES} scrapes, new connection each, {bytes} bytes): p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&scrape_ms, 0.5),
        percentile(&scrape_ms, 0.99),
        percentile(&scrape_ms, 1.0),
    );

    // Status round trips, rounds alternating between the two nodes; the
    // scraped node is scraped all the while.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                scrape(metrics);
                n += 1;
                std::thread::sleep(SCRAPE_EVERY);
            }
            n
        })
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..ROUNDS {
        without.push(runtime.block_on(status_rate(&plain.socket)));
        with.push(runtime.block_on(status_rate(&scraped.socket)));
    }
    stop.store(true, Ordering::Relaxed);
    let scrapes_during = scraper.join().expect("scraper thread");
    let (without_rate, with_rate) = (median(&without), median(&with));
    let (without_best, with_best) = (percentile(&without, 1.0), percentile(&with, 1.0));
    println!(
        "Status calls/s ({ROUNDS} alternating rounds of {ROUND_CALLS} on one connection): without metrics listener median {without_rate:.0} best {without_best:.0}  with listener scraped every {} ms median {with_rate:.0} best {with_best:.0}  (median {:+.1}%, best {:+.1}%; {scrapes_during} scrapes meanwhile)",
        SCRAPE_EVERY.as_millis(),
        (with_rate / without_rate - 1.0) * 100.0,
        (with_best / without_best - 1.0) * 100.0,
    );
    println!("  rounds without: {without:.0?}\n  rounds with:    {with:.0?}");

    // The best of a few batches: the least disturbed by other processes.
    let m = Metrics::new();
    let count_ns = (0..COUNT_BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..COUNT_CALLS {
                m.control_request(api::STATUS, Some(Duration::from_nanos(u64::from(i % 1000))), None);
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(COUNT_CALLS)
        })
        .fold(f64::INFINITY, f64::min);
    println!("counting one control call (counter + histogram, in process, best of {COUNT_BATCHES}): {count_ns:.0} ns");

    println!(
        "observability: scrape_p50_ms={:.3} scrape_p99_ms={:.3} scrape_bytes={bytes} status_calls_per_s_without={without_rate:.0} status_calls_per_s_with={with_rate:.0} status_calls_per_s_best_without={without_best:.0} status_calls_per_s_best_with={with_best:.0} count_call_ns={count_ns:.0}",
        percentile(&scrape_ms, 0.5),
        percentile(&scrape_ms, 0.99),
    );
}

/// Serves a spread of control calls, failing ones included.
async fn busy(socket: &Path) {
    let mut client = Client::connect(socket).await.expect("connect to the control socket");
    for _ in 0..1_000 {
        let _: api::Status = client.call(api::STATUS, &api::Empty {}).await.expect("Status");
        let _: api::Health = client.call(api::HEALTH, &api::Empty {}).await.expect("Health");
        let _: Result<serde_json::Value, _> = client
            .call(api::ACCOUNT_SHOW, &serde_json::json!({ "name": "nobody" }))
            .await;
        let _: Result<serde_json::Value, _> = client.call("io.dchat.Made.Up", &serde_json::json!({})).await;
    }
}

/// Status calls per second over one connection.
async fn status_rate(socket: &Path) -> f64 {
    let mut client = Client::connect(socket).await.expect("connect to the control socket");
    for _ in 0..WARMUP_CALLS {
        let _: api::Status = client.call(api::STATUS, &api::Empty {}).await.expect("Status");
    }
    let start = Instant::now();
    for _ in 0..ROUND_CALLS {
        let s: api::Status = client.call(api::STATUS, &api::Empty {}).await.expect("Status");
        std::hint::black_box(s);
    }
    ROUND_CALLS as f64 / start.elapsed().as_secs_f64()
}

/// A running dev node, stopped (and reaped) on drop.
struct Node {
    child: Child,
    socket: std::path::PathBuf,
    metrics: Option<SocketAddr>,
}

impl Node {
    fn start(state_dir: &Path, metrics: bool) -> Node {
        let mut notify = NotifySocket::new();
        // A free port for the listener, so the bench need not read logs.
        let addr = metrics.then(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        });
        let mut cmd = Command::new(DCHATD);
        cmd.args(["--dev", "--log-level", "warn", "--state-dir"])
            .arg(state_dir)
            .env("NOTIFY_SOCKET", notify.path())
            .env_remove("WATCHDOG_USEC")
            .env_remove("LISTEN_FDS")
            .env("DCHAT_METRICS_LISTEN", addr.map(|a| a.to_string()).unwrap_or_default())
            .env("DCHAT_HEALTH_LISTEN", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawn dchatd");
        let node = Node {
            child,
            socket: state_dir.join("dchatd.sock"),
            metrics: addr,
        };
        notify.wait_for("READY", "1", READY_TIMEOUT);
        node
    }

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

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}
