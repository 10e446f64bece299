//! Direct messages on the network.
//!
//! Sending: the control handler drafts the message and hands it to the
//! sealer, which seals it with others of its conversation waiting at the
//! same time into one envelope and commits them with the envelope's outbox
//! row ([`queue`], [`super::dm_batch::DmSealer`]); it returns then. The
//! outbox worker delivers: to a local account at once, to the recipient's
//! node when a fresh presence names a connected one (in batches, in
//! order), else to up to two relays' mailboxes (state `relayed`). Retries
//! back off; nothing waits for the chain.
//!
//! Receiving is [`super::dm_inbound`]'s; fetching from relay mailboxes is
//! [`super::dm_fetch`]'s. Writes go through a group commit and acknowledgements are
//! coalesced ([`super::dm_batch`]).

use std::sync::Arc;
use std::time::Duration;

use dchat_keyfile::Identity;
use futures::StreamExt;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::dm_batch::Acks;
use super::dm_inbound::{check_all, take_all, Received};
use super::presence::{self, Presence};
use super::wire::{self, Request, Response};
use super::{now_ms, AskError, Change, Shared};
use crate::messaging::{self, Content, DirectMessage, MessagingError};
use crate::service::{Node, ServiceError};
use crate::storage::{Delivery, DeliveryState, Direction, MessageRow, OutboxEntry, RetryPolicy};

/// How long an undelivered envelope is kept and retried.
pub const TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 60_000,
};
/// Envelopes one delivery round takes from the outbox (a few requests'
/// worth: at most 256 of the largest, 20 MiB, in memory).
const ROUND: u32 = 256;
/// `DeliverBatch` requests of one round in flight at once.
const BATCHES_AT_ONCE: usize = 4;
/// Envelopes left with relays side by side (each relay stores one per
/// request).
const RELAY_STORES_AT_ONCE: usize = 32;
/// Relays an envelope is left with when its recipient is unreachable.
const RELAY_COPIES: usize = 2;
const PRESENCE_EVERY: Duration = Duration::from_secs(3);
/// The shortest time between two presence announcements.
const PRESENCE_AT_MOST: Duration = Duration::from_secs(1);
/// How long after a peer came or went the announcement waits.
const PRESENCE_SETTLE: Duration = Duration::from_millis(250);

/// Seals `content` from `from` to the account `to` (with others of the
/// conversation sent at the same time) and commits it (with, for text, the
/// sender's copy of the message) for the outbox worker.
pub(crate) async fn queue(
    node: &Arc<Node>,
    from_name: &str,
    from: &Identity,
    to: &crate::ledger::Account,
    content: Content,
) -> Result<MessageRow, ServiceError> {
    draft(node, from_name, from, to, content).await?.commit(node).await
}

/// A direct message whose place in its conversation (sequence number and
/// send time) is taken, not yet sealed or stored. Drafts of one
/// conversation may be committed concurrently: the reader orders by
/// sequence number, so the order the drafts were made is the order read.
pub struct Draft {
    from: Identity,
    messaging_key: [u8; 32],
    msg: DirectMessage,
}

/// Takes the next place in the conversation `from_name` → `to` for
/// `content` (an acknowledgement takes none).
pub(crate) async fn draft(
    node: &Arc<Node>,
    from_name: &str,
    from: &Identity,
    to: &crate::ledger::Account,
    content: Content,
) -> Result<Draft, ServiceError> {
    let shared = node.p2p().ok_or(ServiceError::NetworkDown)?;
    // A text takes the conversation's next sequence number, with its send
    // time beside it; an acknowledgement is not part of the conversation.
    let (seq, now) = match &content {
        Content::Delivered(_) => (0, now_ms()),
        Content::Text(_) => shared.next_seq(node, from_name, &to.name).await?,
    };
    let id = messaging::new_message_id(now).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(Draft {
        from: from.clone(),
        messaging_key: to.messaging_key,
        msg: DirectMessage {
            id,
            from: from_name.to_string(),
            from_key: from.identity_public(),
            to: to.name.clone(),
            to_key: to.identity_key,
            seq,
            sent_at_ms: now,
            content,
        },
    })
}

