//! dchat's protocols over the network: what the bytes that `network`
//! moves mean, and every check a message passes before it is believed.
//!
//! ```text
//!             ┌──────────── router (one task) ◀── NetEvent ── network
//!             │   gossip:  presence · transactions · channel posts
//!             │            (verify → accept/reject)
//!             │   request: Blocks · SubmitTx(s) · Deliver(Batch) · Mailbox* · ChannelHistory
//!             ▼
//!  chain_sync  follower: fetch final blocks + certificates, verify, apply;
//!              relay locally submitted transactions to validators (direct,
//!              else gossip that every node checks and passes on)
//!  dm          outbox → direct to the recipient's node, else a relay
//!              mailbox; inbound envelopes opened, checked, stored, acked
//!  relay       mailboxes for others: store (quota, TTL), fetch, receipt
//!  channels    posts published, verified against chain membership, stored,
//!              history served and fetched for catch-up
//! ```
//!
//! Workers hold the [`Node`] (database, keystore, chain) and the
//! [`Shared`] state; the control handlers reach the same state through
//! `Node::p2p()`.

pub mod chain_sync;
pub mod channels;
pub mod dm;
pub mod dm_batch;
pub mod dm_fetch;
pub mod dm_inbound;
pub mod dm_outbox;
pub mod presence;
pub mod relay;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use dchat_keyfile::Identity;
use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::consensus::FinalityVerifier;
use crate::messaging::mailbox_id;
use crate::metrics::DropReason;
use crate::network::{NetError, NetEvent, NetStats, NetworkHandle, PeerInfo, Verdict};
use crate::service::{Node, ServiceError};
use crate::storage::MessageRow;
use presence::PresenceTable;
use wire::{Request, Response};

/// Locks that serialise loading a DM conversation's next sequence number
/// from the database (once per conversation and process). Two
/// conversations that hash to the same stripe wait for each other, which
/// costs concurrency, never correctness.
const SEND_LOCK_STRIPES: usize = 64;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Longest text a [`Change`] carries: the change channel keeps 4096 of
/// them until the slowest follower has read them, so at most ~17 MiB.
const HANDED_TEXT_BYTES: usize = 4096;

/// Something a follower (`dchatctl dm list --follow`, `channel messages
/// --follow`) should look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A DM of a local account arrived or changed state. `row` is a
    /// received message as just stored (its state never changes after),
    /// when someone follows and the text is short: followers then show it
    /// without reading it back; otherwise they read the row.
    Dm {
        account: String,
        id: [u8; 16],
        row: Option<Arc<MessageRow>>,
    },
    /// A channel post was stored.
    Post { channel: String, id: [u8; 16] },
}

/// The local accounts' keys by mailbox, rebuilt whenever the node's list of
/// local accounts changes ([`Node::local_accounts`] hands out a new list
/// after any change to the accounts).
#[derive(Default)]
struct Locals {
    by_mailbox: HashMap<[u8; 32], (String, Identity)>,
    built_from: Option<Arc<Vec<crate::service::LocalAccount>>>,
}

