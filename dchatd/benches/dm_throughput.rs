//! Direct messages end to end on a real testnet (issue 4, "Figures to
//! report"): release `dchatd` and `dchatctl`, one validator, one relay, two
//! users; alice on user1 writes to bob on user2, 1 KB of text each.
//!
//! 1. Throughput: `DCHAT_BENCH_CONNS` control connections on user1 (default
//!    4), each keeping `DCHAT_BENCH_PIPELINE` SendDm calls in flight (default
//!    32), send `DCHAT_BENCH_DMS` messages (default 100,000, some 10 s of
//!    sending) as fast as the daemon takes them. 128 calls in flight keep
//!    the daemons busy; with 32 (4 × 8, the default before ADR 0017) they
//!    left a quarter of the machine idle, waiting for replies. A streaming ListDms on user2 times each arrival at
//!    bob. Reported: accepted/s at the sender, delivered/s end to end (first
//!    send → last arrival), and how many reached `delivered` at alice within
//!    a grace period. The counts are checked against the nodes' databases
//!    (read-only, WAL), since a stream that lags skips changes. Also the
//!    CPU time per DM of user1's and user2's daemons and of the whole
//!    machine over the burst (from `/proc`), and the rate the cores could
//!    carry at that cost.
//! 2. Latency: a steady 100 msg/s for 10 s on one connection; each text
//!    carries its send instant, bob's stream gives the arrival instant;
//!    p50/p99/max (the SendDm round trip is part of it).
//! 3. Via relay mailbox: user2 stopped; alice writes to carol (also on
//!    user2, so her mailbox starts empty) as fast as accepted, then at 100
//!    msg/s; the sender's stream times `relayed` (stored by relay1). Then
//!    user2 is started and the time until carol has all of them is measured
//!    from its READY.
//!
//! 4. Via a relay circuit: user5 and user6 listen nowhere (as behind NAT),
//!    hold reservations on relay1, and frank on user5 writes to grace on
//!    user6 as in 1: user1 -> relay -> user2 of the issue, the relay
//!    forwarding encrypted bytes over a circuit. Reported like 1, with the
//!    CPU of user5's, relay1's and user6's daemons.
//!
//! 5. Cost of metrics (issue 7), run first: user3 -> user4 (dave to erin) run with
//!    the Prometheus listener on both nodes, scraped 10 times a second each,
//!    user1 -> user2 without it; `DCHAT_BENCH_METRICS_DMS` (default 500)
//!    DMs per burst, in alternating rounds of the same run. Reported:
//!    delivered/s of each side (median of the rounds) and the scrape time
//!    of `GET /metrics` on those busy nodes.
//!
//! Run: `cargo bench -p dchatd --bench dm_throughput`. dchatctl is built in
//! release beside dchatd if missing (`DCHAT_BENCH_DCHATCTL` overrides).
//! `DCHAT_BENCH_LOG_LEVEL` sets the nodes' log level (default warn) and
//! `DCHAT_BENCH_KEEP=1` leaves the testnet directory, logs and databases
//! included, for reading afterwards.
//! Prints the figures, the targets beside them (never failing the run) and
//! a final `dm_throughput: key=value …` line for scripts.

#[path = "dm_throughput/client.rs"]
mod client;
mod common;
#[path = "dm_throughput/cpu.rs"]
mod cpu;
#[path = "dm_throughput/db.rs"]
mod db;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dchat_control::api::{self, Dm, DmList};
use dchat_control::frame::{read_frame, write_frame};
use dchat_control::{Call, Client, Reply, DEFAULT_MAX_FRAME};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use client::*;
use common::testnet::{Layout, Testnet};
use common::{dchatctl, env_num, loadavg, percentile, scrape};
use cpu::CpuUse;
use db::*;

const DCHATD: &str = env!("CARGO_BIN_EXE_dchatd");
const TEXT_BYTES: usize = 1024;
/// Give up on arrivals after this long without progress.
const STALL: Duration = Duration::from_secs(30);
const LATENCY_RATE: u64 = 100;
const LATENCY_SECS: u64 = 10;
const MAILBOX_LATENCY_SECS: u64 = 5;
/// Alternating rounds of the metrics-cost phase, per side.
const METRICS_ROUNDS: usize = 3;
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

const TARGET_PER_S: f64 = 10_000.0;
const TARGET_P99_MS: f64 = 10.0;