impl Draft {
    /// Seals the message and commits it with its outbox row; returns the
    /// sender's copy (an empty text for an acknowledgement). Drafts of one
    /// conversation committed at the same time share an envelope
    /// ([`super::dm_batch::DmSealer`]).
    pub async fn commit(self, node: &Arc<Node>) -> Result<MessageRow, ServiceError> {
        let shared = node.p2p().ok_or(ServiceError::NetworkDown)?;
        // Refused to its sender alone, before it joins others.
        self.msg.check_caps().map_err(|e| match e {
            MessagingError::TooLarge { .. } => ServiceError::InvalidParameter(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        })?;
        shared.dm_sealer.submit(self).await
    }

    /// Whether `other` is of the same conversation (the same sender and
    /// recipient, and the recipient's same key), so both may share an
    /// envelope.
    pub(super) fn same_conversation(&self, other: &Draft) -> bool {
        self.msg.same_ends(&other.msg) && self.messaging_key == other.messaging_key
    }

    /// A draft of `msg` from `from`, sealed to `messaging_key`, as
    /// [`draft`] makes them (for the sealer's tests).
    #[cfg(test)]
    pub(super) fn of(from: Identity, messaging_key: [u8; 32], msg: DirectMessage) -> Draft {
        Draft {
            from,
            messaging_key,
            msg,
        }
    }

    /// The message's id.
    #[cfg(test)]
    pub(super) fn id(&self) -> [u8; 16] {
        self.msg.id
    }

    /// Its bytes in an envelope ([`DirectMessage::encoded_len`]).
    pub(super) fn encoded_len(&self) -> usize {
        self.msg.encoded_len()
    }

    /// The sender's copy of the message (an empty text for an
    /// acknowledgement, which is not stored) and whether it is a text.
    fn into_row(self) -> (MessageRow, bool) {
        let content_hash = self.msg.content_hash();
        let msg = self.msg;
        let (text, is_text) = match msg.content {
            Content::Text(text) => (text, true),
            Content::Delivered(_) => (String::new(), false),
        };
        let row = MessageRow {
            account: msg.from,
            id: msg.id,
            peer: msg.to,
            direction: Direction::Out,
            seq: msg.seq,
            content_hash: if is_text { content_hash } else { [0; 32] },
            text,
            sent_at_ms: msg.sent_at_ms,
            received_at_ms: msg.sent_at_ms,
            state: DeliveryState::Sent,
        };
        (row, is_text)
    }
}

/// Drafts of one conversation sealed together: one envelope, expiring
/// [`TTL`] after the earliest of them was sent.
pub(super) struct Sealed {
    /// Each draft's copy, in order, and whether it is a text (stored).
    pub rows: Vec<(MessageRow, bool)>,
    pub entry: OutboxEntry,
}

/// Seals `drafts` (of one conversation, [`Draft::same_conversation`], and
/// fitting one envelope) into one envelope for the outbox; the drafts
/// become the sender's copies.
pub(super) fn seal_together(drafts: Vec<Draft>) -> Result<Sealed, MessagingError> {
    let Some(first) = drafts.first() else {
        return Err(MessagingError::Seal("no message to seal".into()));
    };
    let sent = drafts
        .iter()
        .map(|d| d.msg.sent_at_ms)
        .min()
        .unwrap_or(first.msg.sent_at_ms);
    let expires = sent.saturating_add(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX));
    let msgs: Vec<&DirectMessage> = drafts.iter().map(|d| &d.msg).collect();
    let envelope = messaging::seal_many(&first.from, &msgs, &first.messaging_key, expires)?;
    // Encoded once: the id is the SHA-256 of the encoding (Envelope::id).
    let encoded = envelope.encode();
    let entry = OutboxEntry {
        envelope_id: crate::ledger::codec::sha256(&encoded),
        account: first.msg.from.clone(),
        message_ids: msgs.iter().map(|m| m.id).collect(),
        mailbox: envelope.mailbox,
        envelope: encoded,
        expires_at_ms: expires,
        attempts: 0,
        next_attempt_ms: sent,
    };
    Ok(Sealed {
        rows: drafts.into_iter().map(Draft::into_row).collect(),
        entry,
    })
}

