//! The chain for nodes that run no consensus: final blocks fetched from
//! peers, each applied only after its finalization certificate checks out
//! against the genesis validators; and transactions submitted here passed
//! on to the validators: straight to those among the node's peers, else on
//! the transaction gossip topic, which every node with a chain checks and
//! carries on until it reaches validators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Request, Response, MAX_BLOCKS};
use super::Shared;
use crate::chain::Chain;
use crate::ledger::{check_authentic, Block, Rejection, SignedTx, TxKind};
use crate::metrics::DropReason;
use crate::network::{Verdict, MAX_GOSSIP};
use crate::service::Node;

/// The gossip topic of transactions on their way to validators. Every node
/// with a chain subscribes, so a transaction travels any path of peers.
pub const TX_TOPIC: &str = "dchat/tx/1";
/// How long a transaction no validator could be given is retried: its
/// submitter stopped waiting long before (`Chain::finality_timeout`).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// A transaction gossiped again within this long is not passed on again
/// (shorter than the shortest resend, 2 s, so a resend always travels).
const SEEN_FOR: Duration = Duration::from_secs(1);
/// Transaction ids remembered for [`SEEN_FOR`] at most.
const MAX_SEEN: usize = 100_000;
/// How far ahead of its signer's next nonce a transaction may be for a
/// node that only passes it on (a follower's state may lag a few blocks).
const NONCE_WINDOW: u64 = 1024;
/// Gossiped batches screened at once; more are not passed on.
pub const SCREENING_AT_ONCE: usize = 2;

/// Transaction ids gossip brought recently, so that the same transactions
/// republished (with a new send time, so as a new gossip message) are not
/// passed on again and again.
#[derive(Default)]
pub struct SeenTxs {
    at: HashMap<[u8; 32], Instant>,
}

impl SeenTxs {
    /// Records `ids` as seen now; true when at least one was not seen in
    /// the last [`SEEN_FOR`].
    fn any_new(&mut self, ids: &[[u8; 32]]) -> bool {
        let now = Instant::now();
        if self.at.len() > MAX_SEEN {
            self.at.retain(|_, at| now.duration_since(*at) < SEEN_FOR);
        }
        let mut new = false;
        for id in ids {
            let fresh = self.at.get(id).is_none_or(|at| now.duration_since(*at) >= SEEN_FOR);
            if fresh {
                self.at.insert(*id, now);
                new = true;
            }
        }
        new
    }
}

/// Answers `Blocks`: final blocks from `from`, each with its certificate.
pub fn serve_blocks(node: &Arc<Node>, from: u64, max: u16) -> Response {
    let Some(chain) = node.chain() else {
        return Response::Refused("this node has no chain".into());
    };
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for height in from.max(1)..from.max(1).saturating_add(u64::from(max.min(MAX_BLOCKS))) {
        let Some((block, Some(proof))) = chain.block_by_height(height) else {
            break;
        };
        let encoded = block.encode();
        bytes += encoded.len() + proof.len();
        if bytes > crate::network::MAX_RESPONSE / 2 && !blocks.is_empty() {
            break;
        }
        blocks.push((encoded, proof));
    }
    Response::Blocks(blocks)
}

/// Answers `SubmitTx` and `SubmitTxs`: a validator pools a peer's
/// transactions. `Ok` when each one is pooled; else the first refusal
/// (an already pending one counts; the others are pooled all the same).
pub async fn accept_transactions(node: &Arc<Node>, txs: Vec<Vec<u8>>) -> Response {
    let Some(chain) = node.chain().cloned() else {
        return Response::Refused("this node has no chain".into());
    };
    if !chain.consensus_running() {
        return Response::Refused("this node is not a validator".into());
    }
    // Signature checks cost CPU: off the network's tasks.
    let pooled = tokio::task::spawn_blocking(move || {
        let mut first_refusal = None;
        for bytes in txs {
            let outcome = SignedTx::decode(&bytes)
                .map_err(|e| format!("malformed transaction: {e}"))
                .and_then(|tx| chain.submit_from_peer(tx).map(|_| ()).map_err(|e| e.to_string()));
            if let Err(why) = outcome {
                first_refusal.get_or_insert(why);
            }
        }
        first_refusal
    })
    .await;
    match pooled {
        Ok(None) => Response::Ok,
        Ok(Some(why)) => Response::Refused(why),
        Err(e) => Response::Refused(format!("transaction check failed: {e}")),
    }
}

