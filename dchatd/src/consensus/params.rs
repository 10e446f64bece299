//! Everything derived from the genesis and the node key before consensus
//! starts: the validator set, the signing namespace, the engine timeouts,
//! the p2p channel numbers and message limits.

use std::time::Duration;

use commonware_codec::DecodeExt;
use commonware_consensus::simplex;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::sha256::Digest;
use commonware_cryptography::Signer;
use commonware_utils::ordered::Set;

use super::ConsensusError;
use crate::ledger::{Block, Genesis, LedgerState, MAX_BLOCK_BYTES};

/// The signature scheme of votes and certificates: plain Ed25519 by the
/// validators' identity keys, one vote per validator.
pub type Scheme = simplex::scheme::ed25519::Scheme;
/// What the engine tells the application about a proposal or a vote.
pub type Context = simplex::types::Context<Digest, PublicKey>;
/// A finalization certificate over a block hash.
pub type Finalization = simplex::types::Finalization<Scheme, Digest>;
/// Everything the engine reports.
pub type Activity = simplex::types::Activity<Scheme, Digest>;

/// p2p channel of the engine's votes.
pub const CHANNEL_VOTES: u64 = 0;
/// p2p channel of the engine's certificates.
pub const CHANNEL_CERTIFICATES: u64 = 1;
/// p2p channel of the engine's certificate fetcher.
pub const CHANNEL_RESOLVER: u64 = 2;
/// p2p channel on which a leader sends its proposed block to everyone.
pub const CHANNEL_RELAY: u64 = 3;
/// p2p channel of our block sync (see `wire.rs`).
pub const CHANNEL_SYNC: u64 = 4;

/// The largest p2p message: one block of [`MAX_BLOCK_BYTES`] plus framing.
/// Certificates and votes of any realistic validator set are far smaller.
pub const MAX_MESSAGE_BYTES: usize = MAX_BLOCK_BYTES + 64 * 1024;
/// Transactions we put into one proposal, in bytes, leaving room for the
/// block header and per-transaction length prefixes.
pub const MAX_PROPOSAL_TX_BYTES: usize = MAX_BLOCK_BYTES - 256 * 1024;

/// The engine's timers, derived from the block interval.
///
/// How they were chosen (measured in the deterministic simulator, see the
/// spike report): the leader holds its proposal until `parent.timestamp +
/// interval`, so a view lasts about one interval; `leader_timeout` must let
/// that wait finish, so it is one interval plus a second of network slack,
/// and `certification_timeout` one more second. After a partition heals,
/// the stuck views end when nodes exchange their repeated nullify votes,
/// every `timeout_retry`; keeping it at one interval (at most 1 s) lets
/// the chain resume within about two intervals.
///
/// `skip_timeout` is long on purpose. A leader silent for that long is
/// skipped at once instead of costing a `leader_timeout` per view, which
/// only pays off for a validator that is down for good. After a partition
/// heals, nodes judge each other's activity from before the heal, so with
/// a short skip timeout (the spike's interval + 10 s) half of them skip the
/// first leader and half vote for it: neither quorum forms and the view
/// waits out `certification_timeout` (4 s to resume at a 1 s interval in
/// the simulator, against 1.1 s with this setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for the leader's proposal in a view.
    pub leader_timeout: Duration,
    /// How long to wait for a view to be notarized before voting to skip it.
    pub certification_timeout: Duration,
    /// How often to repeat the vote to skip a stuck view.
    pub timeout_retry: Duration,
    /// After how long an inactive leader is skipped at once.
    pub skip_timeout: Duration,
    /// How long to wait for a peer's answer to a certificate or block fetch
    /// before asking another peer.
    pub fetch_timeout: Duration,
    /// Pause before fetching a certificate again.
    pub fetch_retry_delay: Duration,
    /// How far a proposal's timestamp may be ahead of our clock before we
    /// wait with our vote.
    pub max_clock_drift: Duration,
    /// How many views behind the finalized one the engine keeps.
    pub view_retention: u64,
}

impl Timing {
    /// The timers for a chain with this block interval.
    pub fn for_interval(interval: Duration) -> Timing {
        let retry = interval.clamp(Duration::from_millis(50), Duration::from_secs(1));
        Timing {
            leader_timeout: interval + Duration::from_secs(1),
            certification_timeout: interval + Duration::from_secs(2),
            timeout_retry: retry,
            skip_timeout: (interval * 10).max(Duration::from_secs(60)),
            fetch_timeout: Duration::from_secs(1),
            fetch_retry_delay: Duration::from_millis(200),
            max_clock_drift: Duration::from_millis(500),
            view_retention: 256,
        }
    }

