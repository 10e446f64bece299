//! Shared by the bench binaries (each `mod common;`): percentiles, the
//! release dchatctl beside the bench's dchatd, the load average, and a
//! Prometheus-style scrape.
#![allow(dead_code)] // each bench uses its own subset

pub mod testnet;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A positive number from the environment variable `name`, else `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Nearest-rank percentile of `values` (`q` in 0..=1; 0 is the minimum).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// `DCHAT_BENCH_DCHATCTL`, else the release `dchatctl` beside `dchatd` (the
/// one cargo built for the bench), built first if missing.
pub fn dchatctl(dchatd: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("DCHAT_BENCH_DCHATCTL") {
        return PathBuf::from(path);
    }
    let path = Path::new(dchatd).with_file_name("dchatctl");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "dchatctl"])
            .status()
            .expect("run cargo build for dchatctl");
        assert!(status.success(), "cargo build --release -p dchatctl failed");
    }
    path
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time a process has used so far (user + system), in seconds; None
/// once it is gone. `/proc` counts it in USER_HZ, 100 per second on Linux.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU time the whole machine has spent busy (not idle or waiting for
/// the disk) so far, over all cores, in seconds.
pub fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; the
    // guests' time is in user and nice already, and steal is not ours.
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|i| cpu.get(*i)).sum();
    Some(busy as f64 / 100.0)
}

/// `GET /metrics` on a new connection, as Prometheus scrapes; the body.
/// Panics unless the answer is a complete 200.
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .expect("send a scrape");
    let mut reply = String::with_capacity(64 * 1024);
    stream.read_to_string(&mut reply).expect("read a scrape");
    assert!(reply.starts_with("HTTP/1.1 200 "), "scrape of {addr}: {reply}");
    let (_, body) = reply.split_once("\r\n\r\n").expect("a complete head");
    body.to_string()
}