/// A locally submitted transaction on its way to the validators.
struct Outgoing {
    tx: SignedTx,
    id: [u8; 32],
    submitted: Instant,
    /// When it was last handed to a validator or to gossip.
    sent: Option<Instant>,
}

/// Passes locally submitted transactions on: to every connected validator
/// when there is one, else as gossip on [`TX_TOPIC`] for peers to carry to
/// validators further away. What cannot go anywhere yet is retried. A node
/// without consensus also sends again what is still not final a while
/// later (a validator may have restarted with an empty pool, a gossip
/// message may have found no path); a validator proposes its own pool.
/// A transaction not final within the chain's timeout is reported to its
/// submitter by `submit_and_wait`.
pub async fn relay_transactions(
    chain: Arc<Chain>,
    shared: Arc<Shared>,
    mut txs: mpsc::UnboundedReceiver<SignedTx>,
    stop: CancellationToken,
) {
    shared.ensure_subscribed(TX_TOPIC).await;
    let resend_after = (chain.block_interval() * 4).clamp(Duration::from_secs(2), Duration::from_secs(15));
    let mut pending: Vec<Outgoing> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            tx = txs.recv() => match tx {
                Some(tx) => pending.push(Outgoing::new(tx)),
                None => return,
            },
            _ = tick.tick() => {}
        }
        // What arrived meanwhile goes in the same batches.
        while let Ok(tx) = txs.try_recv() {
            pending.push(Outgoing::new(tx));
        }
        // Done with: final (or no longer applicable), sent by a validator
        // (which proposes its own pool), or waited on for too long.
        let resends = !chain.consensus_running();
        let pooled = chain.pooled(pending.iter().map(|o| o.id));
        let mut still = pooled.into_iter();
        pending.retain(|o| {
            still.next().unwrap_or(false) && o.submitted.elapsed() < GIVE_UP_AFTER && (resends || o.sent.is_none())
        });
        let due: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].sent.is_none_or(|at| at.elapsed() >= resend_after))
            .collect();
        if due.is_empty() {
            continue;
        }
        let encoded: Vec<Vec<u8>> = due.iter().map(|&i| pending[i].tx.encode()).collect();
        let me = shared.net.local_peer_id();
        let validators: Vec<PeerId> = shared
            .peers()
            .await
            .into_iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .filter(|p| *p != me && shared.is_validator(p))
            .collect();
        let sent = if validators.is_empty() {
            gossip_transactions(&shared, encoded).await
        } else {
            for batch in batches(encoded, crate::network::MAX_REQUEST - 4096) {
                submit_to_validators(&shared, &validators, Request::SubmitTxs(batch)).await;
            }
            true
        };
        if sent {
            let now = Instant::now();
            for i in due {
                pending[i].sent = Some(now);
            }
        }
    }
}

impl Outgoing {
    fn new(tx: SignedTx) -> Outgoing {
        Outgoing {
            id: tx.id(),
            tx,
            submitted: Instant::now(),
            sent: None,
        }
    }
}

async fn submit_to_validators(shared: &Shared, validators: &[PeerId], request: Request) {
    let asks = validators.iter().map(|peer| {
        let request = &request;
        async move { (*peer, shared.ask(*peer, request).await) }
    });
    for (peer, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(Response::Ok) => {}
            Ok(Response::Refused(why)) => tracing::debug!(peer = %peer, why, "validator refused a transaction"),
            Ok(_) => tracing::debug!(peer = %peer, "unexpected answer to SubmitTxs"),
            Err(e) => tracing::debug!(peer = %peer, error = %e, "transaction relay failed"),
        }
    }
}

