//! The one task that owns the Swarm. It turns commands from
//! [`NetworkHandle`](super::NetworkHandle)s into swarm calls and swarm
//! events into [`NetEvent`]s, applying the per-peer rate limits on the way
//! in. Nothing else touches the Swarm.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, gossipsub, identify, kad, mdns, ping, relay, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::behaviour::{Behaviour, BehaviourEvent};
use super::handle::{Command, NetError, NetEvent, PeerInfo, Responder, Verdict};
use super::limits::PeerLimiter;
use super::{NetStats, NetworkParams};

/// How often unreachable bootstrap peers are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(5);
/// How often Kademlia refreshes the routing table (which is how a node
/// learns the addresses of peers it is not connected to, so that a request
/// to any known peer id can dial it).
const KAD_REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Relays a node behind NAT holds reservations on.
const MAX_RESERVATIONS: usize = 2;

#[derive(Default)]
struct Peer {
    addresses: HashSet<Multiaddr>,
    dialer: bool,
    agent: Option<String>,
    rtt: Option<Duration>,
    since: Option<SystemTime>,
}

pub(super) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    stats: std::sync::Arc<NetStats>,
    limiter: PeerLimiter,
    peers: HashMap<PeerId, Peer>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    /// Bootstrap addresses with the peer each names (when it names one).
    bootstrap: Vec<(Multiaddr, Option<PeerId>)>,
    /// Whether to hold reservations on relays (see `NetworkParams`).
    reserve_on_relays: bool,
    /// This node serves circuits (the relay role).
    relay_server: bool,
    /// Connected relays (announced role and the hop protocol) and the
    /// address each listens on, for circuits through them.
    relays: HashMap<PeerId, Multiaddr>,
    /// Relay role: circuits open through this node, by (source,
    /// destination), so that each closes once in the metrics.
    circuits: HashMap<(PeerId, PeerId), u32>,
    /// Our reservations: the circuit listener on each relay.
    reservations: HashMap<PeerId, ListenerId>,
    /// autonat found this node reachable from outside: no reservation needed.
    public: bool,
}

