//! The chain on a real 4-validator testnet (issue 3, "Figures to report"),
//! release binaries, at a block interval of 1 s and of 200 ms:
//!
//! - committed transactions per second at saturation (target >= 5,000):
//!   account registrations, each from a fresh key, signed up front; for
//!   `DCHAT_BENCH_SATURATION_SECS` (default 20) one submitter per validator
//!   adds 1,000 (`io.dchat.Chain.Submit`) whenever that validator's pool
//!   falls below 8,000, so a proposer never runs dry; the validators relay
//!   them to each other. The rate is the transactions of the blocks final
//!   after a 4 s warm-up over the rest of the run;
//! - finality latency p50/p99 at a light load (target p50 <= interval +
//!   50 ms): `DCHAT_BENCH_LATENCY_TXS` (default 100) single registrations,
//!   one every 50 ms, each submitted to validator1; the latency of one is
//!   the time from its submission to the moment validator1 reports the block
//!   that holds it as final (polled every 5 ms). The time from each block's
//!   proposal (its timestamp) to that moment is given as well.
//!
//! Run: `cargo bench -p dchatd --bench chain_throughput`
//! (`DCHAT_BENCH_INTERVALS=1000,200` picks the intervals). Targets are
//! printed beside the figures and never fail the run.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dchat_keyfile::Identity;
use dchat_testkit::call;
use dchatd::ledger::{SignedTx, TxKind};
use serde_json::{json, Value};

use common::testnet::{Layout, Testnet};
use common::{dchatctl, env_num, loadavg, percentile};

const DCHATD: &str = env!("CARGO_BIN_EXE_dchatd");
const VALIDATORS: [&str; 4] = ["validator1", "validator2", "validator3", "validator4"];
/// Transactions per `Submit` call (the daemon's limit).
const BATCH: usize = 1000;
/// A submitter adds a batch whenever its validator's pool is below this
/// (the pool holds at most 20,000).
const LOW_WATER: u64 = 8000;
/// Transactions signed ahead per second of saturation: more than the
/// chain can take plus what the four pools hold (4 x LOW_WATER and more),
/// which at 5,200 tx/s over 20 s used up 6,000 a second.
const SATURATION_MAX_TPS: usize = 10_000;
/// Blocks final before this are left out of the saturation rate.
const WARMUP: Duration = Duration::from_secs(4);
/// How long a run may go without a new final transaction before it stops.
const STALL: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);
const LATENCY_GAP: Duration = Duration::from_millis(50);

const TARGET_TPS: f64 = 5_000.0;
const TARGET_EXTRA_MS: f64 = 50.0;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let saturation_secs = env_num("DCHAT_BENCH_SATURATION_SECS", 20) as u64;
    let latency_txs = env_num("DCHAT_BENCH_LATENCY_TXS", 100);
    let intervals: Vec<u64> = std::env::var("DCHAT_BENCH_INTERVALS")
        .unwrap_or_else(|_| "1000,200".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let ctl = dchatctl(DCHATD);
    println!("chain_throughput: dchatd = {DCHATD}, dchatctl = {}", ctl.display());
    println!("chain_throughput: 4 validators; {saturation_secs} s at saturation, {latency_txs} transactions for latency; load average at start: {}", loadavg());
    let mut summary = Vec::new();
    for interval in intervals {
        let net = Testnet::up(
            &ctl,
            DCHATD,
            &Layout {
                validators: 4,
                relays: 0,
                users: 0,
                block_interval_ms: interval,
                metrics_on: &[],
                behind_nat: &[],
            },
        );
        println!("\n== block interval {interval} ms: testnet {}", net.dir.display());
        let chain_id = net.json("validator1", &["chain", "status"])["chain_id"]
            .as_str()
            .expect("chain_id")
            .to_string();
        let latency = latency_phase(&net, &chain_id, interval, latency_txs);
        let saturation = saturation_phase(&net, &chain_id, interval, saturation_secs);
        summary.push(format!("interval {interval} ms: {saturation}; {latency}"));
        println!("load average: {}", loadavg());
    }
    println!("\nsummary (targets: >= {TARGET_TPS} tx/s; finality p50 <= interval + {TARGET_EXTRA_MS} ms):");
    for line in summary {
        println!("  {line}");
    }
}

