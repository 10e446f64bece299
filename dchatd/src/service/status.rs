//! Status and health: the facts `dchatctl status`, `dchatctl health`,
//! `STATUS=`, the metrics and the HTTP probes are made of. The checks live
//! here once, so the control socket and `/ready` cannot disagree.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dchat_control::api;

use super::Node;
use crate::metrics::NodeFacts;

/// How long the liveness round trip may take before the node counts as hung.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The status facts that change while the daemon runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub ready: bool,
    pub peers: u64,
    pub height: u64,
    /// When the height last changed while this daemon ran; None until it
    /// has. The chain-stall check measures from here (or from the start).
    pub last_block_at: Option<Instant>,
    pub accounts: u64,
    /// The P2P listen addresses; None while the node has no P2P layer.
    pub addresses: Option<Vec<String>>,
}

/// What the chain-stall check needs to know about the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFacts {
    pub height: u64,
    pub block_interval: Duration,
    /// Whether the chain is being advanced: this node's consensus runs, or
    /// the height has moved since start. Until then a flat height is not
    /// evidence of a stall (nothing here would move it).
    pub advancing: bool,
    /// The last height change, or the daemon's start if none yet.
    pub since: Instant,
}

impl Node {
    pub fn roles(&self) -> Vec<String> {
        self.config().roles.iter().map(|r| r.as_str().to_string()).collect()
    }

    pub fn status(&self) -> api::Status {
        let snap = self.snapshot();
        let config = self.config();
        api::Status {
            version: crate::VERSION.to_string(),
            roles: self.roles(),
            peer_id: self.peer_id().to_string(),
            addresses: snap.addresses.unwrap_or_default(),
            peers: snap.peers,
            height: snap.height,
            accounts: snap.accounts,
            uptime_seconds: self.uptime_seconds(),
            state_dir: config.storage.state_dir.display().to_string(),
            socket: config.control.socket.display().to_string(),
            ready: snap.ready,
            dev: config.dev,
        }
    }

    /// The one-line `STATUS=` text for systemd.
    pub fn status_line(&self) -> String {
        let snap = self.snapshot();
        format!(
            "{}; roles {}; peers {}; height {}; accounts {}",
            if snap.ready { "ready" } else { "starting" },
            self.roles().join(","),
            snap.peers,
            snap.height,
            snap.accounts
        )
    }

    /// Readiness: what `dchatctl health` and `GET /ready` report.
    pub fn health(&self) -> api::Health {
        let snap = self.snapshot();
        let config = self.config();
        let chain = self.chain().map(|c| ChainFacts {
            height: snap.height,
            block_interval: c.block_interval(),
            advancing: c.consensus_running() || snap.last_block_at.is_some(),
            since: snap.last_block_at.unwrap_or(self.started),
        });
        let checks = vec![
            check(
                "started",
                snap.ready,
                if snap.ready { "serving" } else { "starting or stopping" },
            ),
            database_check(self.db.is_open(), &config.storage.database_path()),
            control_check(&config.control.socket),
            network_check(snap.addresses.as_deref()),
            chain_check(chain, config.health_stall_intervals, Instant::now()),
        ];
        let ready = checks.iter().all(|c| c.ok);
        api::Health {
            live: true,
            ready,
            status: if ready { "ok".into() } else { "not ready".into() },
            checks,
        }
    }
}

impl Node {
    /// Liveness: what `GET /health` reports. The answer makes a round trip
    /// through the runtime (a task is scheduled and a blocking thread, which
    /// every database call needs, is had) to the handler of
    /// io.dchat.Daemon.Health; readiness is not judged here.
    pub async fn liveness(self: &Arc<Self>) -> Vec<api::HealthCheck> {
        let started = Instant::now();
        let node = Arc::clone(self);
        let round_trip = tokio::spawn(async move { tokio::task::spawn_blocking(move || node.health()).await });
        let control = match tokio::time::timeout(LIVENESS_TIMEOUT, round_trip).await {
            Ok(Ok(Ok(_))) => check(
                "control",
                true,
                &format!("the health handler answered in {} µs", started.elapsed().as_micros()),
            ),
            Ok(_) => check("control", false, "the health handler failed"),
            Err(_) => check(
                "control",
                false,
                &format!(
                    "no answer within {} s: the runtime or its blocking threads are stuck",
                    LIVENESS_TIMEOUT.as_secs()
                ),
            ),
        };
        vec![check("runtime", true, "answering"), control]
    }

    /// The facts the metrics mirror at each scrape.
    pub fn metric_facts(&self) -> NodeFacts {
        let snap = self.snapshot();
        let health = self.health();
        let db_path = self.config().storage.database_path();
        let mut wal = db_path.clone().into_os_string();
        wal.push("-wal");
        NodeFacts {
            uptime: self.started.elapsed(),
            ready: health.ready,
            checks: health.checks.into_iter().map(|c| (c.name, c.ok)).collect(),
            accounts: snap.accounts,
            peers: snap.peers,
            height: snap.height,
            mempool: self
                .chain()
                .map_or(0, |c| u64::try_from(c.mempool_len()).unwrap_or(u64::MAX)),
            database_bytes: file_size(&db_path),
            wal_bytes: file_size(Path::new(&wal)),
        }
    }