/// Once a sealed envelope is committed: the outbox worker is woken and
/// followers told of each text.
pub(super) fn queued(shared: &Shared, rows: &[(MessageRow, bool)]) {
    shared.outbox_kick.notify_one();
    for (row, _) in rows.iter().filter(|(_, is_text)| *is_text) {
        shared.metrics.messages_sent.inc();
        // Not handed over: by the time a follower prints it, the outbox
        // may have moved it on (a follower reads it then).
        shared.notify(Change::Dm {
            account: row.account.clone(),
            id: row.id,
            row: None,
        });
    }
}

/// Delivers what the outbox holds, as described in the module docs; what
/// a round moved is committed together. A round starts when a message is
/// queued, a peer appears or the database is restored, when the earliest
/// retry falls due, and at once after a round that delivered something
/// and left due envelopes behind ([`next_round_in`]).
pub async fn deliver_outbox(node: Arc<Node>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut restored = node.watch_database();
    // What a previous run left due goes out at once.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.outbox_kick.notified() => {}
            Ok(()) = restored.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let now = now_ms();
        let taken = node
            .with_db(move |db, _| {
                let expired = db.drop_expired_outbox(now)?;
                let due = db.take_due_outbox(now, ROUND, &RETRY)?;
                // Leased already: an error here must not lose the round.
                let next = db.next_outbox_attempt().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read the outbox's next retry");
                    None
                });
                Ok((expired, due, next))
            })
            .await;
        let (due, next_attempt) = match taken {
            Ok((expired, due, next)) => {
                for (account, id, moved) in expired {
                    if moved {
                        tracing::info!(account, id = %hex::encode(id), "undelivered message expired");
                        shared.notify(Change::Dm { account, id, row: None });
                    } else {
                        tracing::debug!(account, id = %hex::encode(id), "expired envelope dropped (an acknowledgement, or acknowledged meanwhile)");
                    }
                }
                (due, next)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                wait = IDLE_ROUND;
                continue;
            }
        };
        let delivered = if due.is_empty() {
            None
        } else {
            Some(deliver_and_record(&node, &shared, due).await)
        };
        wait = next_round_in(delivered, next_attempt, now);
    }
}

/// Delivers a round and records what reached someone; whether anything did.
async fn deliver_and_record(node: &Arc<Node>, shared: &Arc<Shared>, due: Vec<OutboxEntry>) -> bool {
    let done = deliver_round(node, shared, due).await;
    if done.is_empty() {
        return false;
    }
    match node.with_db(move |db, _| Ok(db.finish_deliveries(&done)?)).await {
        Ok(moved) => {
            for (account, id) in moved {
                shared.notify(Change::Dm { account, id, row: None });
            }
        }
        // Leased, not lost: they are sent again after their backoff.
        Err(e) => tracing::warn!(error = %e, "cannot record deliveries"),
    }
    true
}

/// The longest the outbox worker sleeps without a reason to wake (a
/// safety net: sends, new peers and restores wake it anyway).
const IDLE_ROUND: Duration = Duration::from_secs(5);
/// The shortest pause after a round that delivered nothing (the network is
/// down, say): a backlog then waits for its retries, not for back-to-back
/// rounds that hold the database.
const FRUITLESS_PAUSE: Duration = Duration::from_millis(500);

