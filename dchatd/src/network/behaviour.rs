//! The libp2p protocols a dchat node runs, composed into one behaviour.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay, request_response, StreamProtocol,
};
use sha2::{Digest, Sha256};

use super::codec::{BytesCodec, PROTOCOL};
use super::NetworkParams;

/// identify's protocol version: peers of other networks, or of builds
/// that do not understand ours, are told apart and disconnected. 2: an
/// envelope may carry several messages of one conversation (ADR 0017),
/// which a node of version 1 would drop as malformed. 3: they share one
/// signature (ADR 0018), which a node of version 2 would drop.
pub const PROTOCOL_VERSION: &str = "/dchat/3";
/// Kademlia on dchat's own protocol name, so we never join the IPFS DHT;
/// its version follows [`PROTOCOL_VERSION`]'s, so nodes do not learn (and
/// dial) peers of a build they cannot talk to.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/dchat/kad/3");
/// Circuits a relay carries at once (libp2p's default is 16).
const MAX_CIRCUITS: usize = 64;
/// How long one circuit lasts before the peers must open another.
const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);
/// Bytes one circuit carries, both ways, before it is closed, unless
/// `network.relay_circuit_bytes` says otherwise (libp2p's default of
/// 128 KiB is about a hundred DMs); a relay's bandwidth cap per circuit, on
/// top of the per-peer rate limits.
pub const DEFAULT_CIRCUIT_BYTES: u64 = 16 * 1024 * 1024;
/// Largest gossip message (a channel post is at most 64 KiB of text).
pub const MAX_GOSSIP: usize = 128 * 1024;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub rr: request_response::Behaviour<BytesCodec>,
    /// Circuit relay v2 server: relays only.
    pub relay: Toggle<relay::Behaviour>,
    /// Circuit relay client: lets a NATed user be reached through a relay.
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
    /// Local discovery: only in `--dev`.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        params: &NetworkParams,
    ) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let id = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(params.max_connections))
            .with_max_established_per_peer(Some(params.max_connections_per_peer))
            .with_max_pending_incoming(Some(params.max_connections / 4 + 8));
        let identify = identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.to_string(), key.public()).with_agent_version(params.agent.clone()),
        );
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), kad_config);
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP)
            .validation_mode(gossipsub::ValidationMode::Strict)
            // The application checks every message (signature, membership)
            // before it is forwarded to anyone.
            .validate_messages()
            // The same bytes published twice are one message.
            .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec()))
            .heartbeat_interval(params.gossip_heartbeat)
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| format!("gossipsub: {e}"))?;
        let rr = request_response::Behaviour::with_codec(
            BytesCodec,
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
        );
        let relay = params.relay_server.then(|| {
            relay::Behaviour::new(
                id,
                relay::Config {
                    max_circuits: MAX_CIRCUITS,
                    max_circuit_duration: MAX_CIRCUIT_DURATION,
                    max_circuit_bytes: params.max_circuit_bytes,
                    ..relay::Config::default()
                },
            )
        });
        let mdns = if params.mdns {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), id).map_err(|e| format!("mdns: {e}"))?)
        } else {
            None
        };
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            kad,
            gossipsub,
            rr,
            relay: Toggle::from(relay),
            relay_client,
            dcutr: dcutr::Behaviour::new(id),
            autonat: autonat::Behaviour::new(id, autonat::Config::default()),
            mdns: Toggle::from(mdns),
        })
    }
}
