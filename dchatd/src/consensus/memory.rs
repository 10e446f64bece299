//! A [`ChainStore`] in memory, over the real ledger types, for tests and
//! simulations. It survives a validator "crash" in the simulator because
//! the test keeps the `Arc` (as SQLite would survive a process).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::store::{ChainStore, Evidence, Finalized, FinalizedTip};
use crate::ledger::{Block, Genesis, GenesisError, LedgerState, SignedTx};

#[derive(Debug)]
struct Inner {
    /// Finalized blocks by height, genesis at 0, with their proofs.
    chain: Vec<(Block, [u8; 32], Option<Vec<u8>>)>,
    by_hash: HashMap<[u8; 32], u64>,
    state: LedgerState,
    unfinalized: HashMap<[u8; 32], Block>,
    mempool: Vec<SignedTx>,
    evidence: Vec<Evidence>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new(genesis: &Genesis) -> Result<MemoryStore, GenesisError> {
        let (state, block) = LedgerState::from_genesis(genesis)?;
        let hash = block.hash();
        let inner = Inner {
            chain: vec![(block, hash, None)],
            by_hash: HashMap::from([(hash, 0)]),
            state,
            unfinalized: HashMap::new(),
            mempool: Vec::new(),
            evidence: Vec::new(),
        };
        Ok(MemoryStore {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // method finishes its writes before returning), so poison is moot.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a transaction to the mempool.
    pub fn submit(&self, tx: SignedTx) {
        self.lock().mempool.push(tx);
    }

    /// Height of the finalized tip.
    pub fn height(&self) -> u64 {
        self.lock().state.height()
    }

    /// Hashes of the finalized blocks, index = height.
    pub fn hashes(&self) -> Vec<[u8; 32]> {
        self.lock().chain.iter().map(|(_, h, _)| *h).collect()
    }

    /// The finalized ledger state.
    pub fn state(&self) -> LedgerState {
        self.lock().state.clone()
    }

    /// Finalized blocks, index = height.
    pub fn blocks(&self) -> Vec<Block> {
        self.lock().chain.iter().map(|(b, _, _)| b.clone()).collect()
    }

    /// Heights of the finalized blocks that carry their own certificate.
    pub fn heights_with_proof(&self) -> Vec<u64> {
        self.lock()
            .chain
            .iter()
            .filter(|(_, _, p)| p.is_some())
            .map(|(b, _, _)| b.height)
            .collect()
    }

    /// Saved unfinalized blocks above `height`.
    pub fn unfinalized_above(&self, height: u64) -> Vec<Block> {
        self.lock()
            .unfinalized
            .values()
            .filter(|b| b.height > height)
            .cloned()
            .collect()
    }

    /// Evidence recorded so far.
    pub fn evidence(&self) -> Vec<Evidence> {
        self.lock().evidence.clone()
    }

    /// Transactions still waiting.
    pub fn mempool_len(&self) -> usize {
        self.lock().mempool.len()
    }
}

impl ChainStore for MemoryStore {
    fn finalized_tip(&self) -> Option<FinalizedTip> {
        let inner = self.lock();
        let (block, _, proof) = inner.chain.last()?;
        if block.height == 0 {
            return None;
        }
        Some(FinalizedTip {
            block: block.clone(),
            state: inner.state.clone(),
            proof: proof.clone(),
        })
    }

    fn finalized_block(&self, height: u64) -> Option<Block> {
        let inner = self.lock();
        inner
            .chain
            .get(usize::try_from(height).ok()?)
            .map(|(b, _, _)| b.clone())
    }

    fn block_by_hash(&self, hash: &[u8; 32]) -> Option<Block> {
        let inner = self.lock();
        if let Some(&h) = inner.by_hash.get(hash) {
            return inner.chain.get(usize::try_from(h).ok()?).map(|(b, _, _)| b.clone());
        }
        inner.unfinalized.get(hash).cloned()
    }

    fn store_unfinalized(&self, block: &Block) -> Result<(), String> {
        self.lock().unfinalized.insert(block.hash(), block.clone());
        Ok(())
    }

    fn finalize(&self, f: Finalized<'_>) -> Result<(), String> {
        let mut inner = self.lock();
        let height = f.block.height;
        let next = inner.state.height() + 1;
        if height < next {
            // Already stored (idempotent), as long as it is the same block.
            return match inner.chain.get(usize::try_from(height).map_err(|e| e.to_string())?) {
                Some((_, h, _)) if *h == f.hash => Ok(()),
                _ => Err(format!("a different block is final at height {height}")),
            };
        }
        if height != next || f.block.parent != inner.state.last_hash() || f.state.last_hash() != f.hash {
            return Err(format!("finalize out of order: height {height}, expected {next}"));
        }
        inner.chain.push((f.block.clone(), f.hash, f.proof.map(<[u8]>::to_vec)));
        inner.by_hash.insert(f.hash, height);
        inner.state = LedgerState::clone(f.state);
        inner.unfinalized.retain(|_, b| b.height > height);
        // Evict what is now included or can never apply.
        let state = &inner.state;
        let keep: Vec<SignedTx> = inner
            .mempool
            .iter()
            .filter(|tx| state.next_nonce(&tx.tx.signer) <= tx.tx.nonce)
            .cloned()
            .collect();
        inner.mempool = keep;
        Ok(())
    }

    fn mempool(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        let inner = self.lock();
        let mut bytes = 0;
        let mut out = Vec::new();
        for tx in inner.mempool.iter().take(max_txs) {
            bytes += tx.encode().len() + 4;
            if bytes > max_bytes {
                break;
            }
            out.push(tx.clone());
        }
        out
    }

    fn record_evidence(&self, evidence: &Evidence) {
        self.lock().evidence.push(evidence.clone());
    }
}
