//! Direct messages that arrive: an envelope is opened with the local
//! account whose mailbox it names, its signed sender checked against the
//! keys the chain registered for that account, stored once, and a signed
//! `Delivered` acknowledgement queued back (state `delivered` at the
//! sender). Envelopes come one by one (`Deliver`), in batches
//! (`DeliverBatch`), from a relay's mailbox page, or from a local sender;
//! a batch's envelopes are opened side by side and stored together.

use std::sync::Arc;

use dchat_keyfile::Identity;
use libp2p::PeerId;

use super::dm_batch::{on_cores, Acks};
use super::wire::Response;
use super::{now_ms, Change, Shared};
use crate::messaging::{self, Content, DirectMessage, Envelope, MessagingError};
use crate::metrics::DropReason;
use crate::service::Node;
use crate::storage::{DeliveryState, Direction, DmWrite, MessageRow};

/// The registered keys of an account, from the finalized chain.
pub(super) fn registered(node: &Node, name: &str) -> Option<crate::ledger::Account> {
    node.chain()?.read(|s| s.account(name).cloned())
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

/// An inbound envelope opened, verified and matched to the keys its
/// sender registered: its messages (one sender's, to one account, in the
/// order sealed), ready to be stored ([`take`]).
pub(super) struct Checked {
    account: String,
    identity: Identity,
    sender: crate::ledger::Account,
    msgs: Vec<DirectMessage>,
}

/// An envelope for a local account, not expired, and the keys to open it.
struct ToOpen {
    account: String,
    identity: Identity,
    envelope: Envelope,
}

/// What [`check_all`] made of a list of envelopes.
pub(super) struct CheckedAll {
    /// For each envelope, in order: checked, or what became of it when it
    /// cannot be stored.
    pub(super) results: Vec<Result<Checked, Received>>,
    /// The work the dropped ones cost: one for each, or the signature
    /// checks one cost when it cost more (an envelope of the format before
    /// ADR 0018 carries one signature per message, up to 64).
    pub(super) wasted: usize,
}

/// Opens envelopes for local accounts and checks them, in order. Three
/// steps, so that an
/// envelope from keys nobody registered costs one X25519 operation and no
/// signature check: decryption, on the blocking pool split in as many
/// tasks as there are cores (not on the threads the network runs on, and
/// not one thread wake-up per envelope); the sender's keys against the
/// chain; then the signatures of what is left, a part's together, on the
/// blocking pool again.
pub(super) async fn check_all(node: &Arc<Node>, shared: &Shared, envelopes: &[impl AsRef<[u8]>]) -> CheckedAll {
    let prepared = futures::future::join_all(envelopes.iter().map(|bytes| prepare(node, shared, bytes.as_ref()))).await;
    let mut results: Vec<Option<Result<Checked, Received>>> = Vec::with_capacity(prepared.len());
    let mut to_open = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Ok(t) => {
                to_open.push((i, t));
                results.push(None);
            }
            Err(received) => results.push(Some(Err(received))),
        }
    }
    let decrypted = on_cores("decrypting envelopes", to_open, |part| {
        part.into_iter()
            .map(|(i, t)| {
                let d = messaging::decrypt(&t.identity, &t.envelope);
                (i, t.account, t.identity, d)
            })
            .collect()
    })
    .await;
    let mut to_verify = Vec::new();
    for (i, account, identity, d) in decrypted {
        match d.map_err(|e| refused(shared, e)).and_then(|u| screen(node, shared, u)) {
            Ok((u, sender)) => to_verify.push((i, account, identity, sender, u)),
            Err(received) => results[i] = Some(Err(received)),
        }
    }
    let checks: Vec<(usize, usize)> = to_verify.iter().map(|(i, .., u)| (*i, u.signature_count())).collect();
    let verified = on_cores("checking signatures", to_verify, |part| {
        let (heads, unverified): (Vec<_>, Vec<_>) = part
            .into_iter()
            .map(|(i, account, identity, sender, u)| ((i, account, identity, sender), Ok(u)))
            .unzip();
        heads.into_iter().zip(messaging::verify_all(unverified)).collect()
    })
    .await;
    for ((i, account, identity, sender), opened) in verified {
        results[i] = Some(match opened {
            Ok(opened) => Ok(Checked {
                account,
                identity,
                sender,
                msgs: opened.into_iter().map(|o| o.message).collect(),
            }),
            Err(e) => Err(refused(shared, e)),
        });
    }
    // A part whose blocking task failed left its results empty: ours to
    // fail, not the sender's, so kept where it is for a retry.
    let results: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Received::Dropped("not stored: nothing came of opening it".into()))))
        .collect();
    let wasted = wasted(&results, &checks);
    CheckedAll { results, wasted }
}

