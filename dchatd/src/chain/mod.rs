//! The chain as this node knows it: the ledger state at the finalized tip,
//! speculative states of blocks consensus is voting on, the mempool, and
//! the durable history in SQLite. Consensus calls in here (build, verify,
//! finalize); the control handlers submit transactions and read state.
//!
//! Data flow of a transaction: control handler → [`Chain::submit_and_wait`]
//! → mempool → (consensus asks) [`Chain::build_block`] → vote →
//! [`Chain::finalize`] → SQLite + ledger state → waiters woken.

mod consensus_store;
pub mod genesis;
mod mempool;
mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

pub use genesis::DEV_BLOCK_INTERVAL_MS;
pub use mempool::PoolError;

use crate::ledger::{Block, Genesis, LedgerState, Rejection, SignedTx};
use crate::service::SharedDb;
use mempool::Mempool;

/// Meta keys that tie a database to one chain.
pub const META_CHAIN_ID: &str = "chain_id";
pub const META_GENESIS_HASH: &str = "genesis_hash";

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("the database belongs to chain {found}, not {expected}; use another state directory")]
    WrongChain { expected: String, found: String },
    #[error("stored block {height} does not apply: {reason}")]
    Replay { height: u64, reason: String },
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Pool(String),
    #[error("not final within {0} s: the chain is not making progress")]
    Timeout(u64),
    #[error("this node has no chain (no genesis configured)")]
    NoChain,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("database: {0}")]
    Storage(String),
}

impl From<crate::storage::StorageError> for ChainError {
    fn from(e: crate::storage::StorageError) -> Self {
        ChainError::Storage(e.to_string())
    }
}

/// A transaction made final, as waiters see it.
#[derive(Debug, Clone)]
pub struct FinalizedTx {
    pub id: [u8; 32],
    pub height: u64,
}

struct Inner {
    /// Shared with consensus, which computed it (no copy per block).
    finalized: Arc<LedgerState>,
    tip: Block,
    mempool: Mempool,
}

