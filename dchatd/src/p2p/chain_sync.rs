//! The chain for nodes that run no consensus: final blocks fetched from
//! peers, each applied only after its finalization certificate checks out
//! against the genesis validators; and transactions submitted here passed
//! on to the validators.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{Request, Response, MAX_BLOCKS, MAX_ITEMS};
use super::Shared;
use crate::chain::Chain;
use crate::ledger::{Block, SignedTx};
use crate::metrics::DropReason;
use crate::service::Node;

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

/// Passes locally submitted transactions to every connected validator,
/// retrying while none is connected (a transaction not final within the
/// chain's timeout is reported to its submitter by `submit_and_wait`).
pub async fn relay_transactions(
    shared: Arc<Shared>,
    mut txs: mpsc::UnboundedReceiver<SignedTx>,
    stop: CancellationToken,
) {
    let mut pending: Vec<(SignedTx, tokio::time::Instant)> = Vec::new();
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            tx = txs.recv() => match tx {
                Some(tx) => pending.push((tx, tokio::time::Instant::now())),
                None => return,
            },
            _ = retry.tick() => {}
        }
        if pending.is_empty() {
            continue;
        }
        let me = shared.net.local_peer_id();
        let validators: Vec<PeerId> = shared
            .peers()
            .await
            .into_iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .filter(|p| *p != me && shared.is_validator(p))
            .collect();
        if validators.is_empty() {
            // Give up on what waited long: its submitter has timed out.
            pending.retain(|(_, at)| at.elapsed() < Duration::from_secs(120));
            continue;
        }
        // What arrived meanwhile goes in the same batches.
        while let Ok(tx) = txs.try_recv() {
            pending.push((tx, tokio::time::Instant::now()));
        }
        let encoded: Vec<Vec<u8>> = pending.drain(..).map(|(tx, _)| tx.encode()).collect();
        for batch in relay_batches(encoded) {
            let request = Request::SubmitTxs(batch);
            let asks = validators.iter().map(|peer| {
                let (shared, request) = (&shared, &request);
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
    }
}

/// Splits encoded transactions into `SubmitTxs` requests that stay within
/// the item and size limits of a request.
fn relay_batches(txs: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    // Room for the framing around the transactions.
    const BUDGET: usize = crate::network::MAX_REQUEST - 4096;
    let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0;
    for tx in txs {
        let size = tx.len() + 4;
        let full = batches
            .last()
            .is_none_or(|b| b.len() == MAX_ITEMS as usize || bytes + size > BUDGET);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = batches.last_mut() {
            last.push(tx);
        }
    }
    batches
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

    #[test]
    fn relay_batches_keep_order_and_respect_both_limits() {
        let small: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let batches = relay_batches(small.clone());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
        assert_eq!(batches.concat(), small);

        let big = vec![vec![7u8; 60 * 1024]; 9];
        let batches = relay_batches(big);
        assert!(batches.len() > 1);
        for b in &batches {
            let encoded = Request::SubmitTxs(b.clone()).encode();
            assert!(encoded.len() <= crate::network::MAX_REQUEST, "{}", encoded.len());
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 9);
        assert!(relay_batches(Vec::new()).is_empty());
    }
}
