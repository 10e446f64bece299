//! Direct messages on the network.
//!
//! Sending: the control handler seals the message and commits it with an
//! outbox row ([`queue`]); it returns then. The outbox worker delivers:
//! to a local account at once, to the recipient's node when a fresh
//! presence names a connected one, else to up to two relays' mailboxes
//! (state `relayed`). Retries back off; nothing waits for the chain.
//!
//! Receiving ([`receive`]): open the envelope with the local account whose
//! mailbox it names, check the signed sender against the keys the chain has
//! registered for that account, store it once, and queue a signed
//! `Delivered` acknowledgement back (state `delivered` at the sender).

use std::sync::Arc;
use std::time::Duration;

use dchat_keyfile::Identity;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::presence::{self, Presence};
use super::wire::{Request, Response};
use super::{now_ms, Change, Shared};
use crate::messaging::{self, Content, DirectMessage, Envelope, FetchRequest, MessagingError, Receipt};
use crate::metrics::DropReason;
use crate::service::{Node, ServiceError};
use crate::storage::{DeliveryState, Direction, MessageRow, OutboxEntry, RetryPolicy};

/// How long an undelivered envelope is kept and retried.
pub const TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 60_000,
};
/// Relays an envelope is left with when its recipient is unreachable.
const RELAY_COPIES: usize = 2;
const PRESENCE_EVERY: Duration = Duration::from_secs(3);
const FETCH_EVERY: Duration = Duration::from_secs(2);

/// The registered keys of an account, from the finalized chain.
fn registered(node: &Node, name: &str) -> Option<crate::ledger::Account> {
    node.chain()?.read(|s| s.account(name).cloned())
}

/// Seals `content` from `from` to the account `to` and commits it (with,
/// for text, the sender's copy of the message) for the outbox worker.
pub(crate) async fn queue(
    node: &Arc<Node>,
    from_name: &str,
    from: &Identity,
    to: &crate::ledger::Account,
    content: Content,
) -> Result<MessageRow, ServiceError> {
    let (from_name, to_name) = (from_name.to_string(), to.name.clone());
    // Sequence number to commit under the conversation's lock (see
    // `Shared::send_lock`); other conversations proceed meanwhile.
    let _sending = match node.p2p() {
        Some(shared) => Some(shared.send_lock(&from_name, &to_name).lock().await),
        None => None,
    };
    let seq = {
        let (a, p) = (from_name.clone(), to_name.clone());
        node.with_db(move |db, _| Ok(db.next_seq(&a, &p)?)).await?
    };
    let now = now_ms();
    let id = messaging::new_message_id().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let msg = DirectMessage {
        id,
        from: from_name.clone(),
        from_key: from.identity_public(),
        to: to_name.clone(),
        to_key: to.identity_key,
        seq,
        sent_at_ms: now,
        content,
    };
    let expires = now + u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX);
    let envelope = messaging::seal(from, &msg, &to.messaging_key, expires).map_err(|e| match e {
        MessagingError::TooLarge { .. } => ServiceError::InvalidParameter(e.to_string()),
        other => ServiceError::Internal(other.to_string()),
    })?;
    let entry = OutboxEntry {
        envelope_id: envelope.id(),
        account: from_name.clone(),
        message_id: id,
        mailbox: envelope.mailbox,
        envelope: envelope.encode(),
        expires_at_ms: expires,
        attempts: 0,
        next_attempt_ms: now,
    };
    let row = match &msg.content {
        Content::Text(text) => Some(MessageRow {
            account: from_name.clone(),
            id,
            peer: to_name,
            direction: Direction::Out,
            seq,
            text: text.clone(),
            content_hash: msg.content_hash(),
            sent_at_ms: now,
            received_at_ms: now,
            state: DeliveryState::Sent,
        }),
        Content::Delivered(_) => None,
    };
    let stored = row.clone();
    node.with_db(move |db, _| {
        match &stored {
            Some(row) => db.insert_outgoing(row, &entry)?,
            None => db.enqueue_outbox(&entry)?,
        };
        Ok(())
    })
    .await?;
    if let Some(shared) = node.p2p() {
        shared.outbox_kick.notify_one();
        if let Some(row) = &row {
            shared.metrics.messages_sent.inc();
            shared.notify(Change::Dm {
                account: row.account.clone(),
                id,
            });
        }
    }
    Ok(row.unwrap_or(MessageRow {
        account: from_name,
        id,
        peer: to.name.clone(),
        direction: Direction::Out,
        seq,
        text: String::new(),
        content_hash: [0; 32],
        sent_at_ms: now,
        received_at_ms: now,
        state: DeliveryState::Sent,
    }))
}