/// [`CheckedAll::wasted`] of `results`, given the signatures checked for
/// some of them (index, how many).
fn wasted<T>(results: &[Result<T, Received>], checks: &[(usize, usize)]) -> usize {
    let dropped = |i: usize| matches!(results.get(i), Some(Err(Received::Dropped(_))));
    let beyond_one: usize = checks
        .iter()
        .filter(|(i, _)| dropped(*i))
        .map(|(_, n)| n.saturating_sub(1))
        .sum();
    (0..results.len()).filter(|i| dropped(*i)).count() + beyond_one
}

/// Decodes an envelope and finds the local account it is for.
async fn prepare(node: &Arc<Node>, shared: &Shared, bytes: &[u8]) -> Result<ToOpen, Received> {
    let envelope = match Envelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            shared.dropped(DropReason::Malformed);
            return Err(Received::Dropped(format!("malformed envelope: {e}")));
        }
    };
    if envelope.is_expired(now_ms()) {
        shared.dropped(DropReason::Expired);
        return Err(Received::Dropped("expired".into()));
    }
    let Some((account, identity)) = node.local_for_mailbox(&envelope.mailbox).await else {
        return Err(Received::NotHere);
    };
    Ok(ToOpen {
        account,
        identity,
        envelope,
    })
}

/// Why an envelope that did not decrypt or verify was refused (counted).
fn refused(shared: &Shared, e: MessagingError) -> Received {
    match e {
        MessagingError::WrongRecipient | MessagingError::WrongMailbox => {
            shared.dropped(DropReason::Misaddressed);
            Received::Dropped("wrongly addressed".into())
        }
        MessagingError::BadSignature | MessagingError::Decrypt => {
            shared.dropped(DropReason::BadSignature);
            Received::Dropped("does not decrypt or verify".into())
        }
        e => {
            shared.dropped(DropReason::Malformed);
            Received::Dropped(e.to_string())
        }
    }
}

/// A decrypted envelope's sender checked against the keys the chain
/// registered for the account its messages name (they share it: see
/// `messaging::decrypt`), before any signature is.
fn screen(
    node: &Node,
    shared: &Shared,
    u: messaging::Unverified,
) -> Result<(messaging::Unverified, crate::ledger::Account), Received> {
    let Some(sender) = registered(node, u.from()) else {
        return Err(Received::Later(format!(
            "sender {} is not registered here (yet)",
            u.from()
        )));
    };
    if !u.sender_matches(&sender.identity_key, &sender.messaging_key) {
        shared.dropped(DropReason::NotPermitted);
        return Err(Received::Dropped(format!("keys are not those {} registered", u.from())));
    }
    Ok((u, sender))
}

/// [`take`]s every checked envelope (their writes share commits); the
/// others keep what became of them.
pub(super) async fn take_all(
    node: &Arc<Node>,
    shared: &Shared,
    checked: Vec<Result<Checked, Received>>,
    acks: &Acks,
) -> Vec<Received> {
    futures::future::join_all(checked.into_iter().map(|c| async {
        match c {
            Ok(c) => take(node, shared, c, acks).await,
            Err(received) => received,
        }
    }))
    .await
}

/// Takes each message of a checked envelope ([`take_one`]), side by side
/// so that their writes share a commit. The envelope is taken when every
/// message was: if one could not be stored, the sender sends the whole
/// envelope again and those stored meanwhile are duplicates.
async fn take(node: &Arc<Node>, shared: &Shared, checked: Checked, acks: &Acks) -> Received {
    let Checked {
        account,
        identity,
        sender,
        msgs,
    } = checked;
    let (account, identity, sender) = (&account, &identity, &sender);
    let outcomes = futures::future::join_all(
        msgs.into_iter()
            .map(|msg| take_one(node, shared, account, identity, sender, msg, acks)),
    )
    .await;
    let mut taken = Received::Duplicate;
    for outcome in outcomes {
        match outcome {
            Received::Duplicate => {}
            Received::New => taken = Received::New,
            not_taken => return not_taken,
        }
    }
    taken
}

