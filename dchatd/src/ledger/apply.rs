//! The transition function: transactions and blocks in, effects out.
//!
//! Every transaction goes through one path: `plan` (in `rules.rs`) decides,
//! reading the state only, whether it is acceptable and exactly what it will
//! change; `commit` (in `commit.rs`) writes that down and cannot fail.
//! `check` is `plan` alone and `apply` is both, so a transaction that passed
//! `check` applies identically, and a rejected one changes nothing.

use serde::Serialize;

use super::block::{Block, MAX_BLOCK_TXS};
use super::codec::hex_bytes;
use super::error::{BlockError, Rejection};
use super::state::LedgerState;
use super::tx::{SignedTx, StakeRole};

/// What an accepted transaction changed. Names of accounts and channels are
/// canonical (lowercase); amounts are the values after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    AccountRegistered {
        account: String,
    },
    ChannelCreated {
        channel: String,
        owner: String,
    },
    ChannelJoined {
        channel: String,
        account: String,
    },
    ChannelLeft {
        channel: String,
        account: String,
    },
    Invited {
        channel: String,
        account: String,
    },
    Staked {
        role: StakeRole,
        amount: u64,
        balance: u64,
        stake: u64,
    },
    Unstaked {
        role: StakeRole,
        amount: u64,
        balance: u64,
        stake: u64,
    },
    MessagesAnchored {
        index: u64,
    },
}

/// The effect of one applied transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    #[serde(with = "hex_bytes")]
    pub tx_id: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub signer: [u8; 32],
    pub nonce: u64,
    /// Height of the block the transaction is (or would be) in.
    pub height: u64,
    pub event: Event,
}

/// A block built by [`LedgerState::propose_block`], with the candidates that
/// were left out and why.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub block: Block,
    pub rejected: Vec<(SignedTx, Rejection)>,
    /// The state after the block, as [`LedgerState::after_block`] makes it
    /// (the proposer need not apply its own block again).
    pub state: LedgerState,
    /// What each transaction of the block did.
    pub applied: Vec<Applied>,
}

impl LedgerState {
    /// Would `tx` be accepted as the next transaction? Changes nothing.
    pub fn check(&self, tx: &SignedTx) -> Result<(), Rejection> {
        self.plan(tx).map(|_| ())
    }

    /// Applies `tx` as the next transaction of the block at `height() + 1`.
    /// On rejection the state is unchanged.
    pub fn apply(&mut self, tx: &SignedTx) -> Result<Applied, Rejection> {
        let plan = self.plan(tx)?;
        let event = self.commit(&tx.tx, plan);
        Ok(Applied {
            tx_id: tx.id(),
            signer: tx.tx.signer,
            nonce: tx.tx.nonce,
            height: self.height.saturating_add(1),
            event,
        })
    }

    /// Applies a whole block or nothing: header checks, every transaction in
    /// order, then the claimed state root. Works on a copy and replaces the
    /// state only when everything matched.
    pub fn apply_block(&mut self, block: &Block) -> Result<Vec<Applied>, BlockError> {
        let (next, applied) = self.after_block(block)?;
        *self = next;
        Ok(applied)
    }

    /// The state after `block`, as [`LedgerState::apply_block`] would make
    /// it, leaving this one as it is: one copy of the state, where cloning
    /// first and applying to the clone would make two.
    pub fn after_block(&self, block: &Block) -> Result<(LedgerState, Vec<Applied>), BlockError> {
        self.check_header(block)?;
        let mut next = self.clone();
        let mut applied = Vec::with_capacity(block.txs.len());
        for (index, tx) in block.txs.iter().enumerate() {
            let effect = next.apply(tx).map_err(|rejection| BlockError::Tx {
                index,
                tx_id: tx.id(),
                rejection,
            })?;
            applied.push(effect);
        }
        let computed = next.state_root();
        if computed != block.state_root {
            return Err(BlockError::WrongStateRoot {
                claimed: block.state_root,
                computed,
            });
        }
        next.move_to(block);
        Ok((next, applied))
    }

    /// Builds the next block from `candidates` in order, leaving out the
    /// ones that are rejected at their turn, up to [`MAX_BLOCK_TXS`]. The
    /// timestamp is raised to the parent's if the clock went backwards.
    pub fn propose_block(
        &self,
        candidates: impl IntoIterator<Item = SignedTx>,
        timestamp_ms: u64,
        proposer: [u8; 32],
    ) -> Proposal {
        let mut next = self.clone();
        let mut txs = Vec::new();
        let mut applied = Vec::new();
        let mut rejected = Vec::new();
        for tx in candidates.into_iter() {
            match next.apply(&tx) {
                Ok(effect) => {
                    txs.push(tx);
                    applied.push(effect);
                }
                Err(rejection) => rejected.push((tx, rejection)),
            }
            if txs.len() == MAX_BLOCK_TXS {
                break;
            }
        }
        let block = Block {
            height: self.height.saturating_add(1),
            parent: self.last_hash,
            timestamp_ms: timestamp_ms.max(self.last_timestamp_ms),
            proposer,
            txs,
            state_root: next.state_root(),
        };
        next.move_to(&block);
        Proposal {
            block,
            rejected,
            state: next,
            applied,
        }
    }

    /// Records `block` as the last applied (its transactions already are).
    fn move_to(&mut self, block: &Block) {
        self.height = block.height;
        self.last_hash = block.hash();
        self.last_timestamp_ms = block.timestamp_ms;
    }

    fn check_header(&self, block: &Block) -> Result<(), BlockError> {
        let expected = self.height.saturating_add(1);
        if block.height != expected {
            return Err(BlockError::WrongHeight {
                expected,
                got: block.height,
            });
        }
        if block.parent != self.last_hash {
            return Err(BlockError::WrongParent {
                expected: self.last_hash,
                got: block.parent,
            });
        }
        if block.timestamp_ms < self.last_timestamp_ms {
            return Err(BlockError::TimestampRegressed {
                parent: self.last_timestamp_ms,
                got: block.timestamp_ms,
            });
        }
        if !self.validators.contains_key(&block.proposer) {
            return Err(BlockError::UnknownProposer(block.proposer));
        }
        if block.txs.len() > MAX_BLOCK_TXS {
            return Err(BlockError::TooManyTxs {
                count: block.txs.len(),
                max: MAX_BLOCK_TXS,
            });
        }
        Ok(())
    }
}