/// What became of an inbound envelope.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// New, stored (text) or applied (acknowledgement).
    New,
    /// Seen before: shown once; acknowledged again.
    Duplicate,
    /// Not for an account of this node.
    NotHere,
    /// Not checkable yet: the sender is not registered in our copy of the
    /// chain (which may be behind). Left where it is, tried again later.
    Later(String),
    /// Dropped: the reason was counted.
    Dropped(String),
}

/// Opens, checks and stores one envelope for a local account.
pub async fn receive(node: &Arc<Node>, shared: &Shared, bytes: &[u8]) -> Received {
    let envelope = match Envelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Received::Dropped(format!("malformed envelope: {e}"));
        }
    };
    if envelope.is_expired(now_ms()) {
        shared.dropped(DropReason::Expired);
        return Received::Dropped("expired".into());
    }
    let Some((account, identity)) = node.local_for_mailbox(&envelope.mailbox).await else {
        return Received::NotHere;
    };
    let opened = match messaging::open(&identity, &envelope) {
        Ok(o) => o,
        Err(MessagingError::WrongRecipient | MessagingError::WrongMailbox) => {
            shared.dropped(DropReason::Misaddressed);
            return Received::Dropped("wrongly addressed".into());
        }
        Err(MessagingError::BadSignature | MessagingError::Decrypt) => {
            shared.dropped(DropReason::BadSignature);
            return Received::Dropped("does not decrypt or verify".into());
        }
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Received::Dropped(e.to_string());
        }
    };
    let msg = opened.message.clone();
    let Some(sender) = registered(node, &msg.from) else {
        return Received::Later(format!("sender {} is not registered here (yet)", msg.from));
    };
    if !opened.sender_matches(&sender.identity_key, &sender.messaging_key) {
        shared.dropped(DropReason::NotPermitted);
        return Received::Dropped(format!("keys are not those {} registered", msg.from));
    }
    let now = now_ms();
    match msg.content {
        Content::Text(text) => {
            let row = MessageRow {
                account: account.clone(),
                id: msg.id,
                peer: sender.name.clone(),
                direction: Direction::In,
                seq: msg.seq,
                content_hash: crate::ledger::codec::sha256(text.as_bytes()),
                text,
                sent_at_ms: msg.sent_at_ms,
                received_at_ms: now,
                state: DeliveryState::Delivered,
            };
            let new = match node.with_db(move |db, _| Ok(db.insert_message(&row)?)).await {
                Ok(new) => new,
                Err(e) => return Received::Dropped(format!("not stored: {e}")),
            };
            // Acknowledge even a duplicate: the first ack may have been lost.
            if let Err(e) = queue(node, &account, &identity, &sender, Content::Delivered(vec![msg.id])).await {
                tracing::warn!(error = %e, "cannot queue a delivery acknowledgement");
            }
            if new {
                shared.metrics.messages_delivered.inc();
                shared.notify(Change::Dm { account, id: msg.id });
                Received::New
            } else {
                shared.dropped(DropReason::Duplicate);
                Received::Duplicate
            }
        }
        Content::Delivered(ids) => {
            let (a, peer, list) = (account.clone(), sender.name.clone(), ids.clone());
            match node
                .with_db(move |db, _| Ok(db.mark_delivered(&a, &peer, &list)?))
                .await
            {
                Ok(0) => Received::Duplicate,
                Ok(_) => {
                    for id in ids {
                        shared.notify(Change::Dm {
                            account: account.clone(),
                            id,
                        });
                    }
                    Received::New
                }
                Err(e) => Received::Dropped(format!("not stored: {e}")),
            }
        }
    }
}

/// Answers `Deliver`: an envelope for an account hosted here.
pub async fn accept_delivery(node: &Arc<Node>, shared: &Arc<Shared>, peer: PeerId, bytes: &[u8]) -> Response {
    match receive(node, shared, bytes).await {
        Received::New | Received::Duplicate => Response::Ok,
        Received::NotHere => Response::Refused("no such account here".into()),
        Received::Later(why) => Response::Refused(why),
        Received::Dropped(why) => {
            tracing::debug!(peer = %peer, why, "inbound envelope dropped");
            Response::Refused(why)
        }
    }
}

