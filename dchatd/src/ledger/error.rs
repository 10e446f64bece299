//! The errors of the ledger layer: why bytes did not decode, why a
//! transaction was rejected, why a block was refused, why a genesis file is
//! unusable.
//!
//! All of them are plain data (Clone, PartialEq) so that tests and the
//! consensus layer can compare them, and so that the control layer can map
//! each variant once to a typed wire error.

use super::tx::StakeRole;

/// Bytes that are not the canonical encoding of a transaction or block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ended in the middle of a field")]
    Truncated,
    #[error("{extra} bytes left over after the end of the value")]
    TrailingBytes { extra: usize },
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("wrong format tag or version")]
    BadMagic,
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("field {field} is {len} bytes, more than the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("boolean byte {0} is neither 0 nor 1")]
    BadBool(u8),
}

/// Why a transaction cannot be applied to the current state. A rejected
/// transaction changes nothing, not even the signer's nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("invalid name: {reason}")]
    InvalidName { reason: String },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("signature does not verify")]
    BadSignature,
    #[error("signer has no registered account")]
    UnknownSigner,
    #[error("bad nonce: expected {expected}, got {got}")]
    BadNonce { expected: u64, got: u64 },
    #[error("this identity key already has an account")]
    KeyAlreadyRegistered,
    #[error("account name {0:?} is taken")]
    NameTaken(String),
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("channel name {0:?} is taken")]
    ChannelTaken(String),
    #[error("no channel named {0:?}")]
    NoSuchChannel(String),
    #[error("only the owner of channel {0:?} may do this")]
    NotOwner(String),
    #[error("channel {0:?} is open to everyone; invitations are for invite-only channels")]
    NotInviteOnly(String),
    #[error("channel {0:?} is invite-only and this account has no invitation")]
    NotInvited(String),
    #[error("account is already invited to channel {0:?}")]
    AlreadyInvited(String),
    #[error("account is already a member of channel {0:?}")]
    AlreadyMember(String),
    #[error("account is not a member of channel {0:?}")]
    NotMember(String),
    #[error("insufficient balance: have {have}, need {need}")]
    InsufficientBalance { have: u64, need: u64 },
    #[error("insufficient {role} stake: have {have}, need {need}")]
    InsufficientStake { role: StakeRole, have: u64, need: u64 },
    /// Cannot happen while the total supply fits in a u64 (genesis checks
    /// that), but arithmetic on balances is checked rather than trusted.
    #[error("amount overflows")]
    Overflow,
}

/// Why a block was refused. The state is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block height is {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block parent {} is not the last block {}", hex::encode(got), hex::encode(expected))]
    WrongParent { expected: [u8; 32], got: [u8; 32] },
    #[error("block timestamp {got} ms is before its parent's {parent} ms")]
    TimestampRegressed { parent: u64, got: u64 },
    #[error("block proposer {} is not a validator", hex::encode(.0))]
    UnknownProposer([u8; 32]),
    #[error("block has {count} transactions, more than the limit of {max}")]
    TooManyTxs { count: usize, max: usize },
    #[error("transaction {index} ({}) rejected: {rejection}", hex::encode(tx_id))]
    Tx {
        index: usize,
        tx_id: [u8; 32],
        rejection: Rejection,
    },
    #[error(
        "state root {} differs from the block's {}",
        hex::encode(computed),
        hex::encode(claimed)
    )]
    WrongStateRoot { claimed: [u8; 32], computed: [u8; 32] },
}

/// A genesis description that cannot start a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis is not valid JSON: {0}")]
    Parse(String),
    #[error("chain_id must be 1 to {max} characters of [A-Za-z0-9_.-]")]
    BadChainId { max: usize },
    #[error("genesis needs at least one validator")]
    NoValidators,
    #[error("validator {} appears twice", hex::encode(.0))]
    DuplicateValidator([u8; 32]),
    #[error("validator {} has zero stake", hex::encode(.0))]
    ZeroStake([u8; 32]),
    #[error("balance for {} appears twice", hex::encode(.0))]
    DuplicateBalance([u8; 32]),
    #[error("block_interval_ms must be greater than zero")]
    ZeroBlockInterval,
    #[error("total of balances and stakes overflows a u64")]
    SupplyOverflow,
}
