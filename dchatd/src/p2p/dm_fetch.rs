//! Fetching a local account's envelopes from relay mailboxes: a signed
//! fetch request, a page taken in as a delivery batch would be, and a
//! signed receipt so the relay deletes what was taken; the next page at
//! once after a full one that brought news.

use std::sync::Arc;
use std::time::Duration;

use dchat_keyfile::Identity;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use super::dm_batch::Acks;
use super::dm_inbound::{check_all, take_all, Received};
use super::wire::{self, Request, Response};
use super::{now_ms, Shared};
use crate::messaging::{FetchRequest, Receipt};
use crate::service::Node;

const FETCH_EVERY: Duration = Duration::from_secs(2);

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
    // A full page that brought something new may have more behind it; a
    // few pages per round, so that one relay cannot keep us from others.
    for _ in 0..MAX_PAGES_PER_ROUND {
        if fetch_page(node, shared, identity, relay).await == Page::Done {
            return;
        }
    }
}

/// Mailbox pages fetched from one relay for one account per round.
const MAX_PAGES_PER_ROUND: usize = 8;

#[derive(PartialEq, Eq)]
enum Page {
    FullWithNews,
    Done,
}

/// Fetches one page of envelopes from `relay`, takes them in (together,
/// so that they share commits), queues their acknowledgements and sends
/// the receipt for what was taken.
async fn fetch_page(node: &Arc<Node>, shared: &Arc<Shared>, identity: &Identity, relay: PeerId) -> Page {
    let request = Request::MailboxFetch(FetchRequest::new(identity, now_ms()).encode());
    let envelopes = match shared.ask(relay, &request).await {
        Ok(Response::Envelopes(list)) => list,
        _ => return Page::Done,
    };
    if envelopes.is_empty() {
        return Page::Done;
    }
    let acks = Acks::default();
    let received = take_all(node, shared, check_all(node, shared, &envelopes).await.results, &acks).await;
    acks.queue(node).await;
    let news = received.contains(&Received::New);
    let mut handled = Vec::new();
    for (bytes, outcome) in envelopes.iter().zip(received) {
        // Stored (or undeliverable for good): either way the relay may
        // forget it. Only a local storage failure keeps it there.
        match outcome {
            Received::Dropped(why) if why.starts_with("not stored") => continue,
            // Not ours to judge yet: it stays with the relay.
            Received::Later(_) | Received::NotHere => continue,
            _ => {}
        }
        // An envelope's id is the SHA-256 of its encoding, and decoding is
        // strict (one encoding per envelope): the bytes as they came.
        handled.push(crate::ledger::codec::sha256(bytes));
    }
    let mut receipted = 0;
    for ids in handled.chunks(crate::messaging::MAX_RECEIPT_IDS) {
        let Ok(receipt) = Receipt::new(identity, ids.to_vec()) else {
            continue;
        };
        match shared.ask(relay, &Request::MailboxReceipt(receipt.encode())).await {
            Ok(Response::Ok) => receipted += ids.len(),
            other => tracing::debug!(peer = %relay, answer = ?other.map(|_| ()), "receipt not taken"),
        }
    }
    // A page is cut by count or by bytes (envelopes carry many messages);
    // the encoded sizes are a little over the ciphertexts', so a page near
    // its byte budget is taken as full.
    let bytes: usize = envelopes.iter().map(Vec::len).sum();
    if wire::page_may_be_full(envelopes.len(), bytes) && receipted == envelopes.len() && news {
        Page::FullWithNews
    } else {
        Page::Done
    }
}