/// State the workers, the router and the control handlers share.
pub struct Shared {
    pub net: NetworkHandle,
    pub stats: Arc<NetStats>,
    /// The node's metric families (drops by reason, messages moved).
    pub metrics: crate::metrics::Metrics,
    presence: Mutex<PresenceTable>,
    locals: Mutex<Locals>,
    /// Wakes the outbox worker (a DM was queued, a peer connected).
    pub outbox_kick: Notify,
    /// Held while a conversation's next sequence number is loaded from
    /// the database; striped by conversation (see [`Shared::send_lock`]).
    send_locks: [tokio::sync::Mutex<()>; SEND_LOCK_STRIPES],
    /// The next sequence number of each conversation (sender, recipient)
    /// this process has sent in, taken in memory so that sends of one
    /// conversation need not wait for each other's commits.
    seqs: Mutex<HashMap<(String, String), u64>>,
    /// Where sends have their DMs sealed, several to an envelope.
    pub(crate) dm_sealer: dm_batch::DmSealer,
    /// The group commit of DM writes.
    pub(crate) dm_writer: dm_batch::DmWriter,
    /// Transaction ids gossip brought in the last second.
    pub(crate) seen_txs: Arc<Mutex<chain_sync::SeenTxs>>,
    /// Permits to screen gossiped transactions (signature checks) at once.
    tx_screening: Arc<tokio::sync::Semaphore>,
    /// Wakes the mailbox fetcher (a relay connected).
    pub fetch_kick: Notify,
    /// Wakes the presence announcer (a peer came or went).
    pub presence_kick: Notify,
    pub changes: broadcast::Sender<Change>,
    /// The genesis validators' peer ids (their node keys are their
    /// consensus keys).
    validators: HashSet<PeerId>,
    verifier: Option<FinalityVerifier>,
    subscribed: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The lock for the sequence numbers of `from`'s messages to `to`.
    pub(crate) fn send_lock(&self, from: &str, to: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (from, to).hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % SEND_LOCK_STRIPES as u64).unwrap_or(0);
        &self.send_locks[stripe]
    }

    /// The next sequence number of `from`'s messages to `to`, and the send
    /// time to sign with it: taken together under one lock, so that reading
    /// order (send time, then sequence) agrees with the sequence. Numbers a
    /// failed send took are skipped, never reused; the first use per
    /// conversation continues from the database.
    pub(crate) async fn next_seq(&self, node: &Arc<Node>, from: &str, to: &str) -> Result<(u64, u64), ServiceError> {
        let key = (from.to_string(), to.to_string());
        loop {
            if let Some(next) = lock(&self.seqs).get_mut(&key) {
                let seq = *next;
                *next += 1;
                return Ok((seq, now_ms()));
            }
            let _loading = self.send_lock(from, to).lock().await;
            if lock(&self.seqs).contains_key(&key) {
                continue;
            }
            let (a, p) = key.clone();
            let next = node.with_db(move |db, _| Ok(db.next_seq(&a, &p)?)).await?;
            lock(&self.seqs).entry(key.clone()).or_insert(next);
        }
    }

    pub fn host_of(&self, mailbox: &[u8; 32]) -> Option<PeerId> {
        lock(&self.presence).host(mailbox, now_ms())
    }

    /// Forgets which mailboxes `peer` announced it hosts.
    pub fn forget_host(&self, peer: &PeerId) {
        lock(&self.presence).forget_peer(peer);
    }

    pub fn is_validator(&self, peer: &PeerId) -> bool {
        self.validators.contains(peer)
    }

    /// Subscribes to a gossip topic once.
    pub async fn ensure_subscribed(&self, topic: &str) {
        if lock(&self.subscribed).insert(topic.to_string()) {
            let _ = self.net.subscribe(topic).await;
        }
    }

    /// Connected peers, with the roles they announced.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.net.peers().await.unwrap_or_default()
    }

    /// Connected peers that announced the relay role.
    pub async fn relays(&self) -> Vec<PeerId> {
        self.peers()
            .await
            .into_iter()
            .filter(|p| p.roles.iter().any(|r| r == "relay"))
            .filter_map(|p| p.peer_id.parse().ok())
            .collect()
    }

    /// Sends a request and decodes the answer.
    pub async fn ask(&self, peer: PeerId, request: &Request) -> Result<Response, NetError> {
        let bytes = self.net.request(peer, request.encode()).await?;
        Response::decode(&bytes).map_err(|e| NetError::Failed(format!("malformed answer: {e}")))
    }

    /// Counts a message dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) {
        self.metrics.message_dropped(reason);
    }

    fn notify(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// A copy of a row just stored for followers to print, if anyone
    /// follows and its text is at most [`HANDED_TEXT_BYTES`]: rows stay in
    /// the channel's 4096 slots until every follower has read them.
    fn handed(&self, row: &MessageRow) -> Option<Arc<MessageRow>> {
        (self.changes.receiver_count() > 0 && row.text.len() <= HANDED_TEXT_BYTES).then(|| Arc::new(row.clone()))
    }
}

impl Node {
    /// The local account (name and keys) whose mailbox this is.
    pub(crate) async fn local_for_mailbox(self: &Arc<Self>, mailbox: &[u8; 32]) -> Option<(String, Identity)> {
        let shared = self.p2p()?;
        let accounts = self.local_accounts().await.ok()?;
        {
            let locals = lock(&shared.locals);
            if locals.built_from.as_ref().is_some_and(|b| Arc::ptr_eq(b, &accounts)) {
                return locals.by_mailbox.get(mailbox).cloned();
            }
        }
        let mut by_mailbox = HashMap::with_capacity(accounts.len());
        for local in accounts.iter() {
            let identity = self.signing_key(&local.id).await.ok()?;
            by_mailbox.insert(mailbox_id(&identity.identity_public()), (local.name.clone(), identity));
        }
        let found = by_mailbox.get(mailbox).cloned();
        let mut locals = lock(&shared.locals);
        locals.by_mailbox = by_mailbox;
        locals.built_from = Some(accounts);
        found
    }

    /// Every local account's name and keys.
    pub(crate) async fn local_identities(
        self: &Arc<Self>,
    ) -> Result<Vec<(String, Identity)>, crate::service::ServiceError> {
        let locals = self.local_accounts().await?;
        let mut out = Vec::with_capacity(locals.len());
        for local in locals.iter() {
            out.push((local.name.clone(), self.signing_key(&local.id).await?));
        }
        Ok(out)
    }
}