pub struct Chain {
    /// Set while this node's consensus engine runs, so it can put
    /// submitted transactions into blocks.
    consensus_running: std::sync::atomic::AtomicBool,
    genesis: Genesis,
    genesis_block: Block,
    inner: Mutex<Inner>,
    db: SharedDb,
    height: watch::Sender<u64>,
    finalized_txs: broadcast::Sender<FinalizedTx>,
    /// Set once the P2P layer forwards locally submitted transactions to
    /// the validators (see `crate::p2p::chain_sync`).
    tx_relay: Mutex<Option<mpsc::UnboundedSender<SignedTx>>>,
    /// Where each block's proposal-to-finality time goes (the metrics
    /// histogram), once the daemon has wired it.
    finality_latency: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

impl Chain {
    /// Opens the chain: the genesis state, then every stored finalized
    /// block replayed on it (each checked again by the ledger rules).
    pub fn open(genesis: Genesis, db: SharedDb) -> Result<Arc<Chain>, ChainError> {
        let (mut state, genesis_block) =
            LedgerState::from_genesis(&genesis).map_err(|e| ChainError::Genesis(e.to_string()))?;
        let mut tip = genesis_block.clone();
        {
            let guard = db.lock();
            let d = guard.as_ref().ok_or(ChainError::ShuttingDown)?;
            bind_to_chain(d, &genesis, &genesis_block)?;
            let mut next = 1u64;
            loop {
                let batch = d.finalized_blocks_from(next, 512)?;
                if batch.is_empty() {
                    break;
                }
                for bytes in batch {
                    let block = Block::decode(&bytes).map_err(|e| ChainError::Replay {
                        height: next,
                        reason: e.to_string(),
                    })?;
                    state.apply_block(&block).map_err(|e| ChainError::Replay {
                        height: block.height,
                        reason: e.to_string(),
                    })?;
                    next = block.height + 1;
                    tip = block;
                }
            }
        }
        tracing::info!(chain_id = %genesis.chain_id, height = tip.height, "chain state loaded");
        let mempool = Mempool::new(&state);
        let (height, _) = watch::channel(tip.height);
        let (finalized_txs, _) = broadcast::channel(4096);
        Ok(Arc::new(Chain {
            consensus_running: std::sync::atomic::AtomicBool::new(false),
            genesis,
            genesis_block,
            inner: Mutex::new(Inner {
                finalized: Arc::new(state),
                tip,
                mempool,
            }),
            db,
            height,
            finalized_txs,
            tx_relay: Mutex::new(None),
            finality_latency: std::sync::OnceLock::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Inner is only changed by whole-value replacements and ledger calls
        // that leave it consistent when they return, so a poisoned lock is
        // still coherent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_consensus_running(&self, running: bool) {
        self.consensus_running
            .store(running, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn consensus_running(&self) -> bool {
        self.consensus_running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How long to wait for a transaction: ten block intervals, at least 30 s.
    pub fn finality_timeout(&self) -> Duration {
        (self.block_interval() * 10).max(Duration::from_secs(30))
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_block(&self) -> &Block {
        &self.genesis_block
    }

    pub fn block_interval(&self) -> Duration {
        Duration::from_millis(self.genesis.block_interval_ms)
    }

    /// The finalized tip.
    pub fn tip(&self) -> Block {
        self.lock().tip.clone()
    }

    pub fn watch_height(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    /// Up to `max_txs` pending transactions (at most `max_bytes` encoded),
    /// oldest first, for the next block.
    pub fn mempool_candidates(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        let inner = self.lock();
        let mut bytes = 0usize;
        inner
            .mempool
            .candidates()
            .take(max_txs)
            .take_while(|tx| {
                bytes += tx.encode().len();
                bytes <= max_bytes
            })
            .collect()
    }

    /// The finalized tip with the state after it.
    pub fn tip_with_state(&self) -> (Block, LedgerState) {
        let inner = self.lock();
        (inner.tip.clone(), LedgerState::clone(&inner.finalized))
    }

    pub fn mempool_len(&self) -> usize {
        self.lock().mempool.len()
    }

    /// Which of `ids` still wait in the pool (not final, still applicable).
    pub fn pooled(&self, ids: impl IntoIterator<Item = [u8; 32]>) -> Vec<bool> {
        let inner = self.lock();
        ids.into_iter().map(|id| inner.mempool.contains(&id)).collect()
    }

    /// Reads the finalized ledger state.
    pub fn read<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> T {
        f(&self.lock().finalized)
    }

    /// Checks `tx` against the finalized state plus the pending pool and,
    /// if it applies, queues it for a block.
    /// A transaction submitted here is also handed to the relay, when one
    /// is set, so that validators elsewhere see it.
    pub fn submit(&self, tx: SignedTx) -> Result<[u8; 32], ChainError> {
        let id = self.lock().mempool.insert(tx.clone()).map_err(pool_error)?;
        self.relay(tx);
        Ok(id)
    }

    /// A transaction a peer relayed to us: pooled, not relayed again.
    pub fn submit_from_peer(&self, tx: SignedTx) -> Result<[u8; 32], ChainError> {
        self.lock().mempool.insert(tx).map_err(pool_error)
    }

    /// Has locally submitted transactions forwarded to the validators.
    pub fn set_tx_relay(&self, relay: mpsc::UnboundedSender<SignedTx>) {
        *self.tx_relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay);
    }

    /// Records, for every block finalized from now on, the time from its
    /// proposal (the block's timestamp) to the moment this node stored it
    /// as final. Set once; later calls are ignored.
    pub fn set_finality_histogram(&self, histogram: prometheus_client::metrics::histogram::Histogram) {
        let _ = self.finality_latency.set(histogram);
    }

    fn relay(&self, tx: SignedTx) {
        if let Some(relay) = self.tx_relay.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = relay.send(tx);
        }
    }

    /// Whether a submitted transaction can become final: this node runs
    /// consensus, or the network relays transactions to validators.
    pub fn can_commit(&self) -> bool {
        self.consensus_running() || self.tx_relay.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Submits `tx` and waits until a final block holds it. A chain that
    /// stops making progress gives [`ChainError::Timeout`], not a hang.
    pub async fn submit_and_wait(&self, tx: SignedTx, timeout: Duration) -> Result<FinalizedTx, ChainError> {
        // Subscribe first: the block could be final before we listen.
        let finals = self.finalized_txs.subscribe();
        let id = self.submit(tx)?;
        self.wait_final(finals, id, timeout).await
    }

    /// Signs with the nonce `signer` needs next — counting its transactions
    /// still in the pool — and submits, under one lock so that two requests
    /// of the same account cannot pick the same nonce; then waits as
    /// [`Chain::submit_and_wait`] does.
    pub async fn sign_submit_and_wait(
        &self,
        signer: &[u8; 32],
        sign: impl FnOnce(u64) -> SignedTx,
        timeout: Duration,
    ) -> Result<FinalizedTx, ChainError> {
        let finals = self.finalized_txs.subscribe();
        let id = {
            let mut inner = self.lock();
            let tx = sign(inner.mempool.next_nonce(signer));
            let id = inner.mempool.insert(tx.clone()).map_err(pool_error)?;
            drop(inner);
            self.relay(tx);
            id
        };
        self.wait_final(finals, id, timeout).await
    }

    async fn wait_final(
        &self,
        mut finals: broadcast::Receiver<FinalizedTx>,
        id: [u8; 32],
        timeout: Duration,
    ) -> Result<FinalizedTx, ChainError> {
        let wait = async {
            loop {
                match finals.recv().await {
                    Ok(f) if f.id == id => return Ok(f),
                    Ok(_) => {}
                    // Fell behind a burst: look it up in the history.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(height) = self.tx_height(&id)? {
                            return Ok(FinalizedTx { id, height });
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(ChainError::ShuttingDown),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ChainError::Timeout(timeout.as_secs()))?
    }

    pub fn tx_height(&self, id: &[u8; 32]) -> Result<Option<u64>, ChainError> {
        let guard = self.db.lock();
        let d = guard.as_ref().ok_or(ChainError::ShuttingDown)?;
        Ok(d.tx_location(id)?.map(|l| l.height))
    }
}

fn pool_error(e: PoolError) -> ChainError {
    match e {
        PoolError::Rejected(r) => ChainError::Rejected(r),
        other => ChainError::Pool(other.to_string()),
    }
}

/// Records which chain a fresh database belongs to, and refuses a database
/// of another chain.
fn bind_to_chain(d: &crate::storage::Database, genesis: &Genesis, block: &Block) -> Result<(), ChainError> {
    let hash = hex::encode(block.hash());
    match d.get_meta(META_GENESIS_HASH)? {
        Some(found) if found != hash => {
            let found_id = d.get_meta(META_CHAIN_ID)?.unwrap_or(found);
            Err(ChainError::WrongChain {
                expected: genesis.chain_id.clone(),
                found: found_id,
            })
        }
        Some(_) => Ok(()),
        None => {
            d.set_meta(META_CHAIN_ID, &genesis.chain_id)?;
            d.set_meta(META_GENESIS_HASH, &hash)?;
            Ok(())
        }
    }
}

pub(crate) fn ids_of(block: &Block) -> HashSet<[u8; 32]> {
    block.txs.iter().map(SignedTx::id).collect()
}

#[cfg(test)]
mod tests;