/// The instant texts are stamped against.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn wall_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = base();
    let n = env_num("DCHAT_BENCH_DMS", 100_000);
    let conns = env_num("DCHAT_BENCH_CONNS", 4);
    let window = env_num("DCHAT_BENCH_PIPELINE", 32);
    let mailbox_n = env_num("DCHAT_BENCH_MAILBOX_DMS", 400);
    let ctl = dchatctl(DCHATD);
    println!("dm_throughput: dchatd = {DCHATD}, dchatctl = {}", ctl.display());
    println!("dm_throughput: {n} DMs of {TEXT_BYTES} bytes, {conns} connections x {window} in flight; load average at start: {}", loadavg());

    let net = Testnet::up(
        &ctl,
        DCHATD,
        &Layout {
            validators: 1,
            relays: 1,
            users: 6,
            block_interval_ms: 300,
            metrics_on: &["user3", "user4"],
            behind_nat: &["user5", "user6"],
        },
    );
    println!(
        "testnet: {} (validator1, relay1, user1..6; block interval 300 ms; metrics listener on user3 and user4; user5 and user6 listen nowhere)",
        net.dir.display()
    );
    net.json("user1", &["account", "create", "alice"]);
    net.json("user2", &["account", "create", "bob"]);
    net.json("user2", &["account", "create", "carol"]);
    net.json("user3", &["account", "create", "dave"]);
    net.json("user4", &["account", "create", "erin"]);
    net.json("user5", &["account", "create", "frank"]);
    net.json("user6", &["account", "create", "grace"]);
    let top = net.json("validator1", &["chain", "status"])["height"]
        .as_u64()
        .expect("height");
    net.wait_height(&["user1", "user2", "user3", "user4", "user5", "user6"], top);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let metrics_n = env_num("DCHAT_BENCH_METRICS_DMS", 500);
    let summary = runtime.block_on(run(&net, n, conns, window, mailbox_n, metrics_n));
    println!("load average at the end: {}", loadavg());
    println!("{summary}");
}