/// How long to wait before the next round, given whether the last one
/// (started at `now_ms`) delivered anything (None: nothing was due) and
/// `next_attempt_ms`, the earliest retry in the outbox once the round's
/// envelopes were leased. Envelopes still due then (a round takes at most
/// [`ROUND`]) go at once, so a backlog drains as fast as the network takes
/// it; otherwise the worker sleeps until the next retry, at most
/// [`IDLE_ROUND`], and at least [`FRUITLESS_PAUSE`] after a round that
/// reached no one.
fn next_round_in(delivered: Option<bool>, next_attempt_ms: Option<u64>, now_ms: u64) -> Duration {
    let until_next = match next_attempt_ms {
        Some(at) => Duration::from_millis(at.saturating_sub(now_ms)).min(IDLE_ROUND),
        None => IDLE_ROUND,
    };
    if delivered == Some(false) {
        until_next.max(FRUITLESS_PAUSE)
    } else {
        until_next
    }
}

/// One delivery round: envelopes for accounts of this node are taken at
/// once; those whose recipient's node is connected go to it in
/// `DeliverBatch`es, in outbox order; the rest, and whatever a node
/// refuses, to relays. Returns what reached someone, and the state it
/// reached; the others are retried after their backoff.
async fn deliver_round(node: &Arc<Node>, shared: &Arc<Shared>, due: Vec<OutboxEntry>) -> Vec<Delivery> {
    let mut done = Vec::new();
    let mut by_host: Vec<(PeerId, Vec<OutboxEntry>)> = Vec::new();
    let mut to_relays = Vec::new();
    let mut local = Vec::new();
    for entry in due {
        if node.local_for_mailbox(&entry.mailbox).await.is_some() {
            local.push(entry);
            continue;
        }
        match shared.host_of(&entry.mailbox) {
            Some(host) => match by_host.iter_mut().find(|(h, _)| *h == host) {
                Some((_, list)) => list.push(entry),
                None => by_host.push((host, vec![entry])),
            },
            None => to_relays.push(entry),
        }
    }
    if !local.is_empty() {
        done.extend(deliver_locally(node, shared, &local).await);
    }
    let budget = crate::network::MAX_REQUEST - 4096;
    let batches: Vec<_> = by_host
        .into_iter()
        .flat_map(|(host, entries)| {
            wire::batches(entries, |e| e.envelope.len(), budget)
                .into_iter()
                .map(move |batch| (host, batch))
        })
        .collect();
    let first = deliver_direct(shared, batches).await;
    // A batch whose connection closed under it goes once more, on a new
    // connection, before its envelopes go to relays' mailboxes, which
    // costs a relay a copy of each to store and the recipient a fetch. A
    // circuit through a relay closes at the relay's byte cap
    // (`network.relay_circuit_bytes`), every 16 MiB by default, with the
    // batches in flight on it; the next request opens a new one. Only
    // while the host still holds the presence: a direct connection that
    // closed means it went away, and the router forgot it.
    let (retry, gone): (Vec<_>, Vec<_>) = first
        .closed
        .into_iter()
        .partition(|(host, batch)| batch.first().is_some_and(|e| shared.host_of(&e.mailbox) == Some(*host)));
    shared.metrics.dm_batches_resent.inc_by(retry.len() as u64);
    let again = deliver_direct(shared, retry).await;
    for direct in [first.reached, again.reached] {
        done.extend(direct);
    }
    to_relays.extend(first.refused);
    to_relays.extend(again.refused);
    to_relays.extend(gone.into_iter().chain(again.closed).flat_map(|(_, batch)| batch));
    if !to_relays.is_empty() {
        let relays = shared.relays().await;
        let relays = &relays;
        let stored: Vec<(OutboxEntry, bool)> = futures::stream::iter(to_relays)
            .map(|entry| async move {
                let stored = store_with_relays(shared, &entry, relays).await;
                (entry, stored)
            })
            .buffer_unordered(RELAY_STORES_AT_ONCE)
            .collect()
            .await;
        done.extend(
            stored
                .iter()
                .filter(|(_, stored)| *stored)
                .map(|(entry, _)| delivery(entry, DeliveryState::Relayed)),
        );
    }
    done
}

