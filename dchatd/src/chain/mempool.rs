//! Transactions waiting for a block: deduplicated by id, bounded, and
//! checked against the finalized state with the pool's own transactions
//! applied, so a nonce or a name can be claimed only once.

use std::collections::HashSet;

use crate::ledger::{LedgerState, Rejection, SignedTx};

/// Most transactions waiting at once.
pub const MAX_POOL: usize = 20_000;

pub struct Mempool {
    txs: Vec<SignedTx>,
    ids: HashSet<[u8; 32]>,
    /// Finalized state with every pooled transaction applied in order.
    pending: LedgerState,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("transaction already pending")]
    Duplicate,
    #[error("the mempool is full ({MAX_POOL} transactions)")]
    Full,
    #[error("{0}")]
    Rejected(Rejection),
}

impl Mempool {
    pub fn new(finalized: &LedgerState) -> Mempool {
        Mempool {
            txs: Vec::new(),
            ids: HashSet::new(),
            pending: finalized.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.ids.contains(id)
    }

    /// The nonce `key`'s next transaction needs, counting the ones it has
    /// waiting here.
    pub fn next_nonce(&self, key: &[u8; 32]) -> u64 {
        self.pending.next_nonce(key)
    }

    pub fn insert(&mut self, tx: SignedTx) -> Result<[u8; 32], PoolError> {
        let id = tx.id();
        if self.ids.contains(&id) {
            return Err(PoolError::Duplicate);
        }
        if self.txs.len() >= MAX_POOL {
            return Err(PoolError::Full);
        }
        self.pending.apply(&tx).map_err(PoolError::Rejected)?;
        self.ids.insert(id);
        self.txs.push(tx);
        Ok(id)
    }

    /// Candidates for the next block, oldest first.
    pub fn candidates(&self) -> impl Iterator<Item = SignedTx> + '_ {
        self.txs.iter().cloned()
    }

    /// After a block is final: drop what it included and what no longer
    /// applies, and recheck the rest on the new finalized state.
    pub fn rebase(&mut self, finalized: &LedgerState, included: &HashSet<[u8; 32]>) {
        let mut pending = finalized.clone();
        let old = std::mem::take(&mut self.txs);
        self.ids.clear();
        for tx in old {
            let id = tx.id();
            if included.contains(&id) {
                continue;
            }
            if pending.apply(&tx).is_ok() {
                self.ids.insert(id);
                self.txs.push(tx);
            }
        }
        self.pending = pending;
    }
}