    /// The P2P layer reports its connected peers here.
    pub fn set_peers(&self, peers: u64) {
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.peers, peers) != peers);
    }

    /// The P2P layer reports its listen addresses here once it listens.
    pub fn set_listen_addresses(&self, addresses: Vec<String>) {
        self.status.send_if_modified(|s| {
            let changed = s.addresses.as_ref() != Some(&addresses);
            s.addresses = Some(addresses);
            changed
        });
    }
}

fn check(name: &str, ok: bool, detail: &str) -> api::HealthCheck {
    api::HealthCheck {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The database is open, and its file is still where it was opened: a file
/// deleted under a running daemon loses everything written at the restart.
fn database_check(open: bool, path: &Path) -> api::HealthCheck {
    if !open {
        return check("database", false, "closed (shutting down or being restored)");
    }
    match std::fs::symlink_metadata(path) {
        Ok(_) => check("database", true, "open and migrated"),
        Err(e) => check(
            "database",
            false,
            &format!("open, but {} is gone ({e}): writes will be lost", path.display()),
        ),
    }
}

/// The control socket is still reachable at its path.
fn control_check(path: &Path) -> api::HealthCheck {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => check("control", true, &format!("socket bound at {}", path.display())),
        Ok(_) => check(
            "control",
            false,
            &format!("{} is no longer a socket: clients cannot connect", path.display()),
        ),
        Err(e) => check(
            "control",
            false,
            &format!("socket {} is gone ({e}): clients cannot connect", path.display()),
        ),
    }
}

fn network_check(addresses: Option<&[String]>) -> api::HealthCheck {
    match addresses {
        None => check("network", true, "no P2P layer in this daemon yet"),
        Some([]) => check("network", false, "not listening on any address"),
        Some(a) => check("network", true, &format!("listening on {} addresses", a.len())),
    }
}

/// Chain-stall check: failing once the height has not moved for more than
/// `stall_intervals` block intervals. `now` is passed in so tests can move
/// the clock.
pub fn chain_check(chain: Option<ChainFacts>, stall_intervals: u32, now: Instant) -> api::HealthCheck {
    let Some(c) = chain else {
        return check("chain", true, "no chain on this node (no genesis configured)");
    };
    if !c.advancing {
        return check(
            "chain",
            true,
            &format!(
                "height {}; stall check waits for consensus or a first new block",
                c.height
            ),
        );
    }
    let limit = c.block_interval.saturating_mul(stall_intervals);
    let age = now.saturating_duration_since(c.since);
    let ok = age <= limit;
    let detail = format!(
        "{}height {}, unchanged for {:.1} s (limit {stall_intervals} block intervals of {:.1} s = {:.1} s)",
        if ok { "" } else { "stalled: " },
        c.height,
        age.as_secs_f64(),
        c.block_interval.as_secs_f64(),
        limit.as_secs_f64(),
    );
    check("chain", ok, &detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(since: Instant, advancing: bool) -> Option<ChainFacts> {
        Some(ChainFacts {
            height: 7,
            block_interval: Duration::from_secs(6),
            advancing,
            since,
        })
    }

    #[test]
    fn chain_check_fails_only_past_the_configured_intervals() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // 10 intervals of 6 s: 60 s is still fine, 61 s is a stall.
        assert!(chain_check(facts(t0, true), 10, at(0)).ok);
        assert!(chain_check(facts(t0, true), 10, at(60)).ok);
        let stalled = chain_check(facts(t0, true), 10, at(61));
        assert!(!stalled.ok);
        assert!(stalled.detail.starts_with("stalled: height 7"), "{}", stalled.detail);
        // A new block moves `since`: fine again.
        assert!(chain_check(facts(at(61), true), 10, at(62)).ok);
        // Fewer intervals configured: stalls sooner.
        assert!(!chain_check(facts(t0, true), 2, at(13)).ok);
        assert!(chain_check(facts(t0, true), 2, at(12)).ok);
    }

    #[test]
    fn chain_check_is_quiet_without_a_chain_or_before_it_moves() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3600);
        let none = chain_check(None, 10, later);
        assert!(none.ok && none.name == "chain", "{none:?}");
        let idle = chain_check(facts(t0, false), 10, later);
        assert!(idle.ok, "{idle:?}");
        // A clock that went backwards (since after now) is no stall.
        assert!(chain_check(facts(later, true), 1, t0).ok);
    }

    #[test]
    fn network_check_needs_a_listen_address_once_there_is_a_network() {
        assert!(network_check(None).ok);
        assert!(!network_check(Some(&[])).ok);
        assert!(network_check(Some(&["/ip4/127.0.0.1/tcp/7070".to_string()])).ok);
    }
}
