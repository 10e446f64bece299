//! Online backup of a large database, measured on the real release
//! binaries (issue 5):
//!
//! - backup throughput of `dchatctl db backup` against `cp` of the same
//!   file in the same run (target: ratio >= 0.5). The backup fsyncs its
//!   file, so the ratio is given against `cp` + fsync of the copy as well
//!   as against a bare `cp`, and cp is timed before and after the backup
//!   (the faster of each is used);
//! - the worst latency of `account create` calls made back to back by a
//!   concurrent client while the backup runs (target <= 50 ms), beside the
//!   same client's latencies before the backup.
//!
//! The node runs without a chain (no genesis file): with one, every create
//! also waits for its registration block (hundreds of ms in --dev), which
//! would hide the database's share of the latency.
//!
//! Run: `cargo build --release -p dchatctl && cargo bench -p dchatd --bench db_backup`.
//! `DCHAT_BENCH_DB_MB` sets the database size (default 1024),
//! `DCHAT_BENCH_DIR` where the files go (default: the temp dir), and
//! `DCHAT_BENCH_DCHATCTL` the dchatctl to run. Disk use
//! peaks at about three times the database size and is removed at the end.
//! Targets are printed beside the figures and never fail the run.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dchat_control::{api, Client};
use dchat_testkit::NotifySocket;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rusqlite::Connection;

use common::{dchatctl, percentile};

const DCHATD: &str = env!("CARGO_BIN_EXE_dchatd");
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Row size of the filler table: large rows fill a gigabyte quickly.
const ROW_BYTES: usize = 64 * 1024;
/// The writer's latencies before the backup, for comparison.
const BASELINE: Duration = Duration::from_secs(3);

const TARGET_RATIO: f64 = 0.5;
const TARGET_WORST_MS: f64 = 50.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let size_mb: u64 = std::env::var("DCHAT_BENCH_DB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let base = std::env::var_os("DCHAT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("dchat-db-backup-bench-")
        .tempdir_in(&base)
        .expect("bench directory");
    let dchatctl = dchatctl(DCHATD);
    println!("db_backup: dchatd = {DCHATD}, dchatctl = {}", dchatctl.display());
    println!("db_backup: files in {}", dir.path().display());

    let state = dir.path().join("state");
    let socket = dir.path().join("dchatd.sock");
    let config = dir.path().join("dchatd.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\ngroup = \"\"\n[chain]\ngenesis = \"{}\"\n",
            dir.path().join("no-genesis.json").display()
        ),
    )
    .expect("write the config");

    // A migrated database, then a filler table up to the size asked for.
    Node::start(&config, &state, &socket).stop();
    let db = state.join("dchat.sqlite3");
    let filled = Instant::now();
    fill(&db, size_mb * 1024 * 1024);
    let db_bytes = std::fs::metadata(&db).expect("stat the database").len();
    println!(
        "database: {:.0} MiB built in {:.1} s",
        db_bytes as f64 / MIB,
        filled.elapsed().as_secs_f64()
    );

    let mut node = Node::start(&config, &state, &socket);
    let cp_first = cp(&db, &dir.path().join("copy.db"));

    let writer = Writer::start(&socket);
    std::thread::sleep(BASELINE);
    let backup_file = dir.path().join("backup.db");
    let began = writer.elapsed();
    let t = Instant::now();
    let out = Command::new(&dchatctl)
        .args(["db", "backup", "--json", "--socket"])
        .arg(&socket)
        .arg(&backup_file)
        .output()
        .expect("run dchatctl db backup");
    let backup_s = t.elapsed().as_secs_f64();
    let ended = writer.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let samples = writer.finish();
    assert!(
        out.status.success(),
        "dchatctl db backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup report is JSON");
    let backup_bytes = report["bytes"].as_u64().unwrap_or(0);
    let snapshot_s = report["snapshot_ms"].as_f64().unwrap_or(0.0) / 1e3;
    remove_and_settle(&backup_file);
    let cp_second = cp(&db, &dir.path().join("copy.db"));
    node.stop();

    let cp_s = cp_first.plain.min(cp_second.plain);
    let cp_sync_s = cp_first.synced.min(cp_second.synced);
    let mb = backup_bytes as f64 / MIB;
    let during: Vec<f64> = samples
        .iter()
        .filter(|s| s.start < ended && s.start + s.took > began)
        .map(|s| s.took.as_secs_f64() * 1e3)
        .collect();
    let before: Vec<f64> = samples
        .iter()
        .filter(|s| s.start + s.took <= began)
        .map(|s| s.took.as_secs_f64() * 1e3)
        .collect();
    // When the worst calls happened, counted from the start of the backup.
    let mut worst_calls: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.start < ended && s.start + s.took > began)
        .map(|s| {
            (
                s.took.as_secs_f64() * 1e3,
                (s.start.as_secs_f64() - began.as_secs_f64()) * 1e3,
            )
        })
        .collect();
    worst_calls.sort_by(|a, b| b.0.total_cmp(&a.0));
    worst_calls.truncate(5);
    let ratio = cp_s / backup_s;
    let ratio_sync = cp_sync_s / backup_s;
    let worst = percentile(&during, 1.0);

    println!(
        "cp: {:.2} s ({:.0} MiB/s); cp + fsync: {:.2} s ({:.0} MiB/s)  [runs: {:.2}/{:.2} s and {:.2}/{:.2} s]",
        cp_s,
        db_bytes as f64 / MIB / cp_s,
        cp_sync_s,
        db_bytes as f64 / MIB / cp_sync_s,
        cp_first.plain,
        cp_first.synced,
        cp_second.plain,
        cp_second.synced,
    );
    println!(
        "dchatctl db backup: {backup_s:.2} s for {mb:.0} MiB ({:.0} MiB/s; of which the daemon's copy, hash and fsync {snapshot_s:.2} s)",
        mb / backup_s,
    );
    println!("throughput ratio: {ratio_sync:.2} of cp + fsync, {ratio:.2} of bare cp  (target >= {TARGET_RATIO})");
    println!(
        "account create latency before the backup ({} calls): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        before.len(),
        percentile(&before, 0.5),
        percentile(&before, 0.99),
        percentile(&before, 1.0),
    );
    println!(
        "account create latency during the backup ({} calls): p50 {:.1} ms  p99 {:.1} ms  max {worst:.1} ms  (target max <= {TARGET_WORST_MS} ms)",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
    );
    let worst_list: Vec<String> = worst_calls
        .iter()
        .map(|(took, at)| format!("{took:.1} ms at +{at:.0} ms"))
        .collect();
    println!("slowest calls during the backup: {}", worst_list.join(", "));
    println!(
        "db_backup: db_mib={:.0} cp_s={cp_s:.3} cp_fsync_s={cp_sync_s:.3} backup_s={backup_s:.3} snapshot_s={snapshot_s:.3} ratio_vs_cp_fsync={ratio_sync:.3} ratio_vs_cp={ratio:.3} creates_during={} create_p50_ms={:.2} create_max_ms={worst:.2} baseline_create_max_ms={:.2}",
        db_bytes as f64 / MIB,
        during.len(),
        percentile(&during, 0.5),
        percentile(&before, 1.0),
    );
    let met_ratio = ratio_sync >= TARGET_RATIO;
    let met_latency = worst <= TARGET_WORST_MS;
    println!(
        "db_backup: ratio target {} (vs cp + fsync), latency target {}",
        if met_ratio { "met" } else { "missed" },
        if met_latency { "met" } else { "missed" }
    );
}