    /// The orderings the engine asserts (it would panic otherwise).
    pub fn validate(&self) -> Result<(), ConsensusError> {
        let ok = self.leader_timeout > Duration::ZERO
            && self.certification_timeout > self.leader_timeout
            && self.timeout_retry > Duration::ZERO
            && self.skip_timeout > self.certification_timeout
            && self.skip_timeout > self.timeout_retry
            && self.fetch_timeout > Duration::ZERO
            && self.view_retention > 0;
        if ok {
            Ok(())
        } else {
            Err(ConsensusError::Config(format!(
                "consensus timers must satisfy 0 < leader_timeout < certification_timeout < skip_timeout, \
                 0 < timeout_retry < skip_timeout, fetch_timeout > 0 and view_retention > 0: {self:?}"
            )))
        }
    }
}

/// The ed25519 private key of a 32-byte seed (the same key
/// `dchat_keyfile::Identity::identity_secret` holds).
pub fn private_key(seed: &[u8; 32]) -> Result<PrivateKey, ConsensusError> {
    PrivateKey::decode(seed.to_vec()).map_err(|e| ConsensusError::Config(format!("bad identity key: {e}")))
}

/// The ed25519 public key from its 32 bytes.
pub fn public_key(key: &[u8; 32]) -> Result<PublicKey, ConsensusError> {
    PublicKey::decode(key.to_vec())
        .map_err(|e| ConsensusError::Config(format!("bad validator key {}: {e}", hex::encode(key))))
}

/// The 32 bytes of an ed25519 public key.
pub fn key_bytes(key: &PublicKey) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(key.as_ref());
    out
}

/// What one validator needs, computed once from the genesis and its seed.
#[derive(Clone)]
pub struct ChainParams {
    pub genesis: Genesis,
    pub genesis_block: Block,
    pub genesis_hash: [u8; 32],
    pub genesis_state: LedgerState,
    /// The validators, sorted: a validator's index in votes is its position.
    pub participants: Set<PublicKey>,
    /// Signing and p2p namespace; binds every signature to this chain.
    pub namespace: Vec<u8>,
    pub interval: Duration,
    pub timing: Timing,
}

impl ChainParams {
    pub fn new(genesis: &Genesis, timing: Option<Timing>) -> Result<ChainParams, ConsensusError> {
        let (genesis_state, genesis_block) =
            LedgerState::from_genesis(genesis).map_err(|e| ConsensusError::Config(format!("genesis: {e}")))?;
        let genesis_hash = genesis_block.hash();
        let mut keys = Vec::with_capacity(genesis.validators.len());
        for v in &genesis.validators {
            keys.push(public_key(&v.key)?);
        }
        let participants = Set::from_iter_dedup(keys);
        let interval = Duration::from_millis(genesis.block_interval_ms);
        let timing = timing.unwrap_or_else(|| Timing::for_interval(interval));
        timing.validate()?;
        let namespace = format!("dchat-consensus/1/{}/{}", genesis.chain_id, hex::encode(genesis_hash)).into_bytes();
        Ok(ChainParams {
            genesis: genesis.clone(),
            genesis_block,
            genesis_hash,
            genesis_state,
            participants,
            namespace,
            interval,
            timing,
        })
    }

    /// The signing scheme for the validator with this private key.
    pub fn signer(&self, key: &PrivateKey) -> Result<Scheme, ConsensusError> {
        Scheme::signer(&self.namespace, self.participants.clone(), key.clone()).ok_or_else(|| {
            ConsensusError::Config(format!(
                "this node's key {} is not a genesis validator",
                hex::encode(key_bytes(&key.public_key()))
            ))
        })
    }

    /// A scheme that only verifies (for checking certificates from peers).
    pub fn verifier(&self) -> Scheme {
        Scheme::verifier(&self.namespace, self.participants.clone())
    }

    /// The largest p2p message any consensus channel carries.
    pub fn max_message_bytes(&self) -> usize {
        let n = u32::try_from(self.participants.len()).unwrap_or(u32::MAX);
        simplex::max_payload_size::<Scheme, Digest>(n).max(MAX_MESSAGE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_satisfy_the_engine() {
        for ms in [1, 50, 200, 500, 1000, 6000, 60_000] {
            let t = Timing::for_interval(Duration::from_millis(ms));
            t.validate().expect("valid");
            assert!(t.timeout_retry <= Duration::from_millis(ms).max(Duration::from_millis(50)));
        }
    }

    #[test]
    fn seed_gives_the_dalek_public_key() {
        let seed = [7u8; 32];
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let key = private_key(&seed).expect("key");
        assert_eq!(key_bytes(&key.public_key()), dalek);
        assert_eq!(key_bytes(&public_key(&dalek).expect("pk")), dalek);
    }
}
