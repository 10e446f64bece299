//! The peer-to-peer network: libp2p over TCP and QUIC with Noise and Yamux;
//! identify, ping, Kademlia, gossipsub, request-response, relay v2 (server
//! on relays, client everywhere), dcutr, autonat, and mDNS in `--dev` only.
//!
//! Data flow:
//!
//! ```text
//!  daemon parts ──NetworkHandle (commands)──▶ SwarmTask ──▶ Swarm ──▶ peers
//!  daemon parts ◀──NetEvent (mpsc)────────── SwarmTask ◀── Swarm ◀── peers
//!                                             (rate limits, size caps)
//! ```
//!
//! This layer moves bytes and knows peers; what the bytes mean (chain
//! blocks, sealed DMs, mailbox fetches, channel posts) and every signature
//! check belong to `crate::p2p`, which consumes the events.

mod behaviour;
mod codec;
mod handle;
mod limits;
mod task;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{noise, tcp, yamux, Multiaddr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use behaviour::{DEFAULT_CIRCUIT_BYTES, MAX_GOSSIP};
pub use codec::{MAX_REQUEST, MAX_RESPONSE};
pub use handle::{NetError, NetEvent, NetworkHandle, PeerInfo, Responder, Verdict};
pub use libp2p::{gossipsub::MessageId, PeerId};
pub use limits::RateLimit;

/// What the network needs from the configuration.
#[derive(Debug, Clone)]
pub struct NetworkParams {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// Serve circuit relay v2 (the relay role).
    pub relay_server: bool,
    /// Hold reservations on connected relays, so that peers can reach this
    /// node through them when they cannot dial it (users, not relays).
    pub reserve_on_relays: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub rate: RateLimit,
    /// Bytes one relayed circuit carries, both ways, before this relay
    /// closes it.
    pub max_circuit_bytes: u64,
    pub gossip_heartbeat: Duration,
    /// identify's agent string: `dchatd/<version> roles=<roles>`.
    pub agent: String,
    /// Where drops for rate limits are counted.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl NetworkParams {
    pub fn new(listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>, roles: &[&str]) -> NetworkParams {
        NetworkParams {
            listen,
            bootstrap,
            mdns: false,
            relay_server: roles.contains(&"relay"),
            reserve_on_relays: roles.contains(&"user") && !roles.contains(&"relay"),
            max_connections: 512,
            max_connections_per_peer: 2,
            rate: RateLimit::default(),
            max_circuit_bytes: DEFAULT_CIRCUIT_BYTES,
            gossip_heartbeat: Duration::from_millis(500),
            agent: format!("dchatd/{} roles={}", crate::VERSION, roles.join(",")),
            metrics: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkStartError {
    #[error("network: {0}")]
    Build(String),
    #[error("network.listen: cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// Counters the network keeps for status and metrics.
#[derive(Debug, Default)]
pub struct NetStats {
    peers: AtomicUsize,
    rate_limited: AtomicU64,
    metrics: Option<crate::metrics::Metrics>,
}

impl NetStats {
    fn set_peers(&self, n: usize) {
        self.peers.store(n, Ordering::Relaxed);
    }

    fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.message_dropped(crate::metrics::DropReason::RateLimited);
        }
    }

    /// A circuit this relay carries opened.
    fn count_circuit_opened(&self) {
        if let Some(m) = &self.metrics {
            m.relay_circuits_opened.inc();
        }
    }

    /// A circuit this relay carried closed, for `reason`.
    fn count_circuit_closed(&self, reason: &'static str) {
        if let Some(m) = &self.metrics {
            m.relay_circuits_closed
                .get_or_create(&crate::metrics::CircuitCloseLabels { reason })
                .inc();
        }
    }

    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// Inbound messages dropped by the per-peer rate limits.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

/// A running network.
pub struct Network {
    pub handle: NetworkHandle,
    pub events: mpsc::Receiver<NetEvent>,
    pub stats: Arc<NetStats>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the swarm with the node's ed25519 key (so the peer id is the one
/// `node_key::peer_id` shows), listens, dials the bootstrap peers and
/// hands the swarm to its task. Listening errors stop the start.
pub async fn start(
    node_secret: &[u8; 32],
    params: NetworkParams,
    stop: CancellationToken,
) -> Result<Network, NetworkStartError> {
    let build = |e: &dyn std::fmt::Display| NetworkStartError::Build(e.to_string());
    let mut secret = *node_secret;
    let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).map_err(|e| build(&e))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| build(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| build(&e))?
        .with_behaviour(|key, relay_client| behaviour::Behaviour::new(key, relay_client, &params))
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for addr in &params.listen {
        swarm.listen_on(addr.clone()).map_err(|e| NetworkStartError::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    }
    for addr in &params.bootstrap {
        if let Some(peer) = task::peer_in(addr) {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
    }
    let local = *swarm.local_peer_id();
    let (commands_tx, commands) = mpsc::channel(4096);
    let (events_tx, events) = mpsc::channel(4096);
    let stats = Arc::new(NetStats {
        metrics: params.metrics.clone(),
        ..NetStats::default()
    });
    let swarm_task = task::SwarmTask::new(
        swarm,
        commands_tx.clone(),
        commands,
        events_tx,
        params,
        Arc::clone(&stats),
    );
    let task = tokio::spawn(swarm_task.run(stop));
    tracing::info!(peer_id = %local, "network started");
    Ok(Network {
        handle: NetworkHandle {
            commands: commands_tx,
            local,
        },
        events,
        stats,
        task,
    })
}

#[cfg(test)]
mod tests;
