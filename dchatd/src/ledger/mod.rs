//! The ledger state machine, without I/O (DESIGN.md "Ledger and consensus",
//! STYLE.md habit 6): signed transactions and blocks in, a new state and a
//! list of effects out. Consensus decides the order of blocks; storage keeps
//! them; neither is here, so every rule can be tested deterministically.
//!
//! - `tx`: transaction types, signing, ids; `tx_encoding`: their bytes.
//! - `block`: blocks, their encoding and hash; the genesis description.
//! - `state`: [`LedgerState`] and the state root.
//! - `apply`: `check`, `apply`, `apply_block`, `propose_block`; the rules
//!   they enforce are in `rules`, the writes in `commit`.
//! - `names`: account and channel name rules.
//! - `codec`: the encoding primitives all of the above share.

mod apply;
mod block;
pub(crate) mod codec;
mod commit;
mod error;
mod names;
mod rules;
mod state;
mod tx;
mod tx_encoding;
mod verified;

#[cfg(test)]
mod tests;

pub use apply::{Applied, Event, Proposal};
pub use block::{
    Block, Genesis, GenesisBalance, GenesisValidator, BLOCK_MAGIC, DEFAULT_BLOCK_INTERVAL_MS, MAX_BLOCK_BYTES,
    MAX_BLOCK_TXS,
};
pub use codec::sha256;
pub use error::{BlockError, DecodeError, GenesisError, Rejection};
pub use names::{canonical as canonical_name, validate_name, MAX_NAME_LEN};
pub use rules::check_authentic;
pub use state::{Account, Anchor, Channel, LedgerState, STATE_MAGIC};
pub use tx::{
    SignedTx, StakeRole, Tx, TxKind, MAX_CHAIN_ID_LEN, MAX_DESCRIPTION_LEN, MAX_TX_BYTES, SIGN_DOMAIN, TX_MAGIC,
};