const MIB: f64 = 1024.0 * 1024.0;

/// Adds a filler table of incompressible rows until the file has `bytes`.
fn fill(db: &Path, bytes: u64) {
    let conn = Connection::open(db).expect("open the database");
    conn.pragma_update(None, "synchronous", "off").expect("pragma");
    conn.execute_batch("CREATE TABLE bench_filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT")
        .expect("create the filler table");
    let rows = bytes / ROW_BYTES as u64;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut row = vec![0u8; ROW_BYTES];
    let mut done = 0;
    while done < rows {
        let tx = conn.unchecked_transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO bench_filler (data) VALUES (?1)")
                .expect("prepare");
            for _ in 0..1024.min(rows - done) {
                for chunk in row.chunks_exact_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    chunk.copy_from_slice(&state.to_le_bytes());
                }
                insert.execute([&row]).expect("insert");
                done += 1;
            }
        }
        tx.commit().expect("commit");
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    // Built with synchronous off, the file is a gigabyte of dirty pages;
    // a live node's database is on disk. Left dirty, it would be written
    // back in the middle of the measurement.
    let status = Command::new("sync").arg("-f").arg(db).status().expect("run sync -f");
    assert!(status.success(), "sync -f failed");
}

struct CpTimes {
    plain: f64,
    synced: f64,
}

/// Times `cp --reflink=never` of `from` (bare, then with an fsync of the
/// copy), removing the copy afterwards.
fn cp(from: &Path, to: &Path) -> CpTimes {
    let t = Instant::now();
    let status = Command::new("cp")
        .arg("--reflink=never")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp failed");
    let plain = t.elapsed().as_secs_f64();
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .expect("fsync the copy");
    let synced = t.elapsed().as_secs_f64();
    remove_and_settle(to);
    let _ = std::io::stdout().flush();
    CpTimes { plain, synced }
}

/// Removes a file and waits until the filesystem has committed that: on a
/// filesystem mounted with `discard` (this machine's root is), freeing a
/// gigabyte discards it in the next journal commit, which takes seconds,
/// and would otherwise land on whichever fsync comes next: the writer's.
fn remove_and_settle(path: &Path) {
    std::fs::remove_file(path).expect("remove a copy");
    let status = Command::new("sync")
        .arg("-f")
        .arg(path.parent().unwrap_or(Path::new(".")))
        .status()
        .expect("run sync -f");
    assert!(status.success(), "sync -f failed");
}

struct Sample {
    start: Duration,
    took: Duration,
}

/// Creates accounts back to back over one connection and times each call.
struct Writer {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    epoch: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(socket: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let epoch = Instant::now();
        let (s, out, socket) = (Arc::clone(&stop), Arc::clone(&samples), socket.to_path_buf());
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let mut client = Client::connect(&socket).await.expect("connect");
                let mut n = 0u64;
                while !s.load(Ordering::Relaxed) {
                    let params = api::CreateAccount {
                        name: format!("bench{n}"),
                        burner: None,
                    };
                    n += 1;
                    let start = epoch.elapsed();
                    let _: api::AccountReply = client.call(api::ACCOUNT_CREATE, &params).await.expect("create");
                    let took = epoch.elapsed() - start;
                    out.lock().expect("samples").push(Sample { start, took });
                }
            });
        });
        Writer {
            stop,
            samples,
            epoch,
            handle: Some(handle),
        }
    }

    fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread");
        }
        std::mem::take(&mut *self.samples.lock().expect("samples"))
    }
}

/// A dchatd without a chain, stopped on drop.
struct Node {
    child: Child,
}

impl Node {
    fn start(config: &Path, state: &Path, socket: &Path) -> Node {
        let mut notify = NotifySocket::new();
        let child = Command::new(DCHATD)
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("--socket")
            .arg(socket)
            .args(["--log-level", "warn"])
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
        node
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
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