/// Publishes transactions on [`TX_TOPIC`]; false when some could not go
/// out (no peer subscribes yet), to be tried again. A transaction gossiped
/// twice is harmless: pools take it once.
async fn gossip_transactions(shared: &Shared, encoded: Vec<Vec<u8>>) -> bool {
    for batch in batches(encoded, MAX_GOSSIP - 4096) {
        let message = wire::encode_tx_gossip(super::now_ms(), &batch);
        if let Err(e) = shared.net.publish(TX_TOPIC, message).await {
            tracing::debug!(error = %e, "no validator among the peers and no peer to gossip transactions to");
            return false;
        }
    }
    true
}

/// What a gossiped batch of transactions was found to be.
#[derive(Debug, PartialEq, Eq)]
enum Screened {
    /// Every transaction authentic, at least one not seen final or pooled
    /// here: worth passing on.
    News,
    /// Authentic, but nothing new (already pooled, already final, or no
    /// longer applicable).
    Stale,
    /// Something in it is not a transaction or not signed by its signer:
    /// its sender is at fault.
    Bad(DropReason),
}

/// A batch of transactions gossiped on [`TX_TOPIC`]: passed on only when
/// every transaction in it is well formed and signed for this chain; a
/// validator also pools them (the pool's checks decide what is news).
pub async fn on_transactions(node: &Arc<Node>, shared: &Shared, data: &[u8]) -> Verdict {
    let Some(chain) = node.chain().cloned() else {
        return Verdict::Ignore;
    };
    let Ok(txs) = wire::decode_tx_gossip(data) else {
        shared.dropped(DropReason::Malformed);
        return Verdict::Reject;
    };
    let seen = Arc::clone(&shared.seen_txs);
    // Signature checks cost CPU: off the network's threads.
    let screened = tokio::task::spawn_blocking(move || screen(&chain, &seen, txs)).await;
    match screened {
        Ok(Screened::News) => Verdict::Accept,
        Ok(Screened::Stale) => {
            shared.dropped(DropReason::Duplicate);
            Verdict::Ignore
        }
        Ok(Screened::Bad(reason)) => {
            shared.dropped(reason);
            Verdict::Reject
        }
        Err(e) => {
            tracing::warn!(error = %e, "transaction check failed");
            Verdict::Ignore
        }
    }
}

fn screen(chain: &Chain, seen: &Mutex<SeenTxs>, encoded: Vec<Vec<u8>>) -> Screened {
    let chain_id = chain.genesis().chain_id.as_str();
    let mut decoded = Vec::with_capacity(encoded.len());
    for bytes in &encoded {
        let Ok(tx) = SignedTx::decode(bytes) else {
            return Screened::Bad(DropReason::Malformed);
        };
        decoded.push(tx);
    }
    // The same transactions again, within a second: nothing to check.
    let ids: Vec<[u8; 32]> = decoded.iter().map(SignedTx::id).collect();
    if !seen.lock().unwrap_or_else(|p| p.into_inner()).any_new(&ids) {
        return Screened::Stale;
    }
    let mut txs = Vec::with_capacity(decoded.len());
    for tx in decoded {
        match check_authentic(chain_id, &tx) {
            Ok(()) => txs.push(tx),
            Err(Rejection::BadSignature) => return Screened::Bad(DropReason::BadSignature),
            Err(_) => return Screened::Bad(DropReason::Malformed),
        }
    }
    let mut news = false;
    if chain.consensus_running() {
        for tx in txs {
            news |= chain.submit_from_peer(tx).is_ok();
        }
    } else {
        // A node that only passes transactions on has no pool to ask. News
        // is what could still apply: a registration, or a transaction of a
        // registered account whose nonce no final block used and that is
        // not far ahead (which no validator would pool).
        news = chain.read(|state| {
            txs.iter().any(|tx| {
                let next = state.next_nonce(&tx.tx.signer);
                let known = matches!(tx.tx.kind, TxKind::RegisterAccount { .. })
                    || state.account_by_key(&tx.tx.signer).is_some();
                known && tx.tx.nonce >= next && tx.tx.nonce < next.saturating_add(NONCE_WINDOW)
            })
        });
    }
    if news {
        Screened::News
    } else {
        Screened::Stale
    }
}

/// Splits encoded transactions into lists of at most [`MAX_ITEMS`] and
/// `budget` bytes, in order.
fn batches(txs: Vec<Vec<u8>>, budget: usize) -> Vec<Vec<Vec<u8>>> {
    wire::batches(txs, Vec::len, budget)
}

