//! The ledger state: who exists, which channels exist, who holds and stakes
//! what, which message batches were anchored, and the validator set.
//!
//! Every collection is a BTreeMap or BTreeSet keyed by canonical values, so
//! iteration order — and therefore the state root — depends only on the
//! contents, never on the order things were inserted. Zero balances and
//! stakes are removed rather than stored, for the same reason: "absent" and
//! "zero" must not hash differently.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::block::{Block, Genesis};
use super::codec::{hex_bytes, Sink, Writer};
use super::error::GenesisError;
use super::names::canonical;
use super::tx::StakeRole;

/// Format tag of the state encoding that the state root hashes.
pub const STATE_MAGIC: &[u8] = b"dchat-state/1";

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The name as registered (its lowercase form is the unique key).
    pub name: String,
    #[serde(with = "hex_bytes")]
    pub identity_key: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub messaging_key: [u8; 32],
    /// Height of the block that registered it.
    pub registered_at: u64,
}

/// A channel. Members, invitees and the owner are canonical account names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// The name as created (its lowercase form is the unique key).
    pub name: String,
    pub owner: String,
    pub description: String,
    pub invite_only: bool,
    pub members: BTreeSet<String>,
    /// Accounts invited and not yet joined. Joining uses up the invitation.
    pub invited: BTreeSet<String>,
    pub created_at: u64,
}

/// An anchored batch of message hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    #[serde(with = "hex_bytes")]
    pub signer: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub merkle_root: [u8; 32],
    pub count: u32,
    pub height: u64,
}

/// The whole ledger state after some block. Mutated only by `apply.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerState {
    pub(super) chain_id: String,
    /// Height, hash and timestamp of the last applied block. They describe
    /// the chain position, not the application state, and stay out of the
    /// state root (the root is part of the block they would describe).
    pub(super) height: u64,
    pub(super) last_hash: [u8; 32],
    pub(super) last_timestamp_ms: u64,
    /// Canonical name → account.
    pub(super) accounts: BTreeMap<String, Account>,
    /// Identity key → canonical name. An index over `accounts`, so it is not
    /// hashed separately.
    pub(super) names_by_key: BTreeMap<[u8; 32], String>,
    /// Identity key → next expected nonce. Absent means 0.
    pub(super) nonces: BTreeMap<[u8; 32], u64>,
    /// Canonical name → channel.
    pub(super) channels: BTreeMap<String, Channel>,
    /// Identity key → spendable balance. Never holds a zero.
    pub(super) balances: BTreeMap<[u8; 32], u64>,
    /// (identity key, role) → staked amount. Never holds a zero.
    pub(super) stakes: BTreeMap<([u8; 32], StakeRole), u64>,
    pub(super) anchors: Vec<Anchor>,
    /// Validator key → voting weight. Fixed at genesis here; changing it at
    /// epoch boundaries from the recorded stakes is the consensus layer's job.
    pub(super) validators: BTreeMap<[u8; 32], u64>,
}