async fn run(net: &Testnet, n: usize, conns: usize, window: usize, mailbox_n: usize, metrics_n: usize) -> String {
    let user1 = net.socket("user1");
    let user2 = net.socket("user2");
    let alice_db = net.dir.join("user1").join("dchat.sqlite3");
    let bob_db = net.dir.join("user2").join("dchat.sqlite3");
    let mut bob = watch(&user2, json!({ "user": "bob" })).await;
    warm_up(&user1, "bob", &mut bob).await;
    let user3 = net.socket("user3");
    let mut erin = watch(&net.socket("user4"), json!({ "user": "erin" })).await;
    warm_up(&user3, "erin", &mut erin).await;

    // 1. What the metrics listener costs (issue 7), first, while both
    // pairs of nodes are equally fresh.
    println!(
        "\n== 1. cost of metrics: user1 -> user2 without a listener, user3 -> user4 with one scraped every {} ms, {METRICS_ROUNDS} alternating rounds of {metrics_n} DMs ==",
        SCRAPE_EVERY.as_millis()
    );
    let (mut off, mut on, mut scrapes) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..METRICS_ROUNDS {
        // The first burst after a pause runs slower: odd rounds start with
        // the side that has the listener.
        let sides = if round % 2 == 0 { [false, true] } else { [true, false] };
        for with_listener in sides {
            if !with_listener {
                let plain = burst(
                    &user1,
                    "bob",
                    &format!("off{round}"),
                    metrics_n,
                    conns,
                    window,
                    &mut bob,
                )
                .await;
                println!(
                    "round {round}: without the listener {:.0}/s ({} arrived)",
                    plain.delivered_per_s, plain.arrivals.count
                );
                off.push(plain.delivered_per_s);
                continue;
            }
            let scraping = Arc::new(AtomicBool::new(true));
            let scraper = {
                let (scraping, targets) = (Arc::clone(&scraping), net.metrics.clone());
                std::thread::spawn(move || scrape_while(&scraping, &targets))
            };
            let watched = burst(
                &user3,
                "erin",
                &format!("on{round}"),
                metrics_n,
                conns,
                window,
                &mut erin,
            )
            .await;
            scraping.store(false, Ordering::Relaxed);
            scrapes.extend(scraper.join().expect("scraper thread"));
            println!(
                "round {round}: with the listener scraped {:.0}/s ({} arrived)",
                watched.delivered_per_s, watched.arrivals.count
            );
            on.push(watched.delivered_per_s);
        }
    }
    let (off_median, on_median) = (percentile(&off, 0.5), percentile(&on, 0.5));
    let metrics_cost_pct = (1.0 - on_median / off_median) * 100.0;
    println!(
        "delivered end to end, median of {METRICS_ROUNDS}: without listener {off_median:.0}/s, with listener scraped {on_median:.0}/s ({metrics_cost_pct:+.1} % cost)"
    );
    let (scrape_p50, scrape_p99) = (percentile(&scrapes, 0.5), percentile(&scrapes, 0.99));
    println!(
        "GET /metrics on the busy nodes: {} scrapes, p50 {scrape_p50:.2} ms  p99 {scrape_p99:.2} ms  max {:.2} ms",
        scrapes.len(),
        percentile(&scrapes, 1.0),
    );
    drop(erin);

    // 1b. Throughput.
    println!("\n== 1b. throughput, user1 -> user2 online ==");
    println!("load average before: {}", loadavg());
    let first_send_wall = wall_ms();
    let cpu = CpuUse::start(net, &["user1", "user2"]);
    let b = burst(&user1, "bob", "thr", n, conns, window, &mut bob).await;
    let cpu = cpu.stop();
    let (sent, arrivals, accept_time) = (b.sent, b.arrivals, b.accept_time);
    let accepted_per_s = sent.ok as f64 / accept_time.as_secs_f64();
    let last = arrivals.last_at.map_or(f64::NAN, |t| (t - b.t0).as_secs_f64());
    let delivered_per_s = b.delivered_per_s;
    println!(
        "accepted at user1: {} of {n} in {:.2} s = {accepted_per_s:.0}/s ({} refused{}); SendDm round trip p50 {:.2} ms p99 {:.2} ms",
        sent.ok,
        accept_time.as_secs_f64(),
        sent.errors,
        sent.first_error.as_deref().map(|e| format!(", e.g. {e}")).unwrap_or_default(),
        percentile(&sent.rtt_ms, 0.5),
        percentile(&sent.rtt_ms, 0.99),
    );
    println!(
        "arrived at bob's stream: {} in {last:.2} s from the first send = {delivered_per_s:.0}/s end to end  (target >= {TARGET_PER_S:.0}/s: {})",
        arrivals.count,
        verdict(delivered_per_s >= TARGET_PER_S)
    );
    cpu.report(arrivals.count);
    let bob_rows = db_count_in(&bob_db, "bob", "thr");
    if let (count, Some(last_ms)) = bob_rows {
        let span = (last_ms - first_send_wall) as f64 / 1e3;
        println!(
            "  bob's database: {count} stored, last received_at {span:.2} s after the first send = {:.0}/s",
            count as f64 / span
        );
    }
    let grace = Instant::now();
    let delivered = wait_states(&alice_db, "alice", "thr", "delivered", sent.ok, STALL).await;
    println!(
        "`delivered` at alice: {delivered} of {} ({:.1} s after the last arrival); states now: {:?}",
        sent.ok,
        grace.elapsed().as_secs_f64(),
        db_states(&alice_db, "alice", "thr"),
    );
    println!("load average after: {}", loadavg());

    // 2. Latency at a steady rate.
    println!("\n== 2. latency at {LATENCY_RATE} msg/s for {LATENCY_SECS} s, user1 -> user2 online ==");
    let lat_n = LATENCY_RATE * LATENCY_SECS;
    let steady = tokio::spawn(steady_sender(user1.clone(), "bob", "lat", lat_n));
    let lat = collect(&mut bob, "lat", lat_n as usize, STALL).await;
    let lat_sent = steady.await.expect("steady sender");
    let (p50, p99, max) = (
        percentile(&lat.latency_ms, 0.5),
        percentile(&lat.latency_ms, 0.99),
        percentile(&lat.latency_ms, 1.0),
    );
    println!(
        "arrived {} of {lat_n}: send -> bob's stream p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  (target p99 <= {TARGET_P99_MS} ms: {}); SendDm round trip p50 {:.2} ms p99 {:.2} ms",
        lat.count,
        verdict(p99 <= TARGET_P99_MS),
        percentile(&lat_sent.rtt_ms, 0.5),
        percentile(&lat_sent.rtt_ms, 0.99),
    );
    drop(bob);

    // 3. Via the relay's mailbox.
    println!("\n== 3. via relay mailbox: user2 stopped, alice -> carol ==");
    net.ctl(&["testnet", "down", &net.d(), "user2", "--timeout", "10"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut alice = watch(&user1, json!({ "with": "carol" })).await;
    let t0 = Instant::now();
    let mut pumps = Vec::new();
    for c in 0..conns {
        let seqs: Vec<u64> = (c..mailbox_n).step_by(conns).map(|s| s as u64).collect();
        pumps.push(tokio::spawn(pump(
            user1.clone(),
            "carol".into(),
            "mbx".into(),
            seqs,
            window,
        )));
    }
    let relayed = collect_state(&mut alice, "mbx", "relayed", mailbox_n, STALL).await;
    let mut msent = SendStats::default();
    for p in pumps {
        msent.merge(p.await.expect("sender task"));
    }
    let relay_last = relayed.last_at.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
    let relay_store_per_s = relayed.count as f64 / relay_last;
    println!(
        "accepted {} of {mailbox_n}; `relayed` (stored by relay1) {} in {relay_last:.2} s = {relay_store_per_s:.0}/s",
        msent.ok, relayed.count,
    );
    let mlat_n = LATENCY_RATE * MAILBOX_LATENCY_SECS;
    let steady = tokio::spawn(steady_sender(user1.clone(), "carol", "mlt", mlat_n));
    let mlat = collect_state(&mut alice, "mlt", "relayed", mlat_n as usize, STALL).await;
    steady.await.expect("steady sender");
    println!(
        "at {LATENCY_RATE} msg/s for {MAILBOX_LATENCY_SECS} s: send -> `relayed` at alice p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms ({} of {mlat_n})",
        percentile(&mlat.latency_ms, 0.5),
        percentile(&mlat.latency_ms, 0.99),
        percentile(&mlat.latency_ms, 1.0),
        mlat.count,
    );
    drop(alice);
    let waiting = msent.ok + mlat.count;
    let up_wall = wall_ms();
    let up = Instant::now();
    net.ctl(&["testnet", "up", &net.d(), "user2"]);
    let ready = up.elapsed();
    let ready_wall = up_wall + i64::try_from(ready.as_millis()).unwrap_or(0);
    let mut have = 0;
    let mut progress = Instant::now();
    while have < waiting && progress.elapsed() < STALL {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = db_count_in(&bob_db, "carol", "mbx").0 + db_count_in(&bob_db, "carol", "mlt").0;
        if now > have {
            have = now;
            progress = Instant::now();
        }
    }
    let last_ms = [
        db_count_in(&bob_db, "carol", "mbx").1,
        db_count_in(&bob_db, "carol", "mlt").1,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(ready_wall);
    let drain_s = ((last_ms - ready_wall).max(1)) as f64 / 1e3;
    let relay_drain_per_s = have as f64 / drain_s;
    println!(
        "user2 started (READY after {:.2} s): carol has {have} of {waiting}, the last {drain_s:.2} s after READY = {relay_drain_per_s:.0}/s via relay mailbox",
        ready.as_secs_f64(),
    );
    let delivered_mbx = wait_states(&alice_db, "alice", "mbx", "delivered", msent.ok, STALL).await;
    println!("`delivered` at alice afterwards: {delivered_mbx} of {}", msent.ok);

    // 4. Through a relay circuit.
    println!("\n== 4. throughput via a relay circuit, user5 -> relay1 -> user6 (both listen nowhere) ==");
    let user5 = net.socket("user5");
    let mut grace = watch(&net.socket("user6"), json!({ "user": "grace" })).await;
    warm_up(&user5, "grace", &mut grace).await;
    let cpu = CpuUse::start(net, &["user5", "relay1", "user6"]);
    let c = burst(&user5, "grace", "cir", n, conns, window, &mut grace).await;
    let cpu = cpu.stop();
    let circuit_per_s = c.delivered_per_s;
    println!(
        "accepted at user5: {} of {n} in {:.2} s ({} refused); arrived at grace's stream: {} = {circuit_per_s:.0}/s end to end  (target >= {TARGET_PER_S:.0}/s: {})",
        c.sent.ok,
        c.accept_time.as_secs_f64(),
        c.sent.errors,
        c.arrivals.count,
        verdict(circuit_per_s >= TARGET_PER_S)
    );
    cpu.report(c.arrivals.count);
    let frank_db = net.dir.join("user5").join("dchat.sqlite3");
    println!(
        "`delivered` at frank: {} of {}",
        wait_states(&frank_db, "frank", "cir", "delivered", c.sent.ok, STALL).await,
        c.sent.ok
    );

    format!(
        "dm_throughput: dms={n} conns={conns} pipeline={window} accepted_per_s={accepted_per_s:.0} delivered_per_s={delivered_per_s:.0} arrived={} delivered_at_sender={delivered} latency_p50_ms={p50:.2} latency_p99_ms={p99:.2} latency_max_ms={max:.2} relay_store_per_s={relay_store_per_s:.0} relay_drain_per_s={relay_drain_per_s:.0} relay_fetched={have}/{waiting} circuit_per_s={circuit_per_s:.0} metrics_off_per_s={off_median:.0} metrics_on_per_s={on_median:.0} metrics_cost_pct={metrics_cost_pct:.1} scrape_p50_ms={scrape_p50:.2} scrape_p99_ms={scrape_p99:.2}",
        arrivals.count
    )
}

/// Sends DMs until they reach the recipient's node directly: presence is
/// announced every 3 s, before which the outbox falls back to the relay,
/// whose mailbox the recipient polls every 2 s. Three quick arrivals in a
/// row are direct.
async fn warm_up(sender: &Path, to: &str, rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>) {
    let warm = Instant::now();
    let mut quick = 0;
    for i in 0..60 {
        let sent = Instant::now();
        send_one(sender, to, &text("warm", i)).await;
        let arrived = next_arrival(rx, "warm", Duration::from_secs(10)).await;
        assert!(arrived.is_some(), "warm-up DM {i} did not reach {to}");
        if sent.elapsed() < Duration::from_millis(300) {
            quick += 1;
            if quick == 3 {
                break;
            }
        } else {
            quick = 0;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "warm-up to {to}: {} after {:.1} s",
        if quick == 3 {
            "DMs reach the recipient's node directly"
        } else {
            "DMs still slow to arrive (relay path?)"
        },
        warm.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(rx);
}

struct Burst {
    t0: Instant,
    sent: SendStats,
    arrivals: Arrivals,
    accept_time: Duration,
    /// Arrivals per second from the first send to the last arrival.
    delivered_per_s: f64,
}

/// `n` DMs tagged `tag` to `to`, `conns` connections x `window` in flight,
/// timed until they arrive on the recipient's stream `rx`.
async fn burst(
    sender: &Path,
    to: &str,
    tag: &str,
    n: usize,
    conns: usize,
    window: usize,
    rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>,
) -> Burst {
    let t0 = Instant::now();
    let mut pumps = Vec::new();
    for c in 0..conns {
        let seqs: Vec<u64> = (c..n).step_by(conns).map(|s| s as u64).collect();
        pumps.push(tokio::spawn(pump(
            sender.to_path_buf(),
            to.to_string(),
            tag.to_string(),
            seqs,
            window,
        )));
    }
    let pumped = tokio::spawn(async move {
        let mut all = SendStats::default();
        for p in pumps {
            all.merge(p.await.expect("sender task"));
        }
        (all, t0.elapsed())
    });
    let arrivals = collect(rx, tag, n, STALL).await;
    let (sent, accept_time) = pumped.await.expect("senders");
    let last = arrivals.last_at.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
    Burst {
        t0,
        delivered_per_s: arrivals.count as f64 / last,
        sent,
        arrivals,
        accept_time,
    }
}

/// Scrapes every target's `/metrics` each `SCRAPE_EVERY` while `go` holds,
/// a new connection each time as Prometheus does; the times in ms.
fn scrape_while(go: &AtomicBool, targets: &[SocketAddr]) -> Vec<f64> {
    let mut times = Vec::new();
    while go.load(Ordering::Relaxed) {
        for addr in targets {
            let t = Instant::now();
            let body = scrape(*addr);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                body.contains("dchat_messages_sent_total"),
                "a scrape of {addr} without the message counters"
            );
        }
        std::thread::sleep(SCRAPE_EVERY);
    }
    times
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}