/// Keeps a node without consensus on the final chain: asks a connected
/// peer (validators first) for the blocks after its tip, about twice a
/// block interval.
pub async fn follow(chain: Arc<Chain>, shared: Arc<Shared>, stop: CancellationToken) {
    let Some(verifier) = shared.verifier.as_ref() else {
        return;
    };
    let every = (chain.block_interval() / 2).clamp(Duration::from_millis(100), Duration::from_secs(3));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if chain.consensus_running() {
            continue;
        }
        let mut peers: Vec<PeerId> = shared
            .peers()
            .await
            .into_iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .collect();
        peers.sort_by_key(|p| !shared.is_validator(p));
        for peer in peers {
            // Keep asking the same peer while it has more.
            loop {
                let tip = chain.tip();
                let request = Request::Blocks {
                    from: tip.height + 1,
                    max: MAX_BLOCKS,
                };
                let blocks = match shared.ask(peer, &request).await {
                    Ok(Response::Blocks(b)) => b,
                    _ => break,
                };
                if blocks.is_empty() {
                    break;
                }
                let full = blocks.len() == usize::from(MAX_BLOCKS);
                if let Err(why) = apply(&chain, verifier, blocks) {
                    shared.dropped(DropReason::BadSignature);
                    tracing::warn!(peer = %peer, why, "peer sent blocks that do not check out");
                    break;
                }
                if !full {
                    break;
                }
            }
            if chain.tip().height > 0 || shared.is_validator(&peer) {
                break;
            }
        }
    }
}