impl SwarmTask {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands_tx: mpsc::Sender<Command>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        params: NetworkParams,
        stats: std::sync::Arc<NetStats>,
    ) -> SwarmTask {
        let bootstrap = params.bootstrap.iter().map(|a| (a.clone(), peer_in(a))).collect();
        let (reserve_on_relays, relay_server) = (params.reserve_on_relays, params.relay_server);
        SwarmTask {
            swarm,
            commands_tx,
            commands,
            events,
            limiter: PeerLimiter::new(params.rate),
            stats,
            peers: HashMap::new(),
            pending: HashMap::new(),
            bootstrap,
            reserve_on_relays,
            relay_server,
            relays: HashMap::new(),
            circuits: HashMap::new(),
            reservations: HashMap::new(),
            public: false,
        }
    }

    pub(super) async fn run(mut self, stop: CancellationToken) {
        self.dial_bootstrap();
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), KAD_REFRESH_EVERY);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = redial.tick() => self.dial_bootstrap(),
                _ = refresh.tick() => {
                    // Fails only with an empty routing table: nothing to ask yet.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event).await,
            }
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(NetError::Stopped));
        }
        tracing::info!("network stopped");
    }

    /// Dials the bootstrap peers we are not connected to.
    fn dial_bootstrap(&mut self) {
        for (addr, peer) in self.bootstrap.clone() {
            if peer.is_some_and(|p| self.swarm.is_connected(&p) || p == *self.swarm.local_peer_id()) {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(addr = %addr, error = %e, "bootstrap dial failed");
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_list());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::debug!(addr = %addr, error = %e, "dial failed");
                }
            }
            Command::Subscribe(topic) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&gossipsub::IdentTopic::new(&topic))
                {
                    tracing::warn!(topic, error = %e, "cannot subscribe");
                }
            }
            Command::Publish { topic, data, reply } => {
                let result = match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(&topic), data)
                {
                    // Publishing the same bytes again is not an error.
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(
                        gossipsub::PublishError::NoPeersSubscribedToTopic | gossipsub::PublishError::AllQueuesFull(_),
                    ) => Err(NetError::NoPeers(topic.clone())),
                    Err(other) => Err(NetError::Failed(other.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::Request { peer, data, reply } => {
                if !self.swarm.is_connected(&peer) {
                    self.dial_with_circuits(peer);
                }
                let id = self.swarm.behaviour_mut().rr.send_request(&peer, data);
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, data } => {
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, data);
            }
            Command::Validated { id, source, verdict } => {
                let verdict = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, verdict);
            }
        }
    }

    /// Dials a peer we are not connected to at its known addresses and,
    /// besides, through every connected relay: a peer behind NAT can be
    /// reached only over a circuit on a relay it holds a reservation on.
    /// A circuit through a relay it has none on fails at once; the first
    /// connection that works is used.
    fn dial_with_circuits(&mut self, peer: PeerId) {
        let circuits: Vec<Multiaddr> = self
            .relays
            .iter()
            .filter(|(relay, _)| **relay != peer && self.swarm.is_connected(relay))
            .map(|(relay, addr)| circuit_to(addr, *relay).with(Protocol::P2p(peer)))
            .collect();
        if circuits.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(circuits)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(peer = %peer, error = %e, "dial failed");
        }
    }

    /// Takes a reservation on `relay` when this node holds them and has
    /// fewer than it wants.
    fn reserve(&mut self, relay: PeerId) {
        if !self.reserve_on_relays
            || self.public
            || self.reservations.len() >= MAX_RESERVATIONS
            || self.reservations.contains_key(&relay)
        {
            return;
        }
        let Some(addr) = self.relays.get(&relay) else {
            return;
        };
        let listen = circuit_to(addr, relay);
        match self.swarm.listen_on(listen.clone()) {
            Ok(id) => {
                tracing::info!(relay = %relay, "asking a relay for a reservation");
                self.reservations.insert(relay, id);
            }
            Err(e) => tracing::debug!(address = %listen, error = %e, "cannot listen through a relay"),
        }
    }

    fn peer_list(&self) -> Vec<PeerInfo> {
        let now = SystemTime::now();
        let mut list: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let mut addresses: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
                addresses.sort();
                PeerInfo {
                    peer_id: id.to_string(),
                    addresses,
                    direction: if p.dialer { "dialer" } else { "listener" },
                    roles: p.agent.as_deref().map(roles_in_agent).unwrap_or_default(),
                    agent: p.agent.clone(),
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    connected_since: p.since,
                    connected_for_s: p
                        .since
                        .and_then(|s| now.duration_since(s).ok())
                        .map_or(0, |d| d.as_secs()),
                }
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        list
    }

    async fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(address = %address, "network listening");
                // libp2p's relay serves only once it has an external
                // address; a relay runs where it can be dialled, so its
                // own listen addresses are its external ones.
                if self.relay_server && !is_circuit(&address) {
                    self.swarm.add_external_address(address.clone());
                }
                emit(
                    &self.events,
                    NetEvent::Listening(self.swarm.listeners().cloned().collect()),
                )
                .await;
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                // A reservation ended (the relay went away or refused): a
                // relay that identifies again is asked again.
                self.reservations.retain(|_, id| *id != listener_id);
                emit(
                    &self.events,
                    NetEvent::Listening(self.swarm.listeners().cloned().collect()),
                )
                .await;
            }
            SwarmEvent::ExpiredListenAddr { .. } => {
                emit(
                    &self.events,
                    NetEvent::Listening(self.swarm.listeners().cloned().collect()),
                )
                .await;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let p = self.peers.entry(peer_id).or_default();
                p.addresses.insert(endpoint.get_remote_address().clone());
                if num_established.get() == 1 {
                    p.dialer = endpoint.is_dialer();
                    p.since = Some(SystemTime::now());
                    self.stats.set_peers(self.peers.len());
                    tracing::debug!(peer = %peer_id, "peer connected");
                    emit(&self.events, NetEvent::PeerConnected(peer_id)).await;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.relays.remove(&peer_id);
                    self.limiter.forget(&peer_id);
                    self.stats.set_peers(self.peers.len());
                    let relayed = endpoint.is_relayed();
                    tracing::debug!(peer = %peer_id, relayed, "peer disconnected");
                    emit(&self.events, NetEvent::PeerDisconnected { peer: peer_id, relayed }).await;
                } else if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.addresses.remove(endpoint.get_remote_address());
                }
            }
            SwarmEvent::Behaviour(event) => self.behaviour(event).await,
            _ => {}
        }
    }

    async fn behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != super::behaviour::PROTOCOL_VERSION {
                    tracing::debug!(peer = %peer_id, version = info.protocol_version, "not a dchat peer; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                for addr in info.listen_addrs.iter().filter(|a| usable(a)) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                }
                let relays_here = roles_in_agent(&info.agent_version).iter().any(|r| r == "relay")
                    && info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                if relays_here {
                    let direct = info.listen_addrs.iter().find(|a| usable(a) && !is_circuit(a));
                    if let Some(addr) = direct {
                        self.relays.insert(peer_id, addr.clone());
                        self.reserve(peer_id);
                    }
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = Some(info.agent_version);
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "relay reservation accepted: reachable through it");
            }
            BehaviourEvent::Relay(relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            }) => {
                tracing::debug!(from = %src_peer_id, to = %dst_peer_id, "relay circuit opened");
                *self.circuits.entry((src_peer_id, dst_peer_id)).or_default() += 1;
                self.stats.count_circuit_opened();
            }
            BehaviourEvent::Relay(relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            }) => {
                // libp2p can report one circuit closed twice (its connection
                // went, then its copy ended): only circuits still open count.
                let pair = (src_peer_id, dst_peer_id);
                let Some(open) = self.circuits.get_mut(&pair) else {
                    return;
                };
                *open -= 1;
                if *open == 0 {
                    self.circuits.remove(&pair);
                }
                let reason = circuit_close_reason(error.as_ref());
                tracing::debug!(from = %src_peer_id, to = %dst_peer_id, reason, error = ?error, "relay circuit closed");
                self.stats.count_circuit_closed(reason);
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.public = matches!(new, autonat::NatStatus::Public(_));
                tracing::info!(status = ?new, "reachability from outside");
            }
            BehaviourEvent::Ping(ping::Event {
                peer, result: Ok(rtt), ..
            }) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { .. }) => {}
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                if !self
                    .limiter
                    .admit(propagation_source, message.data.len(), Instant::now())
                {
                    self.stats.count_rate_limited();
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                    return;
                }
                emit(
                    &self.events,
                    NetEvent::Gossip {
                        topic: message.topic.into_string(),
                        data: message.data,
                        source: propagation_source,
                        id: message_id,
                    },
                )
                .await;
            }
            BehaviourEvent::Rr(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if !self.limiter.admit(peer, request.len(), Instant::now()) {
                        // Dropping the channel fails the peer's request.
                        self.stats.count_rate_limited();
                        return;
                    }
                    let reply = Responder {
                        channel,
                        commands: self.commands_tx.clone(),
                    };
                    emit(
                        &self.events,
                        NetEvent::Request {
                            peer,
                            data: request,
                            reply,
                        },
                    )
                    .await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            BehaviourEvent::Rr(request_response::Event::OutboundFailure { request_id, error, .. }) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let why = error.to_string();
                    let error = match error {
                        request_response::OutboundFailure::ConnectionClosed => NetError::Closed(why),
                        _ => NetError::Failed(why),
                    };
                    let _ = reply.send(Err(error));
                }
            }
            _ => {}
        }
    }
}