/// Starts the protocol workers on a running network. Returns once they are
/// spawned; they stop on `stop` and are awaited through `tasks`.
pub fn start(
    node: &Arc<Node>,
    network: crate::network::Network,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Arc<Shared> {
    let crate::network::Network {
        handle,
        events,
        stats,
        task,
    } = network;
    let (changes, _) = broadcast::channel(4096);
    let chain = node.chain().cloned();
    let validators = chain
        .as_ref()
        .map(|c| {
            c.genesis()
                .validators
                .iter()
                .filter_map(|v| libp2p::identity::ed25519::PublicKey::try_from_bytes(&v.key).ok())
                .map(|k| libp2p::identity::PublicKey::from(k).to_peer_id())
                .collect()
        })
        .unwrap_or_default();
    let verifier = chain.as_ref().and_then(|c| match FinalityVerifier::new(c.genesis()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "cannot check finality certificates: not following the chain");
            None
        }
    });
    let (dm_writer, dm_writes) = dm_batch::DmWriter::new();
    let (dm_sealer, dm_drafts) = dm_batch::DmSealer::new();
    let shared = Arc::new(Shared {
        net: handle,
        stats,
        metrics: node.metrics().clone(),
        presence: Mutex::new(PresenceTable::default()),
        locals: Mutex::new(Locals::default()),
        outbox_kick: Notify::new(),
        send_locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        seqs: Mutex::new(HashMap::new()),
        dm_sealer,
        dm_writer,
        seen_txs: Arc::new(Mutex::new(chain_sync::SeenTxs::default())),
        tx_screening: Arc::new(tokio::sync::Semaphore::new(chain_sync::SCREENING_AT_ONCE)),
        fetch_kick: Notify::new(),
        presence_kick: Notify::new(),
        changes,
        validators,
        verifier,
        subscribed: Mutex::new(HashSet::new()),
    });
    node.set_p2p(Arc::clone(&shared));

    tasks.spawn(async move {
        let _ = task.await;
    });
    let spawn = |name: &'static str, fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
        tasks.spawn(fut.instrument(tracing::info_span!("p2p", worker = name)));
    };
    spawn(
        "router",
        Box::pin(router(
            Arc::clone(node),
            Arc::clone(&shared),
            events,
            stop.clone(),
            tasks.clone(),
        )),
    );
    spawn(
        "presence",
        Box::pin(dm::announce_presence(
            Arc::clone(node),
            Arc::clone(&shared),
            stop.clone(),
        )),
    );
    spawn(
        "dm-sealer",
        Box::pin(dm_batch::run_sealer(Arc::clone(&shared), dm_drafts, stop.clone())),
    );
    spawn(
        "dm-writer",
        Box::pin(dm_batch::run_writer(Arc::clone(node), dm_writes, stop.clone())),
    );
    spawn(
        "outbox",
        Box::pin(dm_outbox::deliver_outbox(
            Arc::clone(node),
            Arc::clone(&shared),
            stop.clone(),
        )),
    );
    spawn(
        "mailbox-fetch",
        Box::pin(dm_fetch::fetch_mailboxes(
            Arc::clone(node),
            Arc::clone(&shared),
            stop.clone(),
        )),
    );
    spawn(
        "channels",
        Box::pin(channels::keep_subscribed(
            Arc::clone(node),
            Arc::clone(&shared),
            stop.clone(),
        )),
    );
    if node.config().roles.contains(&crate::config::Role::Relay) {
        spawn("relay-expiry", Box::pin(relay::expire(Arc::clone(node), stop.clone())));
    }
    if let Some(chain) = chain {
        let (tx_relay, txs) = mpsc::unbounded_channel();
        chain.set_tx_relay(tx_relay);
        spawn(
            "tx-relay",
            Box::pin(chain_sync::relay_transactions(
                Arc::clone(&chain),
                Arc::clone(&shared),
                txs,
                stop.clone(),
            )),
        );
        spawn(
            "chain-follow",
            Box::pin(chain_sync::follow(chain, Arc::clone(&shared), stop.clone())),
        );
    }
    shared
}