/// Applies fetched blocks in order; stops at the first that is not the
/// next block, not final, or not valid.
fn apply(
    chain: &Chain,
    verifier: &crate::consensus::FinalityVerifier,
    blocks: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), String> {
    for (bytes, proof) in blocks {
        let block = Block::decode(&bytes).map_err(|e| format!("undecodable block: {e}"))?;
        let tip = chain.tip();
        if block.height != tip.height + 1 || block.parent != tip.hash() {
            return Err(format!("block {} does not extend our tip {}", block.height, tip.height));
        }
        if !verifier.verify(&block.hash(), &proof) {
            return Err(format!("block {} has no valid finalization certificate", block.height));
        }
        chain
            .finalize(&block, Some(&proof), None)
            .map_err(|e| format!("block {}: {e}", block.height))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use dchat_keyfile::Identity;

    use crate::ledger::{Genesis, TxKind};
    use crate::service::SharedDb;
    use crate::storage::Database;

    #[test]
    fn batches_keep_order_and_respect_both_limits() {
        let request_budget = crate::network::MAX_REQUEST - 4096;
        let small: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let split = batches(small.clone(), request_budget);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
        assert_eq!(split.concat(), small);

        let big = vec![vec![7u8; 60 * 1024]; 9];
        let split = batches(big.clone(), request_budget);
        assert!(split.len() > 1);
        for b in &split {
            let encoded = Request::SubmitTxs(b.clone()).encode();
            assert!(encoded.len() <= crate::network::MAX_REQUEST, "{}", encoded.len());
        }
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 9);
        // Gossip messages are smaller than requests: one 60 KiB transaction
        // in each, every one within gossipsub's limit.
        let split = batches(big, MAX_GOSSIP - 4096);
        assert!(split.len() >= 4, "{}", split.len());
        for b in &split {
            assert!(wire::encode_tx_gossip(u64::MAX, b).len() <= MAX_GOSSIP);
        }
        assert!(batches(Vec::new(), request_budget).is_empty());
    }

    fn chain(dir: &std::path::Path) -> Arc<Chain> {
        let validator = Identity::from_secrets(&[1; 32], &[2; 32]);
        let genesis = Genesis::single_validator("test-chain", validator.signing_key().verifying_key().to_bytes(), 100);
        let db = SharedDb::new(Database::open(&dir.join("db.sqlite3"), &Default::default()).unwrap());
        Chain::open(genesis, db).unwrap()
    }

    /// A seen-cache of its own per call, so that only the call's own
    /// transactions count.
    fn fresh() -> Mutex<SeenTxs> {
        Mutex::new(SeenTxs::default())
    }

    fn register(name: &str, seed: u8, chain_id: &str) -> SignedTx {
        let who = Identity::from_secrets(&[seed; 32], &[seed.wrapping_add(1); 32]);
        let kind = TxKind::RegisterAccount {
            name: name.into(),
            identity_key: who.signing_key().verifying_key().to_bytes(),
            messaging_key: [seed; 32],
        };
        SignedTx::create(&who, chain_id, 0, kind)
    }

    #[test]
    fn gossiped_transactions_pass_on_only_when_authentic_and_new() {
        let dir = tempfile::tempdir().unwrap();
        let chain = chain(dir.path());
        let alice = register("alice", 7, "test-chain").encode();
        let mut forged = register("mallory", 9, "test-chain");
        forged.signature[3] ^= 1;
        let other_chain = register("carol", 11, "another-chain").encode();

        // A node that only passes transactions on.
        assert_eq!(screen(&chain, &fresh(), vec![alice.clone()]), Screened::News);
        assert_eq!(
            screen(&chain, &fresh(), vec![alice.clone(), forged.encode()]),
            Screened::Bad(DropReason::BadSignature),
            "one forgery spoils the batch"
        );
        assert_eq!(
            screen(&chain, &fresh(), vec![other_chain]),
            Screened::Bad(DropReason::BadSignature)
        );
        assert_eq!(
            screen(&chain, &fresh(), vec![vec![1, 2, 3]]),
            Screened::Bad(DropReason::Malformed)
        );
        assert_eq!(
            chain.mempool_len(),
            0,
            "a node without consensus pools nothing it passes on"
        );

        // A validator pools what is new, and only that is news.
        chain.set_consensus_running(true);
        assert_eq!(screen(&chain, &fresh(), vec![alice.clone()]), Screened::News);
        assert_eq!(chain.mempool_len(), 1);
        assert_eq!(screen(&chain, &fresh(), vec![alice.clone()]), Screened::Stale);

        // Once final, the transaction is stale for a node without a pool too.
        let (tip, state) = chain.tip_with_state();
        let proposer = Identity::from_secrets(&[1; 32], &[2; 32])
            .signing_key()
            .verifying_key()
            .to_bytes();
        let block = state
            .propose_block(chain.mempool_candidates(10, 1 << 20), tip.timestamp_ms + 100, proposer)
            .block;
        chain.store_unfinalized(&block).unwrap();
        chain.finalize(&block, Some(b"proof"), None).unwrap();
        chain.set_consensus_running(false);
        assert_eq!(screen(&chain, &fresh(), vec![alice.clone()]), Screened::Stale);
        // The next transaction of a registered account is news; one far
        // ahead of its nonce, or by a key nobody registered, is not.
        let alice_key = Identity::from_secrets(&[7; 32], &[8; 32]);
        let channel = |who: &Identity, nonce: u64| {
            let kind = TxKind::CreateChannel {
                name: "general".into(),
                description: String::new(),
                invite_only: false,
            };
            SignedTx::create(who, "test-chain", nonce, kind).encode()
        };
        assert_eq!(screen(&chain, &fresh(), vec![channel(&alice_key, 1)]), Screened::News);
        assert_eq!(
            screen(&chain, &fresh(), vec![channel(&alice_key, 1 + NONCE_WINDOW)]),
            Screened::Stale
        );
        let nobody = Identity::from_secrets(&[40; 32], &[41; 32]);
        assert_eq!(screen(&chain, &fresh(), vec![channel(&nobody, 0)]), Screened::Stale);
        // The same transactions gossiped again within a second: not passed
        // on again, whatever else the message says.
        let seen = fresh();
        let carol = register("carol", 15, "test-chain").encode();
        assert_eq!(screen(&chain, &seen, vec![carol.clone()]), Screened::News);
        assert_eq!(screen(&chain, &seen, vec![carol]), Screened::Stale);
        assert_eq!(
            screen(&chain, &fresh(), vec![register("bob", 13, "test-chain").encode()]),
            Screened::News
        );
    }
}
