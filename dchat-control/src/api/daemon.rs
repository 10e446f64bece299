//! io.dchat.Daemon: status and health.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const STATUS: &str = "io.dchat.Daemon.Status";
pub const HEALTH: &str = "io.dchat.Daemon.Health";

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: STATUS,
        read_only: true,
    },
    MethodInfo {
        method: HEALTH,
        read_only: true,
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub roles: Vec<String>,
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub peers: u64,
    pub height: u64,
    pub accounts: u64,
    pub uptime_seconds: u64,
    pub state_dir: String,
    pub socket: String,
    pub ready: bool,
    pub dev: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub live: bool,
    pub ready: bool,
    pub status: String,
    pub checks: Vec<HealthCheck>,
}
