//! What consensus asks of the chain: store a block before voting for it,
//! serve blocks for sync, finalize a block. Consensus keeps the speculative
//! states of blocks that are not final yet; this side only sees finality.

use std::sync::Arc;
use std::time::Duration;

use crate::ledger::{Block, LedgerState};
use crate::storage::{FinalizedBlock, TxEntry};

use super::{ids_of, Chain, ChainError, FinalizedTx, Inner};

impl Chain {
    /// Makes a block durable before consensus votes for it.
    pub fn store_unfinalized(&self, block: &Block) -> Result<(), ChainError> {
        let guard = self.db.lock();
        let d = guard.as_ref().ok_or(ChainError::ShuttingDown)?;
        d.store_unfinalized_block(&block.hash(), block.height, &block.encode())?;
        Ok(())
    }

    /// A block by hash: the genesis, a finalized one or a stored one.
    pub fn block_by_hash(&self, hash: &[u8; 32]) -> Option<Block> {
        if *hash == self.genesis_block.hash() {
            return Some(self.genesis_block.clone());
        }
        let guard = self.db.lock();
        let bytes = guard.as_ref()?.block_by_hash(hash).ok()??;
        Block::decode(&bytes).ok()
    }

    /// A finalized block by height (0 is the genesis).
    pub fn block_by_height(&self, height: u64) -> Option<(Block, Option<Vec<u8>>)> {
        if height == 0 {
            return Some((self.genesis_block.clone(), None));
        }
        let guard = self.db.lock();
        let (bytes, proof) = guard.as_ref()?.finalized_block(height).ok()??;
        Block::decode(&bytes).ok().map(|b| (b, proof))
    }

    /// Applies a final block: stored and committed first, then the in-memory
    /// state moves and waiters are woken. Idempotent; blocks must come in
    /// height order (consensus walks parents to guarantee it).
    /// `state` is the ledger state after the block when the caller already
    /// computed it (consensus does); otherwise the block is applied here.
    pub fn finalize(
        &self,
        block: &Block,
        proof: Option<&[u8]>,
        state: Option<&Arc<LedgerState>>,
    ) -> Result<(), ChainError> {
        let mut inner = self.lock();
        if block.height <= inner.tip.height {
            return Ok(());
        }
        let mut state = match state {
            Some(s) => Arc::clone(s),
            None => Arc::new(
                inner
                    .finalized
                    .after_block(block)
                    .map_err(|e| ChainError::Replay {
                        height: block.height,
                        reason: e.to_string(),
                    })?
                    .0,
            ),
        };
        {
            let guard = self.db.lock();
            let d = guard.as_ref().ok_or(ChainError::ShuttingDown)?;
            let ids: Vec<[u8; 32]> = block.txs.iter().map(|t| t.id()).collect();
            let entries: Vec<TxEntry<'_>> = block
                .txs
                .iter()
                .zip(&ids)
                .map(|(t, id)| TxEntry {
                    id,
                    signer: &t.tx.signer,
                    nonce: t.tx.nonce,
                })
                .collect();
            let (hash, encoded) = (block.hash(), block.encode());
            d.store_finalized_block(&FinalizedBlock {
                height: block.height,
                hash: &hash,
                parent: &block.parent,
                timestamp_ms: block.timestamp_ms,
                encoded: &encoded,
                proof,
                txs: &entries,
            })?;
            // Local accounts registered here now have their block.
            for t in &block.txs {
                if let crate::ledger::TxKind::RegisterAccount { name, .. } = &t.tx.kind {
                    d.set_registration_block(name, block.height)?;
                }
            }
        }
        std::mem::swap(&mut inner.finalized, &mut state);
        inner.tip = block.clone();
        let height = block.height;
        let included = ids_of(block);
        let Inner { mempool, finalized, .. } = &mut *inner;
        mempool.rebase(finalized, &included);
        drop(inner);
        self.height.send_replace(height);
        if let Some(histogram) = self.finality_latency.get() {
            histogram.observe(finality_latency(block.timestamp_ms, crate::p2p::now_ms()).as_secs_f64());
        }
        for id in included {
            let _ = self.finalized_txs.send(FinalizedTx { id, height });
        }
        tracing::info!(height, txs = block.txs.len(), "block finalized");
        Ok(())
    }

    pub fn record_evidence(&self, kind: &str, view: u64, signer: [u8; 32], bytes: &[u8]) {
        tracing::warn!(kind, view, signer = %hex::encode(signer), "consensus misbehaviour recorded");
        let guard = self.db.lock();
        if let Some(d) = guard.as_ref() {
            if let Err(e) = d.record_evidence(kind, view, &signer, bytes) {
                tracing::error!(error = %e, "cannot store evidence");
            }
        }
    }
}

/// From a block's proposal time to `now_ms` (both Unix ms); zero when the
/// proposer's clock ran ahead of ours (within the allowed drift).
pub(super) fn finality_latency(proposed_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(proposed_ms))
}