/// Delivers what the outbox holds, as described in the module docs.
pub async fn deliver_outbox(node: Arc<Node>, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.outbox_kick.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let now = now_ms();
        let due = match node
            .with_db(move |db, _| {
                for (account, id) in db.drop_expired_outbox(now)? {
                    tracing::info!(account, id = %hex::encode(id), "undelivered message expired");
                }
                Ok(db.take_due_outbox(now, 256, &RETRY)?)
            })
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let relays = shared.relays().await;
        for entry in due {
            let outcome = deliver_one(&node, &shared, &entry, &relays).await;
            if let Some(state) = outcome {
                let (env_id, account, id) = (entry.envelope_id, entry.account.clone(), entry.message_id);
                let done = node
                    .with_db(move |db, _| {
                        db.outbox_done(&env_id)?;
                        Ok(db.set_message_state(&account, &id, state)?)
                    })
                    .await;
                if let Ok(true) = done {
                    shared.notify(Change::Dm {
                        account: entry.account.clone(),
                        id: entry.message_id,
                    });
                }
            }
        }
    }
}

/// One delivery attempt; the state the message reached, or None to retry.
async fn deliver_one(
    node: &Arc<Node>,
    shared: &Arc<Shared>,
    entry: &OutboxEntry,
    relays: &[PeerId],
) -> Option<DeliveryState> {
    // Both ends on this node.
    if node.local_for_mailbox(&entry.mailbox).await.is_some() {
        return match receive(node, shared, &entry.envelope).await {
            Received::New | Received::Duplicate => Some(DeliveryState::Sent),
            Received::NotHere | Received::Later(_) => None,
            Received::Dropped(why) => {
                tracing::warn!(why, "own envelope refused locally; dropping it");
                Some(DeliveryState::Sent)
            }
        };
    }
    let request = Request::Deliver(entry.envelope.clone());
    if let Some(host) = shared.host_of(&entry.mailbox) {
        match shared.ask(host, &request).await {
            Ok(Response::Ok) => return Some(DeliveryState::Sent),
            Ok(Response::Refused(why)) => tracing::debug!(peer = %host, why, "direct delivery refused"),
            Ok(_) => {}
            Err(e) => tracing::debug!(peer = %host, error = %e, "direct delivery failed"),
        }
    }
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
    (stored > 0).then_some(DeliveryState::Relayed)
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
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PRESENCE_EVERY) => {}
        }
    }
}

/// Collects the local accounts' envelopes from the connected relays, then
/// sends each relay a signed receipt so it deletes them.
pub async fn fetch_mailboxes(node: Arc<Node>, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.fetch_kick.notified() => {}
            _ = tokio::time::sleep(FETCH_EVERY) => {}
        }
        let relays = shared.relays().await;
        if relays.is_empty() {
            continue;
        }
        let Ok(locals) = node.local_identities().await else {
            continue;
        };
        for (_, identity) in &locals {
            for relay in &relays {
                fetch_from(&node, &shared, identity, *relay).await;
            }
        }
    }
}

async fn fetch_from(node: &Arc<Node>, shared: &Arc<Shared>, identity: &Identity, relay: PeerId) {
    let request = Request::MailboxFetch(FetchRequest::new(identity, now_ms()).encode());
    let envelopes = match shared.ask(relay, &request).await {
        Ok(Response::Envelopes(list)) => list,
        _ => return,
    };
    if envelopes.is_empty() {
        return;
    }
    let mut handled = Vec::new();
    for bytes in &envelopes {
        // Stored (or undeliverable for good): either way the relay may
        // forget it. Only a local storage failure keeps it there.
        match receive(node, shared, bytes).await {
            Received::Dropped(why) if why.starts_with("not stored") => continue,
            // Not ours to judge yet: it stays with the relay.
            Received::Later(_) | Received::NotHere => continue,
            _ => {}
        }
        if let Ok(env) = Envelope::decode(bytes) {
            handled.push(env.id());
        } else {
            handled.push(crate::ledger::codec::sha256(bytes));
        }
    }
    for ids in handled.chunks(crate::messaging::MAX_RECEIPT_IDS) {
        let Ok(receipt) = Receipt::new(identity, ids.to_vec()) else {
            continue;
        };
        match shared.ask(relay, &Request::MailboxReceipt(receipt.encode())).await {
            Ok(Response::Ok) => {}
            other => tracing::debug!(peer = %relay, answer = ?other.map(|_| ()), "receipt not taken"),
        }
    }
}
