//! The boundary between consensus and the rest of the daemon: where
//! consensus reads and writes chain data. The daemon implements
//! [`ChainStore`] over SQLite and its mempool; [`super::memory::MemoryStore`]
//! implements it in memory for the simulator tests.
//!
//! Every method is synchronous and is called from the consensus runtime's
//! single application task, so calls must be short (one SQLite transaction,
//! no network). Consensus keeps the speculative ledger states of
//! unfinalized blocks itself; the store only ever sees finalized state.

use std::sync::Arc;

use serde::Serialize;

use crate::ledger::{Applied, Block, LedgerState, SignedTx};

/// The highest finalized block the store holds, as consensus resumes from
/// it after a restart.
#[derive(Debug, Clone)]
pub struct FinalizedTip {
    pub block: Block,
    /// The ledger state after `block` (its `height()` and `last_hash()`
    /// must describe `block`).
    pub state: LedgerState,
    /// The finalization certificate of `block`, if it has its own (see
    /// [`Finalized::proof`]).
    pub proof: Option<Vec<u8>>,
}

/// A block that consensus has finalized, handed to [`ChainStore::finalize`].
#[derive(Debug, Clone, Copy)]
pub struct Finalized<'a> {
    pub block: &'a Block,
    /// Its hash (SHA-256 of the block encoding), computed once.
    pub hash: [u8; 32],
    /// The encoded simplex finalization certificate (2f+1 validator
    /// signatures over this block's hash). Only the block a certificate
    /// names has one; its ancestors finalized with it, and blocks fetched by
    /// sync, get `None` (they are authenticated by the hash chain down from
    /// a certified block).
    pub proof: Option<&'a [u8]>,
    /// The ledger state after the block, already computed by consensus.
    pub state: &'a Arc<LedgerState>,
    /// What each transaction of the block did, in order.
    pub applied: &'a [Applied],
}

/// Proof that a validator signed two conflicting consensus messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// `conflicting_notarize`, `conflicting_finalize` or `nullify_finalize`.
    pub kind: &'static str,
    /// The consensus view both messages are for.
    pub view: u64,
    /// The validator that signed both.
    #[serde(with = "hex_array")]
    pub signer: [u8; 32],
    /// The codec encoding of the commonware evidence (both signed messages),
    /// verifiable by anyone holding the validator set.
    #[serde(with = "hex_vec")]
    pub bytes: Vec<u8>,
}

/// Where consensus gets and puts chain data.
///
/// Ordering guarantees consensus gives the implementation:
/// - [`finalize`](Self::finalize) is called once per height, in height order
///   starting at `finalized_tip().height + 1` (after a crash between the
///   store's commit and consensus noticing, the same height can come again:
///   treat a block already stored at its height as success).
/// - [`store_unfinalized`](Self::store_unfinalized) is called before
///   consensus votes for or proposes a block.
pub trait ChainStore: Send + Sync + 'static {
    /// The highest finalized block above genesis with its state, or `None`
    /// when nothing beyond genesis is finalized (consensus builds genesis
    /// from the [`crate::ledger::Genesis`] it is given).
    fn finalized_tip(&self) -> Option<FinalizedTip>;

    /// The finalized block at `height` (1..=tip), for serving sync.
    fn finalized_block(&self, height: u64) -> Option<Block>;

    /// A finalized block, or an unfinalized one saved by
    /// [`store_unfinalized`](Self::store_unfinalized), by hash.
    fn block_by_hash(&self, hash: &[u8; 32]) -> Option<Block>;

    /// Saves a block that is not final yet. It MUST be durable when this
    /// returns `Ok`: consensus votes for it next, and after a crash of every
    /// validator the chain can only continue if the blocks they voted for
    /// can still be served. Blocks at or below the finalized height may be
    /// deleted once a block at their height is finalized.
    fn store_unfinalized(&self, block: &Block) -> Result<(), String>;

    /// Makes a block final: persist it with its transactions and the state
    /// after it, atomically. On `Err` consensus retries later and finalizes
    /// nothing above it meanwhile.
    fn finalize(&self, finalized: Finalized<'_>) -> Result<(), String>;

    /// Candidate transactions for the next block, in the order they should
    /// be tried, at most `max_txs` of them and `max_bytes` of encoded
    /// transactions. Consensus drops those the ledger rejects on the
    /// proposal's parent state (already included upstream, bad nonce...),
    /// so returning stale ones is harmless; evict them on `finalize`.
    fn mempool(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTx>;

    /// Records verified evidence of a validator equivocating.
    fn record_evidence(&self, evidence: &Evidence);
}

mod hex_array {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

mod hex_vec {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
