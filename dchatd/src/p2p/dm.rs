//! Direct messages on the network.
//!
//! Sending: the control handler drafts the message and hands it to the
//! sealer, which seals it with others of its conversation waiting at the
//! same time into one envelope and commits them with the envelope's outbox
//! row ([`queue`], [`super::dm_batch::DmSealer`]); it returns then. The
//! outbox worker delivers it ([`super::dm_outbox`]). Nodes announce where
//! their accounts are ([`announce_presence`]).
//!
//! Receiving is [`super::dm_inbound`]'s; fetching from relay mailboxes is
//! [`super::dm_fetch`]'s. Writes go through a group commit and acknowledgements are
//! coalesced ([`super::dm_batch`]).

use std::sync::Arc;
use std::time::Duration;

use dchat_keyfile::Identity;
use tokio_util::sync::CancellationToken;

use super::presence::{self, Presence};
use super::{now_ms, Change, Shared};
use crate::messaging::{self, Content, DirectMessage, MessagingError};
use crate::service::{Node, ServiceError};
use crate::storage::{DeliveryState, Direction, MessageRow, OutboxEntry};

/// How long an undelivered envelope is kept and retried.
pub const TTL: Duration = Duration::from_secs(7 * 24 * 3600);
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