/// Fresh registrations, signed: names `<tag>-<i>`.
fn registrations(chain_id: &str, tag: &str, n: usize) -> Vec<SignedTx> {
    (0..n)
        .map(|i| {
            let identity = Identity::generate().expect("a key");
            let kind = TxKind::RegisterAccount {
                name: format!("{tag}-{i}"),
                identity_key: identity.identity_public(),
                messaging_key: identity.messaging_public(),
            };
            SignedTx::create(&identity, chain_id, 0, kind)
        })
        .collect()
}

/// Submits `txs` to `node`; panics on a refusal (the bench signs valid ones).
fn submit(net: &Testnet, node: &str, txs: &[SignedTx]) {
    let hexes: Vec<String> = txs.iter().map(|t| hex::encode(t.encode())).collect();
    let reply = call(
        &net.socket(node),
        "io.dchat.Chain.Submit",
        json!({ "transactions": hexes }),
    );
    assert!(reply.get("error").is_none(), "Submit to {node}: {reply}");
    let refused: Vec<&Value> = reply["parameters"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(
        refused.is_empty(),
        "{node} refused {} of {}: {:?}",
        refused.len(),
        txs.len(),
        refused.first()
    );
}

/// A number from `node`'s `io.dchat.Chain.Status` (`height`, `mempool`).
fn status(net: &Testnet, node: &str, field: &str) -> u64 {
    let reply = call(&net.socket(node), "io.dchat.Chain.Status", json!({}));
    reply["parameters"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("Chain.Status of {node} has no {field}: {reply}"))
}

/// A final block: its proposal time and the ids it holds.
fn block(net: &Testnet, node: &str, h: u64) -> (u64, Vec<String>) {
    let b = call(&net.socket(node), "io.dchat.Chain.Block", json!({ "height": h }));
    let p = &b["parameters"];
    let ts = p["timestamp_ms"].as_u64().unwrap_or_else(|| panic!("block {h}: {b}"));
    let ids = p["txs"]
        .as_array()
        .expect("txs")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    (ts, ids)
}

/// Watches validator1's final blocks: for every new one, the wall time it
/// was first seen final, its proposal time and its transaction ids.
struct Watcher<'a> {
    net: &'a Testnet,
    seen: u64,
}

struct Final {
    at: Instant,
    at_ms: u64,
    proposed_ms: u64,
    ids: Vec<String>,
}

impl Watcher<'_> {
    fn new(net: &Testnet) -> Watcher<'_> {
        Watcher {
            seen: status(net, "validator1", "height"),
            net,
        }
    }

    fn poll(&mut self) -> Vec<Final> {
        let top = status(self.net, "validator1", "height");
        let (at, at_ms) = (Instant::now(), now_ms());
        let mut out = Vec::new();
        while self.seen < top {
            self.seen += 1;
            let (proposed_ms, ids) = block(self.net, "validator1", self.seen);
            out.push(Final {
                at,
                at_ms,
                proposed_ms,
                ids,
            });
        }
        out
    }
}