/// What became of batches sent to their recipients' nodes.
#[derive(Default)]
struct Direct {
    /// Taken by the recipient's node (new or seen before).
    reached: Vec<Delivery>,
    /// Refused, or not answered: for relays.
    refused: Vec<OutboxEntry>,
    /// Batches whose connection closed before the answer.
    closed: Vec<(PeerId, Vec<OutboxEntry>)>,
}

/// Sends each batch to its host in a `DeliverBatch`, side by side, a few at
/// a time (each is up to a request's size, and a connection takes a
/// bounded number of streams): a recipient opens and stores them side by
/// side (the reader orders by sequence number, not by arrival).
async fn deliver_direct(shared: &Arc<Shared>, batches: Vec<(PeerId, Vec<OutboxEntry>)>) -> Direct {
    let answers: Vec<_> = futures::stream::iter(batches)
        .map(|(host, batch)| async move {
            let request = Request::DeliverBatch(batch.iter().map(|e| e.envelope.clone()).collect());
            let answer = shared.ask(host, &request).await;
            (host, batch, answer)
        })
        .buffered(BATCHES_AT_ONCE)
        .collect()
        .await;
    let mut direct = Direct::default();
    for (host, batch, answer) in answers {
        match answer {
            Ok(Response::Each(outcomes)) if outcomes.len() == batch.len() => {
                for (entry, outcome) in batch.into_iter().zip(outcomes) {
                    match outcome {
                        None => direct.reached.push(delivery(&entry, DeliveryState::Sent)),
                        Some(why) => {
                            tracing::debug!(peer = %host, why, "direct delivery refused");
                            direct.refused.push(entry);
                        }
                    }
                }
            }
            Err(AskError::Closed(why)) => {
                tracing::debug!(peer = %host, why, "connection closed under a direct delivery");
                direct.closed.push((host, batch));
            }
            Err(AskError::Failed(why)) => {
                // Not reachable (a dial that failed or timed out, say):
                // what it announced is forgotten, so that the next rounds
                // go to relays at once instead of dialling it again, until
                // it announces itself anew.
                tracing::debug!(peer = %host, why, "direct delivery failed");
                shared.forget_host(&host);
                direct.refused.extend(batch);
            }
            other => {
                tracing::debug!(peer = %host, answer = ?other.map(|_| ()), "direct delivery failed");
                direct.refused.extend(batch);
            }
        }
    }
    direct
}

fn delivery(entry: &OutboxEntry, state: DeliveryState) -> Delivery {
    Delivery {
        envelope_id: entry.envelope_id,
        account: entry.account.clone(),
        message_ids: entry.message_ids.clone(),
        state,
    }
}

/// Both ends on this node: taken in together, as a batch from a peer
/// would be. What reached its recipient (or was refused for good); the
/// rest is retried.
async fn deliver_locally(node: &Arc<Node>, shared: &Arc<Shared>, entries: &[OutboxEntry]) -> Vec<Delivery> {
    let envelopes: Vec<&[u8]> = entries.iter().map(|e| e.envelope.as_slice()).collect();
    let acks = Acks::default();
    let received = take_all(node, shared, check_all(node, shared, &envelopes).await.results, &acks).await;
    acks.queue(node).await;
    entries
        .iter()
        .zip(received)
        .filter_map(|(entry, received)| match received {
            Received::New | Received::Duplicate => Some(delivery(entry, DeliveryState::Sent)),
            Received::NotHere | Received::Later(_) => None,
            // Ours to fail (the database), not the envelope's: tried again.
            Received::Dropped(why) if why.starts_with("not stored") => {
                tracing::warn!(why, "own envelope not stored locally; trying again later");
                None
            }
            Received::Dropped(why) => {
                tracing::warn!(why, "own envelope refused locally; dropping it");
                Some(delivery(entry, DeliveryState::Sent))
            }
        })
        .collect()
}

