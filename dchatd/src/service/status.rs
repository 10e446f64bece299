//! Status and health: the facts `dchatctl status`, `STATUS=` and (later)
//! the metrics and probes are made of.

use dchat_control::api;

use super::Node;

/// The status facts that change while the daemon runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub ready: bool,
    pub peers: u64,
    pub height: u64,
    pub accounts: u64,
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
            // The P2P layer fills these in once it listens.
            addresses: Vec::new(),
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

    pub fn health(&self) -> api::Health {
        let snap = self.snapshot();
        let checks = vec![
            api::HealthCheck {
                name: "control".into(),
                ok: true,
                detail: "answering requests".into(),
            },
            api::HealthCheck {
                name: "database".into(),
                ok: snap.ready,
                detail: if snap.ready {
                    "open and migrated".into()
                } else {
                    "not open".into()
                },
            },
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