fn latency_phase(net: &Testnet, chain_id: &str, interval: u64, n: usize) -> String {
    let txs = registrations(chain_id, &format!("lat{interval}"), n);
    let mut watcher = Watcher::new(net);
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut tx_ms = Vec::new();
    let mut block_ms = Vec::new();
    let mut next = 0usize;
    let mut last_progress = Instant::now();
    let mut next_send = Instant::now();
    while tx_ms.len() < n && last_progress.elapsed() < STALL {
        if next < n && Instant::now() >= next_send {
            sent.insert(hex::encode(txs[next].id()), Instant::now());
            submit(net, "validator1", &txs[next..=next]);
            next += 1;
            next_send += LATENCY_GAP;
        }
        for f in watcher.poll() {
            let mut ours = false;
            for id in &f.ids {
                if let Some(at) = sent.remove(id) {
                    tx_ms.push(f.at.duration_since(at).as_secs_f64() * 1e3);
                    ours = true;
                }
            }
            if ours {
                block_ms.push(f.at_ms.saturating_sub(f.proposed_ms) as f64);
            }
            last_progress = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    let (p50, p99) = (percentile(&tx_ms, 0.5), percentile(&tx_ms, 0.99));
    let (b50, b99) = (percentile(&block_ms, 0.5), percentile(&block_ms, 0.99));
    let met = if p50 <= interval as f64 + TARGET_EXTRA_MS {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "latency, {} of {n} single registrations one every {} ms: submit -> final p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms (target p50 <= {} ms: {met}); block proposal -> final p50 {b50:.0} ms, p99 {b99:.0} ms over {} blocks",
        tx_ms.len(),
        LATENCY_GAP.as_millis(),
        percentile(&tx_ms, 1.0),
        interval as f64 + TARGET_EXTRA_MS,
        block_ms.len()
    );
    format!("finality p50 {p50:.0} ms p99 {p99:.0} ms ({met}); proposal->final p50 {b50:.0} ms")
}

fn saturation_phase(net: &Testnet, chain_id: &str, interval: u64, secs: u64) -> String {
    let duration = Duration::from_secs(secs);
    let n = SATURATION_MAX_TPS * usize::try_from(secs).unwrap_or(usize::MAX);
    let signed_at = Instant::now();
    let txs = registrations(chain_id, &format!("sat{interval}"), n);
    println!(
        "saturation: {n} registrations signed in {:.2} s, submitted for {secs} s keeping each validator's pool at {LOW_WATER}+",
        signed_at.elapsed().as_secs_f64()
    );
    let chunks: Vec<&[SignedTx]> = txs.chunks(BATCH).collect();
    let next_chunk = AtomicUsize::new(0);
    let mut watcher = Watcher::new(net);
    let started = Instant::now();
    let (finals, submitted) = std::thread::scope(|s| {
        // One submitter per validator: whenever its pool runs low, the
        // next 1000 (which it relays to the others).
        let submitters: Vec<_> = VALIDATORS
            .iter()
            .map(|node| {
                let (chunks, next_chunk) = (&chunks, &next_chunk);
                s.spawn(move || {
                    let mut sent = 0;
                    while started.elapsed() < duration {
                        if status(net, node, "mempool") >= LOW_WATER {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        let Some(chunk) = chunks.get(next_chunk.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        submit(net, node, chunk);
                        sent += chunk.len();
                    }
                    sent
                })
            })
            .collect();
        let mut finals = Vec::new();
        while started.elapsed() < duration {
            for f in watcher.poll() {
                finals.push((f.at.duration_since(started), f.ids.len()));
            }
            std::thread::sleep(POLL);
        }
        let submitted: usize = submitters.into_iter().map(|h| h.join().expect("a submitter")).sum();
        (finals, submitted)
    });
    assert!(
        submitted < n,
        "all {n} presigned transactions went in: raise SATURATION_MAX_TPS"
    );
    // The steady window: from the warm-up to the end. The rate is the
    // transactions of the blocks final in it over its length (a block
    // straddling a boundary moves the figure by at most one block).
    let window_secs = duration.saturating_sub(WARMUP).as_secs_f64().max(1e-3);
    let window: Vec<&(Duration, usize)> = finals.iter().filter(|(at, _)| *at > WARMUP).collect();
    let committed: usize = finals.iter().map(|(_, n)| n).sum();
    let in_window: usize = window.iter().map(|(_, n)| n).sum();
    let tps = in_window as f64 / window_secs;
    let blocks = window.len();
    let mean_block = in_window as f64 / blocks.max(1) as f64;
    let met = if tps >= TARGET_TPS { "met" } else { "NOT met" };
    println!(
        "saturation: {submitted} submitted, {committed} committed in {secs} s; from {} s to {secs} s: {in_window} in {blocks} blocks (one per {:.2} s, {mean_block:.0} txs on average) = {tps:.0} tx/s (target >= {TARGET_TPS}: {met})",
        WARMUP.as_secs(),
        window_secs / blocks.max(1) as f64
    );
    format!("{tps:.0} tx/s committed at saturation ({met})")
}
