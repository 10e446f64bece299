//! The chain as consensus's store: finalized history in SQLite, the
//! mempool, evidence. See `consensus::ChainStore` for the contract.

use crate::consensus::{ChainStore, Evidence, Finalized, FinalizedTip};
use crate::ledger::{Block, SignedTx};

use super::Chain;

impl ChainStore for Chain {
    fn finalized_tip(&self) -> Option<FinalizedTip> {
        let (block, state) = self.tip_with_state();
        if block.height == 0 {
            return None;
        }
        let proof = self.block_by_height(block.height).and_then(|(_, p)| p);
        Some(FinalizedTip { block, state, proof })
    }

    fn finalized_block(&self, height: u64) -> Option<Block> {
        self.block_by_height(height).map(|(b, _)| b)
    }

    fn block_by_hash(&self, hash: &[u8; 32]) -> Option<Block> {
        Chain::block_by_hash(self, hash)
    }

    fn store_unfinalized(&self, block: &Block) -> Result<(), String> {
        Chain::store_unfinalized(self, block).map_err(|e| e.to_string())
    }

    fn finalize(&self, finalized: Finalized<'_>) -> Result<(), String> {
        Chain::finalize(self, finalized.block, finalized.proof, Some(finalized.state)).map_err(|e| e.to_string())
    }

    fn mempool(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        self.mempool_candidates(max_txs, max_bytes)
    }

    fn record_evidence(&self, evidence: &Evidence) {
        Chain::record_evidence(self, evidence.kind, evidence.view, evidence.signer, &evidence.bytes);
    }
}
