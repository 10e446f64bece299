//! BFT consensus: validators agree on the order of ledger blocks with
//! commonware's simplex engine (pinned to 2026.10.0; ADR and the spike
//! report explain the choice). It tolerates f faulty validators of
//! n = 3f + 1, one vote per genesis validator, and a block is final once
//! 2f + 1 validators signed its finalization.
//!
//! # What the daemon uses
//!
//! ```text
//! let handle = consensus::start(ConsensusConfig { .. }, store).await?;   // READY after this
//! let mut events = handle.events();        // Finalized{height, hash}, Evidence(..), Halted{..}
//! tokio::select! { _ = shutdown => handle.stop().await?, r = handle.closed() => r? }
//! ```
//!
//! - [`ChainStore`] (in `store.rs`) is everything consensus needs from the
//!   daemon: the finalized tip at startup, blocks by hash and height for
//!   sync, durable storage of blocks it votes for, `finalize` (persist a
//!   block with the ledger state consensus computed), the mempool, and
//!   evidence. [`memory::MemoryStore`] is an in-memory implementation over
//!   the real ledger, for tests.
//! - [`ConsensusConfig`]: the node's identity seed, the genesis, its
//!   consensus listen address and every validator's address, and a storage
//!   directory for the vote journal. The block interval and so every
//!   timeout comes from the genesis ([`Timing::for_interval`]), since all
//!   validators must judge block timestamps alike.
//! - [`start`] runs consensus on its own OS thread with its own runtime
//!   (commonware's tokio runner, which cannot nest in the daemon's) and
//!   returns once the engine is running; [`ConsensusHandle`] stops it.
//!
//! # Inside
//!
//! - `params.rs`: validator set, namespace, timers, channels, limits.
//! - `chain.rs`: the application logic without I/O (propose, verify,
//!   finalize, sync), with speculative ledger states for certified but not
//!   yet final parents.
//! - `actor.rs`: runs `chain.rs` against the engine and the network.
//! - `validator.rs`: wires engine and actor over any runtime and p2p
//!   network, so the deterministic simulator runs the same code.
//! - `wire.rs`: our relay and sync messages; `runner.rs`: the OS thread,
//!   the runtime and the authenticated TCP network (`p2p::lookup`).
//!
//! Safety across crashes: the engine journals every vote before sending
//! it, under `storage_dir`; a validator restarted on the same directory
//! never signs a vote conflicting with one it sent before. Copying that
//! directory, or running one key on two hosts, defeats this.

mod actor;
mod chain;
mod finality;
pub mod memory;
mod params;
mod runner;
mod store;
pub mod validator;
mod wire;

use serde::Serialize;

pub use finality::FinalityVerifier;
pub use params::{
    key_bytes, private_key, public_key, ChainParams, Timing, CHANNEL_CERTIFICATES, CHANNEL_RELAY, CHANNEL_RESOLVER,
    CHANNEL_SYNC, CHANNEL_VOTES, MAX_MESSAGE_BYTES,
};
pub use runner::{start, ConsensusConfig, ConsensusHandle};
pub use store::{ChainStore, Evidence, Finalized, FinalizedTip};

/// What consensus tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConsensusEvent {
    /// A block is final and [`ChainStore::finalize`] has stored it.
    Finalized {
        height: u64,
        #[serde(serialize_with = "hex32")]
        hash: [u8; 32],
    },
    /// A validator signed conflicting messages (already recorded).
    Evidence(Evidence),
    /// Consensus stopped applying blocks: a certified block is invalid by
    /// our rules or conflicts with our finalized chain. This needs an
    /// operator; it cannot happen with at most f faulty validators and
    /// deterministic ledger rules.
    Halted { height: u64, reason: String },
}

fn hex32<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Why consensus could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("consensus configuration: {0}")]
    Config(String),
    #[error("cannot listen for consensus peers on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("consensus storage: {0}")]
    Store(String),
    #[error("consensus runtime: {0}")]
    Runtime(String),
    #[error("consensus thread panicked: {0}")]
    Panicked(String),
}
