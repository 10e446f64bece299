//! The outbox worker: delivers sealed envelopes to a local account at
//! once, to the recipient's node when a fresh presence names one (in
//! batches, in order; a batch whose connection closed under it once more,
//! on a new connection), else to up to two relays' mailboxes (state
//! `relayed`). Retries back off; nothing waits for the chain. Envelopes
//! are sealed and queued by [`super::dm`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::dm_batch::Acks;
use super::dm_inbound::{check_all, take_all, Received};
use super::wire::{self, Request, Response};
use super::{now_ms, Change, Shared};
use crate::network::NetError;
use crate::service::Node;
use crate::storage::{Delivery, DeliveryState, OutboxEntry, RetryPolicy};

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
            Err(NetError::Closed(why)) => {
                tracing::debug!(peer = %host, why, "connection closed under a direct delivery");
                direct.closed.push((host, batch));
            }
            Err(e) => {
                // Not reachable (a dial that failed or timed out, say):
                // what it announced is forgotten, so that the next rounds
                // go to relays at once instead of dialling it again, until
                // it announces itself anew.
                tracing::debug!(peer = %host, error = %e, "direct delivery failed");
                shared.forget_host(&host);
                direct.refused.extend(batch);
            }
            Ok(_) => {
                tracing::debug!(peer = %host, "direct delivery answered out of turn");
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