/// Hands an event to the daemon (whose consumer is gone only while it
/// stops). Takes the sender alone so the task's future stays `Send`.
async fn emit(events: &mpsc::Sender<NetEvent>, event: NetEvent) {
    let _ = events.send(event).await;
}

/// The peer id a `/p2p/…` multiaddress ends with.
pub(super) fn peer_in(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Why libp2p's relay closed a circuit, as a metric label. Its byte cap is
/// an error of kind `Other` with a message only (libp2p-relay's
/// `copy_future`); the time cap is `TimedOut`.
fn circuit_close_reason(error: Option<&std::io::Error>) -> &'static str {
    match error {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => "time_cap",
        Some(e) if e.to_string().contains("circuit bytes") => "byte_cap",
        _ => "other",
    }
}

/// The address to listen on or dial through `relay` at `addr`.
fn circuit_to(addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    let mut circuit = addr.clone();
    if peer_in(&circuit).is_none() {
        circuit.push(Protocol::P2p(relay));
    }
    circuit.with(Protocol::P2pCircuit)
}

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Addresses worth remembering for a peer (not unspecified listeners).
fn usable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// `dchatd/0.1.0 roles=user,relay` → ["user", "relay"].
pub(super) fn roles_in_agent(agent: &str) -> Vec<String> {
    agent
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roles="))
        .map(|r| r.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuits_close_for_their_caps_or_for_other_reasons() {
        use std::io::{Error, ErrorKind};
        // libp2p-relay 0.22's own errors for its caps.
        assert_eq!(
            circuit_close_reason(Some(&Error::other("Max circuit bytes reached."))),
            "byte_cap"
        );
        assert_eq!(circuit_close_reason(Some(&ErrorKind::TimedOut.into())), "time_cap");
        assert_eq!(
            circuit_close_reason(Some(&ErrorKind::ConnectionAborted.into())),
            "other"
        );
        assert_eq!(circuit_close_reason(None), "other");
    }

    #[test]
    fn roles_come_from_the_agent_string() {
        assert_eq!(roles_in_agent("dchatd/0.1.0 roles=user,relay"), ["user", "relay"]);
        assert!(roles_in_agent("rust-libp2p/0.1").is_empty());
    }

    #[test]
    fn the_peer_of_a_bootstrap_address() {
        let id = PeerId::random();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{id}").parse().unwrap();
        assert_eq!(peer_in(&a), Some(id));
        assert_eq!(peer_in(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()), None);
        assert!(!usable(&"/ip4/0.0.0.0/tcp/1".parse().unwrap()));
        assert!(usable(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()));
    }
}