/// Leaves an envelope with up to [`RELAY_COPIES`] relays; true when at
/// least one took it.
async fn store_with_relays(shared: &Shared, entry: &OutboxEntry, relays: &[PeerId]) -> bool {
    let request = Request::MailboxStore(entry.envelope.clone());
    let mut stored = 0;
    for relay in relays {
        match shared.ask(*relay, &request).await {
            Ok(Response::Ok) => stored += 1,
            Ok(Response::Refused(why)) => tracing::debug!(peer = %relay, why, "relay refused an envelope"),
            Ok(_) => {}
            Err(e) => tracing::debug!(peer = %relay, error = %e, "relay store failed"),
        }
        if stored == RELAY_COPIES {
            break;
        }
    }
    stored > 0
}

/// Announces where the local accounts are reachable.
pub async fn announce_presence(node: Arc<Node>, shared: Arc<Shared>, stop: CancellationToken) {
    shared.ensure_subscribed(presence::TOPIC).await;
    loop {
        if let Ok(locals) = node.local_identities().await {
            let me = shared.net.local_peer_id();
            for (_, identity) in locals {
                let p = Presence::new(&identity, me, now_ms());
                // No peer yet is fine: we announce again shortly.
                let _ = shared.net.publish(presence::TOPIC, p.encode()).await;
            }
        }
        // A kick (a peer came or went) announces again soon, though not
        // more often than every PRESENCE_AT_MOST: peers come in crowds, and
        // a peer that connects and disconnects on purpose must not make us
        // gossip much more than the timer does. After a kick, a moment for
        // gossipsub to learn a new peer's subscriptions.
        if stop
            .run_until_cancelled(tokio::time::sleep(PRESENCE_AT_MOST))
            .await
            .is_none()
        {
            return;
        }
        let kicked = tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.presence_kick.notified() => true,
            _ = tokio::time::sleep(PRESENCE_EVERY - PRESENCE_AT_MOST) => false,
        };
        if kicked
            && stop
                .run_until_cancelled(tokio::time::sleep(PRESENCE_SETTLE))
                .await
                .is_none()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_left_due_go_at_once() {
        // The round took ROUND and more were due: at once, whether it
        // delivered or nothing was due (a restore brought them).
        assert_eq!(next_round_in(Some(true), Some(900), 1_000), Duration::ZERO);
        assert_eq!(next_round_in(Some(true), Some(1_000), 1_000), Duration::ZERO);
        assert_eq!(next_round_in(None, Some(1_000), 1_000), Duration::ZERO);
    }

    #[test]
    fn otherwise_the_worker_sleeps_until_the_earliest_retry() {
        assert_eq!(
            next_round_in(Some(true), Some(1_250), 1_000),
            Duration::from_millis(250)
        );
        assert_eq!(next_round_in(None, Some(1_250), 1_000), Duration::from_millis(250));
        assert_eq!(next_round_in(Some(true), Some(60_000), 1_000), IDLE_ROUND);
        assert_eq!(next_round_in(None, None, 1_000), IDLE_ROUND, "an empty outbox");
    }

    #[test]
    fn a_round_that_reached_no_one_pauses() {
        // The network is down and a backlog is due: not back to back.
        assert_eq!(next_round_in(Some(false), Some(900), 1_000), FRUITLESS_PAUSE);
        assert_eq!(next_round_in(Some(false), Some(1_100), 1_000), FRUITLESS_PAUSE);
        assert_eq!(next_round_in(Some(false), Some(3_000), 1_000), Duration::from_secs(2));
        assert_eq!(next_round_in(Some(false), None, 1_000), IDLE_ROUND);
    }
}
