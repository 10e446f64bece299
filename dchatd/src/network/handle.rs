//! How the rest of the daemon talks to the network: a cloneable handle
//! that sends commands to the swarm task, and dchat's own events coming
//! back (never raw SwarmEvents).

use std::time::SystemTime;

use libp2p::request_response::ResponseChannel;
use libp2p::{gossipsub::MessageId, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NetError {
    #[error("the network is not running")]
    Stopped,
    #[error("no peer subscribes to {0}")]
    NoPeers(String),
    /// The connection closed with the request in flight (a relayed
    /// circuit that reached its byte cap, say): a new one may well work.
    #[error("{0}")]
    Closed(String),
    #[error("{0}")]
    Failed(String),
}

/// One connected peer, as `dchatctl peers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The remote addresses of our connections to it.
    pub addresses: Vec<String>,
    /// "dialer" or "listener": who opened the first connection.
    pub direction: &'static str,
    /// identify's agent string, e.g. `dchatd/0.1.0 roles=relay`.
    pub agent: Option<String>,
    pub roles: Vec<String>,
    pub rtt_ms: Option<f64>,
    #[serde(skip)]
    pub connected_since: Option<SystemTime>,
    pub connected_for_s: u64,
}

pub(super) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr),
    Subscribe(String),
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Respond {
        channel: ResponseChannel<Vec<u8>>,
        data: Vec<u8>,
    },
    Validated {
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    },
}

/// What the application decided about a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: stored and forwarded.
    Accept,
    /// Not checkable here (e.g. our chain is behind): not forwarded, and
    /// the peer that sent it is not penalised.
    Ignore,
    /// Invalid (bad signature, garbage): not forwarded; the sender is
    /// penalised by gossipsub's scoring.
    Reject,
}

/// What the network tells the daemon.
#[derive(Debug)]
pub enum NetEvent {
    /// The addresses we listen on, whenever they change.
    Listening(Vec<Multiaddr>),
    PeerConnected(PeerId),
    /// The last connection to a peer closed; `relayed` when it was a
    /// circuit through a relay.
    PeerDisconnected {
        peer: PeerId,
        relayed: bool,
    },
    /// A gossip message that passed the rate limit. The receiver must call
    /// [`NetworkHandle::validated`] with the verdict: only accepted
    /// messages are forwarded to other peers.
    Gossip {
        topic: String,
        data: Vec<u8>,
        source: PeerId,
        id: MessageId,
    },
    /// A request; answer it with [`Responder::send`] (dropping the
    /// responder fails the request on the peer's side).
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: Responder,
    },
}

pub struct Responder {
    pub(super) channel: ResponseChannel<Vec<u8>>,
    pub(super) commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Responder {
    pub async fn send(self, data: Vec<u8>) {
        let _ = self
            .commands
            .send(Command::Respond {
                channel: self.channel,
                data,
            })
            .await;
    }
}

#[derive(Clone)]
pub struct NetworkHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) local: PeerId,
}

impl NetworkHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(Command::Peers).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ListenAddrs).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| NetError::Stopped)
    }

    pub async fn subscribe(&self, topic: &str) -> Result<(), NetError> {
        self.commands
            .send(Command::Subscribe(topic.to_string()))
            .await
            .map_err(|_| NetError::Stopped)
    }

    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.ask(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Sends a request and waits for the answer (libp2p's request timeout
    /// applies).
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.ask(|reply| Command::Request { peer, data, reply }).await?
    }

    pub async fn validated(&self, id: MessageId, source: PeerId, verdict: Verdict) {
        let _ = self.commands.send(Command::Validated { id, source, verdict }).await;
    }
}
