//! Blocks and the genesis description.
//!
//! Encoding of a block (primitives in `codec`):
//!
//! ```text
//! "dchat-block/1"  height:u64  parent[32]  timestamp_ms:u64  proposer[32]
//! state_root[32]  tx_count:u32  (len:u32  signed tx bytes) × tx_count
//! ```
//!
//! The block hash is the SHA-256 of that encoding, so it commits to the
//! transactions and to the state they lead to.

use serde::{Deserialize, Serialize};

use super::codec::{hex_bytes, sha256, Reader, Writer};
use super::error::{DecodeError, GenesisError};
use super::tx::{SignedTx, MAX_CHAIN_ID_LEN, MAX_TX_BYTES};

/// Format tag and version at the start of every encoded block.
pub const BLOCK_MAGIC: &[u8] = b"dchat-block/1";
/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 16_384;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;
/// Default block interval (DESIGN.md: 6 s).
pub const DEFAULT_BLOCK_INTERVAL_MS: u64 = 6_000;

/// One block of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub height: u64,
    /// Hash of the block at `height - 1` (all zero for genesis).
    pub parent: [u8; 32],
    pub timestamp_ms: u64,
    /// The validator that proposed the block (all zero for genesis).
    pub proposer: [u8; 32],
    pub txs: Vec<SignedTx>,
    /// The state root after applying `txs` to the parent's state.
    pub state_root: [u8; 32],
}

impl Block {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(BLOCK_MAGIC);
        w.u64(self.height);
        w.raw(&self.parent);
        w.u64(self.timestamp_ms);
        w.raw(&self.proposer);
        w.raw(&self.state_root);
        // A block holding more than u32::MAX transactions is refused by
        // apply_block long before it is encoded; saturating keeps this total.
        w.u32(u32::try_from(self.txs.len()).unwrap_or(u32::MAX));
        for tx in &self.txs {
            w.bytes(&tx.encode());
        }
        w.into_bytes()
    }

    /// Parses exactly one block, refusing anything over [`MAX_BLOCK_BYTES`]
    /// or [`MAX_BLOCK_TXS`], and any transaction that does not decode.
    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DecodeError::TooLarge {
                what: "block",
                len: bytes.len(),
                max: MAX_BLOCK_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        r.magic(BLOCK_MAGIC)?;
        let height = r.u64()?;
        let parent = r.array()?;
        let timestamp_ms = r.u64()?;
        let proposer = r.array()?;
        let state_root = r.array()?;
        let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        if count > MAX_BLOCK_TXS {
            return Err(DecodeError::TooLarge {
                what: "transaction count",
                len: count,
                max: MAX_BLOCK_TXS,
            });
        }
        // Reserve only what the remaining bytes could hold, never what the
        // count claims: each entry takes at least its 4-byte length.
        let mut txs = Vec::with_capacity(count.min(r.remaining() / 4));
        for _ in 0..count {
            txs.push(SignedTx::decode(r.bytes("transaction", MAX_TX_BYTES)?)?);
        }
        r.finish()?;
        Ok(Block {
            height,
            parent,
            timestamp_ms,
            proposer,
            txs,
            state_root,
        })
    }

    /// SHA-256 of the canonical encoding.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.encode())
    }
}

/// JSON for `chain block H --json`: `height`, `hash`, `parent`, `txs` and
/// the rest of the header, hashes in hex.
impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            height: u64,
            hash: String,
            parent: String,
            timestamp_ms: u64,
            proposer: String,
            state_root: String,
            txs: &'a [SignedTx],
        }
        View {
            height: self.height,
            hash: hex::encode(self.hash()),
            parent: hex::encode(self.parent),
            timestamp_ms: self.timestamp_ms,
            proposer: hex::encode(self.proposer),
            state_root: hex::encode(self.state_root),
            txs: &self.txs,
        }
        .serialize(s)
    }
}

/// A validator of the genesis set and its initial stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    #[serde(with = "hex_bytes")]
    pub key: [u8; 32],
    pub stake: u64,
}

/// An initial balance for an identity key, so that it can stake once it has
/// registered an account (registration itself gives no funds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    #[serde(with = "hex_bytes")]
    pub key: [u8; 32],
    pub amount: u64,
}

/// Everything that defines a chain before its first block: the contents of
/// `genesis.json`. The same file gives every node the same genesis block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Names the chain; part of every transaction signature.
    pub chain_id: String,
    /// Timestamp of the genesis block.
    #[serde(default)]
    pub genesis_time_ms: u64,
    pub block_interval_ms: u64,
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

impl Genesis {
    /// A chain with one validator and no balances, as `dchatd --dev` needs.
    pub fn single_validator(chain_id: &str, key: [u8; 32], block_interval_ms: u64) -> Genesis {
        Genesis {
            chain_id: chain_id.to_string(),
            genesis_time_ms: 0,
            block_interval_ms,
            validators: vec![GenesisValidator { key, stake: 1 }],
            balances: Vec::new(),
        }
    }

    /// Parses and validates `genesis.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = serde_json::from_slice(bytes).map_err(|e| GenesisError::Parse(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Pretty JSON, as written to `DIR/genesis.json`.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks what the state machine relies on: a usable chain id, at least
    /// one validator, no duplicate keys, and a total supply that fits a u64
    /// (so no later balance arithmetic can overflow).
    pub fn validate(&self) -> Result<(), GenesisError> {
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= MAX_CHAIN_ID_LEN
            && self
                .chain_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !id_ok {
            return Err(GenesisError::BadChainId { max: MAX_CHAIN_ID_LEN });
        }
        if self.block_interval_ms == 0 {
            return Err(GenesisError::ZeroBlockInterval);
        }
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut supply: u64 = 0;
        for v in &self.validators {
            if !seen.insert(v.key) {
                return Err(GenesisError::DuplicateValidator(v.key));
            }
            if v.stake == 0 {
                return Err(GenesisError::ZeroStake(v.key));
            }
            supply = supply.checked_add(v.stake).ok_or(GenesisError::SupplyOverflow)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in &self.balances {
            if !seen.insert(b.key) {
                return Err(GenesisError::DuplicateBalance(b.key));
            }
            supply = supply.checked_add(b.amount).ok_or(GenesisError::SupplyOverflow)?;
        }
        Ok(())
    }
}
