//! Mailboxes a relay keeps for others: envelopes (mailbox id, expiry,
//! ciphertext — never plaintext, never the sender) stored in SQLite with a
//! TTL and a per-mailbox quota, handed out only to whoever proves it owns
//! the mailbox, and deleted on its signed receipt. They survive restarts
//! because they live in the database.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::wire::{Response, MAILBOX_PAGE_BYTES, MAX_ITEMS};
use super::{now_ms, Shared};
use crate::messaging::{Envelope, FetchRequest, Receipt};
use crate::metrics::DropReason;
use crate::service::Node;
use crate::storage::{MailboxQuota, RelayEnvelope, StorageError};

/// The longest an envelope may ask to be kept.
const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000 + 60_000;

fn is_relay(node: &Node) -> bool {
    node.config().roles.contains(&crate::config::Role::Relay)
}

/// Answers `MailboxStore`.
pub async fn store(node: &Arc<Node>, shared: &Arc<Shared>, bytes: &[u8]) -> Response {
    if !is_relay(node) {
        return Response::Refused("this node is not a relay".into());
    }
    let envelope = match Envelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Response::Refused(format!("malformed envelope: {e}"));
        }
    };
    let now = now_ms();
    if envelope.is_expired(now) || envelope.expires_at_ms > now + MAX_TTL_MS {
        shared.dropped(DropReason::NotPermitted);
        return Response::Refused("expiry out of range".into());
    }
    // Ours to deliver straight away when the recipient is hosted here.
    if node.local_for_mailbox(&envelope.mailbox).await.is_some() {
        return super::dm_inbound::accept_delivery(node, shared, shared.net.local_peer_id(), bytes).await;
    }
    let row = RelayEnvelope {
        id: envelope.id(),
        mailbox: envelope.mailbox,
        expires_at_ms: envelope.expires_at_ms,
        stored_at_ms: now,
        ciphertext: envelope.ciphertext,
    };
    let stored = node
        .with_db(move |db, _| match db.relay_store(&row, &MailboxQuota::default()) {
            Ok(_) => Ok(Ok(())),
            Err(e @ StorageError::QuotaExceeded { .. }) => Ok(Err(e.to_string())),
            Err(e) => Err(e.into()),
        })
        .await;
    match stored {
        Ok(Ok(())) => {
            shared.metrics.messages_relayed.inc();
            update_gauges(node).await;
            Response::Ok
        }
        Ok(Err(quota)) => {
            shared.dropped(DropReason::MailboxFull);
            Response::Refused(quota)
        }
        Err(e) => Response::Refused(format!("not stored: {e}")),
    }
}

/// Answers `MailboxFetch`: the envelopes of a mailbox whose owner signed
/// the request.
pub async fn fetch(node: &Arc<Node>, shared: &Arc<Shared>, bytes: &[u8]) -> Response {
    let request = match FetchRequest::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Response::Refused(format!("malformed fetch: {e}"));
        }
    };
    if let Err(e) = request.verify(now_ms()) {
        shared.dropped(DropReason::BadSignature);
        return Response::Refused(e.to_string());
    }
    let mailbox = request.mailbox;
    let now = now_ms();
    match node
        .with_db(move |db, _| Ok(db.relay_page(&mailbox, now, MAX_ITEMS, MAILBOX_PAGE_BYTES)?))
        .await
    {
        Ok(rows) => Response::Envelopes(
            rows.into_iter()
                .map(|r| {
                    Envelope {
                        mailbox: r.mailbox,
                        expires_at_ms: r.expires_at_ms,
                        ciphertext: r.ciphertext,
                    }
                    .encode()
                })
                .collect(),
        ),
        Err(e) => Response::Refused(format!("cannot read mailboxes: {e}")),
    }
}

/// Answers `MailboxReceipt`: deletes what the mailbox's owner received.
pub async fn receipt(node: &Arc<Node>, shared: &Arc<Shared>, bytes: &[u8]) -> Response {
    let receipt = match Receipt::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Response::Refused(format!("malformed receipt: {e}"));
        }
    };
    if let Err(e) = receipt.verify() {
        shared.dropped(DropReason::BadSignature);
        return Response::Refused(e.to_string());
    }
    let (mailbox, ids) = (receipt.mailbox, receipt.envelope_ids);
    match node.with_db(move |db, _| Ok(db.relay_delete(&mailbox, &ids)?)).await {
        Ok(_) => {
            update_gauges(node).await;
            Response::Ok
        }
        Err(e) => Response::Refused(format!("not deleted: {e}")),
    }
}

/// Sets the mailbox gauges from the database.
async fn update_gauges(node: &Arc<Node>) {
    if let Ok(t) = node.with_db(|db, _| Ok(db.relay_totals()?)).await {
        let m = node.metrics();
        m.mailbox_entries.set(crate::metrics::gauge_value(t.envelopes));
        m.mailbox_bytes.set(crate::metrics::gauge_value(t.bytes));
    }
}

/// Deletes expired envelopes once a minute.
pub async fn expire(node: Arc<Node>, stop: CancellationToken) {
    update_gauges(&node).await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let now = now_ms();
        match node.with_db(move |db, _| Ok(db.relay_delete_expired(now)?)).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(envelopes = n, "expired mailbox envelopes deleted");
                update_gauges(&node).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot expire mailbox envelopes"),
        }
    }
}