/// Consumes the network's events: gossip is verified here (and only
/// accepted messages travel on); each request is answered on its own task.
async fn router(
    node: Arc<Node>,
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<NetEvent>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    shared.ensure_subscribed(presence::TOPIC).await;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => match e { Some(e) => e, None => return },
        };
        match event {
            NetEvent::Listening(addrs) => {
                let me = shared.net.local_peer_id();
                node.set_listen_addresses(addrs.iter().map(|a| format!("{a}/p2p/{me}")).collect());
            }
            NetEvent::PeerConnected(_) => {
                node.set_peers(shared.stats.peers() as u64);
                shared.outbox_kick.notify_one();
                shared.fetch_kick.notify_one();
                shared.presence_kick.notify_one();
            }
            NetEvent::PeerDisconnected { peer, relayed } => {
                node.set_peers(shared.stats.peers() as u64);
                // A circuit through a relay ends at the relay's limits
                // (`network.relay_circuit_bytes`) while both ends stay up:
                // what the peer announced still holds, and the next
                // delivery to it opens a new circuit instead of detouring
                // through mailboxes. If it did leave, that delivery's dial
                // fails (at once when the relay holds no reservation for
                // it, else at the dial's timeout) and the peer is
                // forgotten then (`dm_outbox::deliver_direct`). A direct
                // connection that closed means the peer went away; it
                // forgets us in turn, and our next announcement, sooner
                // than on the timer, tells it where our accounts are if it
                // comes back. (Peers of this build keep what we announced
                // when a circuit ends.)
                if !relayed {
                    shared.forget_host(&peer);
                    shared.presence_kick.notify_one();
                }
            }
            NetEvent::Gossip {
                topic,
                data,
                source,
                id,
            } => {
                if topic == chain_sync::TX_TOPIC {
                    // Checked on a task of its own (the signatures cost
                    // CPU), a few batches at a time; a batch beyond that is
                    // not passed on, and the network goes on meanwhile.
                    match Arc::clone(&shared.tx_screening).try_acquire_owned() {
                        Ok(permit) => {
                            let (node, shared) = (Arc::clone(&node), Arc::clone(&shared));
                            tasks.spawn(async move {
                                let verdict = chain_sync::on_transactions(&node, &shared, &data).await;
                                shared.net.validated(id, source, verdict).await;
                                drop(permit);
                            });
                        }
                        Err(_) => shared.net.validated(id, source, Verdict::Ignore).await,
                    }
                    continue;
                }
                let verdict = if topic == presence::TOPIC {
                    on_presence(&shared, &data)
                } else if let Some(channel) = channels::channel_of_topic(&topic) {
                    channels::on_post(&node, &shared, channel, &data).await
                } else {
                    shared.dropped(DropReason::Misaddressed);
                    Verdict::Reject
                };
                shared.net.validated(id, source, verdict).await;
            }
            NetEvent::Request { peer, data, reply } => {
                let (node, shared) = (Arc::clone(&node), Arc::clone(&shared));
                tasks.spawn(async move {
                    let response = match Request::decode(&data) {
                        Ok(request) => answer(&node, &shared, peer, request).await,
                        Err(e) => {
                            shared.dropped(DropReason::Malformed);
                            tracing::debug!(peer = %peer, error = %e, "malformed request dropped");
                            Response::Refused(format!("malformed request: {e}"))
                        }
                    };
                    reply.send(response.encode()).await;
                });
            }
        }
    }
}

fn on_presence(shared: &Shared, data: &[u8]) -> Verdict {
    let Ok(p) = presence::Presence::decode(data) else {
        shared.dropped(DropReason::Malformed);
        return Verdict::Reject;
    };
    match p.check(now_ms()) {
        presence::Check::Valid => {}
        presence::Check::Stale => {
            // Old, or a clock off: not forwarded, nobody penalised.
            shared.dropped(DropReason::Expired);
            return Verdict::Ignore;
        }
        presence::Check::BadSignature => {
            shared.dropped(DropReason::BadSignature);
            return Verdict::Reject;
        }
    }
    if lock(&shared.presence).record(&p) {
        // A host we may have envelopes for.
        shared.outbox_kick.notify_one();
    }
    Verdict::Accept
}

async fn answer(node: &Arc<Node>, shared: &Arc<Shared>, peer: PeerId, request: Request) -> Response {
    match request {
        Request::Blocks { from, max } => chain_sync::serve_blocks(node, from, max),
        Request::SubmitTx(bytes) => chain_sync::accept_transactions(node, vec![bytes]).await,
        Request::SubmitTxs(txs) => chain_sync::accept_transactions(node, txs).await,
        Request::Deliver(bytes) => dm_inbound::accept_delivery(node, shared, peer, &bytes).await,
        Request::DeliverBatch(envelopes) => dm_inbound::accept_batch(node, shared, peer, &envelopes).await,
        Request::MailboxStore(bytes) => relay::store(node, shared, &bytes).await,
        Request::MailboxFetch(bytes) => relay::fetch(node, shared, &bytes).await,
        Request::MailboxReceipt(bytes) => relay::receipt(node, shared, &bytes).await,
        Request::ChannelHistory {
            channel,
            since_ms,
            limit,
        } => channels::serve_history(node, &channel, since_ms, limit).await,
    }
}