impl LedgerState {
    /// The state at height 0 and the genesis block that commits to it.
    /// Genesis validators' stakes are recorded as validator stakes of their
    /// keys; initial balances become spendable once the key registers.
    pub fn from_genesis(genesis: &Genesis) -> Result<(LedgerState, Block), GenesisError> {
        genesis.validate()?;
        let mut state = LedgerState {
            chain_id: genesis.chain_id.clone(),
            height: 0,
            last_hash: [0; 32],
            last_timestamp_ms: genesis.genesis_time_ms,
            accounts: BTreeMap::new(),
            names_by_key: BTreeMap::new(),
            nonces: BTreeMap::new(),
            channels: BTreeMap::new(),
            balances: BTreeMap::new(),
            stakes: BTreeMap::new(),
            anchors: Vec::new(),
            validators: BTreeMap::new(),
        };
        for v in &genesis.validators {
            state.validators.insert(v.key, v.stake);
            state.set_stake(v.key, StakeRole::Validator, v.stake);
        }
        for b in &genesis.balances {
            state.set_balance(b.key, b.amount);
        }
        let block = Block {
            height: 0,
            parent: [0; 32],
            timestamp_ms: genesis.genesis_time_ms,
            proposer: [0; 32],
            txs: Vec::new(),
            state_root: state.state_root(),
        };
        state.last_hash = block.hash();
        Ok((state, block))
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Height of the last applied block (0 = genesis).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Hash of the last applied block: the parent of the next one.
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }

    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }

    /// Looks an account up by name, in any case.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(&canonical(name))
    }

    pub fn account_by_key(&self, key: &[u8; 32]) -> Option<&Account> {
        self.names_by_key.get(key).and_then(|name| self.accounts.get(name))
    }

    /// All accounts, ordered by canonical name.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Looks a channel up by name, in any case.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(&canonical(name))
    }

    /// All channels, ordered by canonical name.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// The nonce the next transaction signed by `key` must carry.
    pub fn next_nonce(&self, key: &[u8; 32]) -> u64 {
        self.nonces.get(key).copied().unwrap_or(0)
    }

    pub fn balance(&self, key: &[u8; 32]) -> u64 {
        self.balances.get(key).copied().unwrap_or(0)
    }

    pub fn stake(&self, key: &[u8; 32], role: StakeRole) -> u64 {
        self.stakes.get(&(*key, role)).copied().unwrap_or(0)
    }

    /// Every non-zero stake for `role`, ordered by key.
    pub fn stakes(&self, role: StakeRole) -> impl Iterator<Item = ([u8; 32], u64)> + '_ {
        self.stakes
            .iter()
            .filter(move |((_, r), _)| *r == role)
            .map(|((key, _), amount)| (*key, *amount))
    }

    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    /// The validator set with voting weights, ordered by key.
    pub fn validators(&self) -> &BTreeMap<[u8; 32], u64> {
        &self.validators
    }

    pub(super) fn set_balance(&mut self, key: [u8; 32], amount: u64) {
        if amount == 0 {
            self.balances.remove(&key);
        } else {
            self.balances.insert(key, amount);
        }
    }

    pub(super) fn set_stake(&mut self, key: [u8; 32], role: StakeRole, amount: u64) {
        if amount == 0 {
            self.stakes.remove(&(key, role));
        } else {
            self.stakes.insert((key, role), amount);
        }
    }

    /// SHA-256 of the canonical encoding of the application state: chain
    /// id, accounts, nonces, channels, balances, stakes, anchors and
    /// validators, each section a count followed by its entries in key
    /// order. Streamed into the hasher, never built in memory.
    pub fn state_root(&self) -> [u8; 32] {
        let mut w = Writer::hasher();
        self.write_state(&mut w);
        w.finish_hash()
    }

    fn write_state<S: Sink>(&self, w: &mut Writer<S>) {
        fn count<S: Sink>(w: &mut Writer<S>, n: usize) {
            w.u64(u64::try_from(n).unwrap_or(u64::MAX));
        }
        w.raw(STATE_MAGIC);
        w.str(&self.chain_id);

        count(w, self.accounts.len());
        for (key, a) in &self.accounts {
            w.str(key);
            w.str(&a.name);
            w.raw(&a.identity_key);
            w.raw(&a.messaging_key);
            w.u64(a.registered_at);
        }
        count(w, self.nonces.len());
        for (key, nonce) in &self.nonces {
            w.raw(key);
            w.u64(*nonce);
        }
        count(w, self.channels.len());
        for (key, c) in &self.channels {
            w.str(key);
            w.str(&c.name);
            w.str(&c.owner);
            w.str(&c.description);
            w.bool(c.invite_only);
            w.u64(c.created_at);
            for set in [&c.members, &c.invited] {
                count(w, set.len());
                for name in set {
                    w.str(name);
                }
            }
        }
        count(w, self.balances.len());
        for (key, amount) in &self.balances {
            w.raw(key);
            w.u64(*amount);
        }
        count(w, self.stakes.len());
        for ((key, role), amount) in &self.stakes {
            w.raw(key);
            w.u8(role.tag());
            w.u64(*amount);
        }
        count(w, self.anchors.len());
        for a in &self.anchors {
            w.raw(&a.signer);
            w.raw(&a.merkle_root);
            w.u32(a.count);
            w.u64(a.height);
        }
        count(w, self.validators.len());
        for (key, weight) in &self.validators {
            w.raw(key);
            w.u64(*weight);
        }
    }
}