/// Stores a checked text (and owes its sender an acknowledgement in
/// `acks`), or applies a checked acknowledgement.
async fn take_one(
    node: &Arc<Node>,
    shared: &Shared,
    account: &str,
    identity: &Identity,
    sender: &crate::ledger::Account,
    msg: DirectMessage,
    acks: &Acks,
) -> Received {
    let now = now_ms();
    match msg.content {
        Content::Text(text) => {
            let row = MessageRow {
                account: account.to_string(),
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
            // Kept for followers, handed over if it is new; the writer takes
            // the row.
            let shown = shared.handed(&row);
            let new = match shared.dm_writer.submit(DmWrite::Incoming(row)).await {
                Ok(new) => new,
                Err(e) => return Received::Dropped(format!("not stored: {e}")),
            };
            // Acknowledge even a duplicate: the first ack may have been lost.
            acks.push(account, identity, sender, msg.id);
            if new {
                shared.metrics.messages_delivered.inc();
                shared.notify(Change::Dm {
                    account: account.to_string(),
                    id: msg.id,
                    row: shown,
                });
                Received::New
            } else {
                shared.dropped(DropReason::Duplicate);
                Received::Duplicate
            }
        }
        Content::Delivered(ids) => {
            let (a, peer, list) = (account.to_string(), sender.name.clone(), ids.clone());
            match node
                .with_db(move |db, _| Ok(db.mark_delivered(&a, &peer, &list)?))
                .await
            {
                Ok(0) => Received::Duplicate,
                Ok(_) => {
                    for id in ids {
                        shared.notify(Change::Dm {
                            account: account.to_string(),
                            id,
                            row: None,
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
    match accept_batch(node, shared, peer, &[bytes]).await {
        Response::Each(mut outcomes) => match outcomes.pop().flatten() {
            None => Response::Ok,
            Some(why) => Response::Refused(why),
        },
        other => other,
    }
}

/// Envelopes of a batch taken together; after the envelopes that fail to
/// open or check cost this much work ([`CheckedAll::wasted`]: one each,
/// or their signature checks), the rest of the batch is refused unopened.
const BATCH_CHUNK: usize = 32;
const MAX_BAD_IN_BATCH: usize = 16;

/// Answers `DeliverBatch`: each envelope checked and stored as `Deliver`
/// would, a chunk at a time together, so that they share commits; one
/// acknowledgement per sender for the whole batch, queued before the
/// answer. A batch full of junk stops being opened.
pub async fn accept_batch(
    node: &Arc<Node>,
    shared: &Arc<Shared>,
    peer: PeerId,
    envelopes: &[impl AsRef<[u8]>],
) -> Response {
    // Opened a chunk at a time (in parallel within it), so that a batch of
    // forgeries costs at most a chunk past MAX_BAD_IN_BATCH; then stored
    // together, sharing a commit.
    let mut checked = Vec::with_capacity(envelopes.len());
    let mut bad = 0;
    for chunk in envelopes.chunks(BATCH_CHUNK) {
        if bad >= MAX_BAD_IN_BATCH {
            checked.extend(
                chunk
                    .iter()
                    .map(|_| Err(Received::Dropped("too many bad envelopes in this batch".into()))),
            );
            continue;
        }
        let opened = check_all(node, shared, chunk).await;
        bad += opened.wasted;
        checked.extend(opened.results);
    }
    let acks = Acks::default();
    let received = take_all(node, shared, checked, &acks).await;
    acks.queue(node).await;
    Response::Each(received.into_iter().map(|r| refusal(peer, r)).collect())
}

/// Why an envelope was not taken; None when it was (new or seen before).
fn refusal(peer: PeerId, received: Received) -> Option<String> {
    match received {
        Received::New | Received::Duplicate => None,
        Received::NotHere => Some("no such account here".into()),
        Received::Later(why) => Some(why),
        Received::Dropped(why) => {
            tracing::debug!(peer = %peer, why, "inbound envelope dropped");
            Some(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_envelope_costs_its_signature_checks() {
        let dropped = || Err(Received::Dropped("bad".into()));
        let results: Vec<Result<(), Received>> = vec![
            dropped(), // refused before any signature
            dropped(), // an earlier-format envelope of 64 bad signatures
            Ok(()),    // 64 good ones cost nothing
            dropped(), // one bad signature
            Err(Received::Later("sender not registered yet".into())),
            Err(Received::NotHere),
        ];
        let checks = [(1, 64), (2, 64), (3, 1)];
        assert_eq!(wasted(&results, &checks), 1 + 64 + 1);
        // Enough to stop a batch after one such envelope.
        assert!(wasted(&results[..2], &checks[..1]) >= MAX_BAD_IN_BATCH);
        assert_eq!(wasted(&results[2..], &[]), 1);
    }
}
