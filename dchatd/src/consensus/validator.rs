//! One validator: the simplex engine plus our application actor, started
//! on any commonware runtime and any p2p network. [`super::start`] uses it
//! with the tokio runtime and authenticated TCP; the simulator tests use it
//! with the deterministic runtime and the simulated network.

use std::sync::Arc;

use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::{Config, Engine, Floor, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::types::{Epoch, ViewDelta};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::sha256::Digest;
use commonware_cryptography::{Sha256, Signer};
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, Supervisor};
use commonware_utils::{NZUsize, NonZeroDuration, NZU16};
use rand_core::CryptoRng;
use tokio::sync::broadcast;

use super::actor::{millis, Actor};
use super::chain::{Chain, ChainConfig};
use super::params::{key_bytes, ChainParams};
use super::{ChainStore, ConsensusError, ConsensusEvent};

/// The journal partition of epoch 0 (the only epoch until validator-set
/// changes exist).
pub const JOURNAL_PARTITION: &str = "simplex-e0";

/// The five p2p channels a validator uses, each a (sender, receiver) pair
/// registered on the channel number of the same name in `params`.
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub relay: (S, R),
    pub sync: (S, R),
}

/// What a validator needs besides the runtime, store and network.
#[derive(Clone)]
pub struct ValidatorSetup {
    pub params: ChainParams,
    pub key: PrivateKey,
    /// Storage partition of the vote journal. Must survive restarts: it is
    /// what keeps a restarted validator from signing conflicting votes.
    pub journal_partition: String,
}

/// A running validator. Dropping it does not stop it (the runtime owns the
/// tasks); [`Validator::abort`] kills it like SIGKILL would.
pub struct Validator {
    engine: Handle<()>,
    app: Handle<()>,
}

impl Validator {
    /// Stops both tasks at once, wherever they are (a crash).
    pub fn abort(&self) {
        self.engine.abort();
        self.app.abort();
    }
}

/// Starts the engine and the application actor.
pub fn start_validator<E, B, S, R>(
    ctx: E,
    setup: ValidatorSetup,
    store: Arc<dyn ChainStore>,
    events: broadcast::Sender<ConsensusEvent>,
    blocker: B,
    channels: Channels<S, R>,
) -> Result<Validator, ConsensusError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + Supervisor,
    B: Blocker<PublicKey = PublicKey>,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let params = &setup.params;
    let scheme = params.signer(&setup.key)?;
    let me = key_bytes(&setup.key.public_key());
    let timing = params.timing;
    let interval_ms = u64::try_from(params.interval.as_millis()).unwrap_or(u64::MAX);
    let chain_cfg = ChainConfig {
        me,
        peers: params.participants.iter().map(key_bytes).filter(|k| *k != me).collect(),
        interval_ms,
        max_drift_ms: u64::try_from(timing.max_clock_drift.as_millis()).unwrap_or(u64::MAX),
        fetch_timeout_ms: u64::try_from(timing.fetch_timeout.as_millis()).unwrap_or(u64::MAX),
        max_message_bytes: params.max_message_bytes(),
        stall_ms: interval_ms.saturating_mul(10).max(5_000),
    };
    let genesis = (params.genesis_state.clone(), params.genesis_block.clone());
    let chain = Chain::new(chain_cfg, store, genesis, millis(ctx.current())).map_err(ConsensusError::Store)?;
    let Channels {
        votes,
        certificates,
        resolver,
        relay,
        sync,
    } = channels;
    let (app, mailbox) = Actor::start(
        ctx.child("app"),
        chain,
        params.verifier(),
        events,
        params.max_message_bytes(),
        relay,
        sync,
    );

    let cfg = Config {
        scheme,
        elector: RoundRobin::<Sha256>::default(),
        blocker,
        automaton: mailbox.clone(),
        relay: mailbox.clone(),
        reporter: mailbox,
        track_historical_votes: false,
        strategy: Sequential,
        partition: setup.journal_partition.clone(),
        mailbox_size: NZUsize!(1024),
        epoch: Epoch::new(0),
        floor: Floor::Genesis(Digest(params.genesis_hash)),
        replay_buffer: NZUsize!(1 << 20),
        write_buffer: NZUsize!(1 << 20),
        page_cache: CacheRef::new(NZU16!(4096), NZUsize!(64)),
        leader_timeout: timing.leader_timeout,
        certification_timeout: timing.certification_timeout,
        timeout_retry: timing.timeout_retry,
        view_retention: ViewDelta::new(timing.view_retention),
        skip: SkipPolicy::Enabled {
            timeout: timing.skip_timeout,
            budget: SkipBudget::Participants,
        },
        fetch_timeout: NonZeroDuration::new(timing.fetch_timeout)
            .ok_or_else(|| ConsensusError::Config("fetch_timeout must be positive".into()))?,
        fetch_retry_delay: timing.fetch_retry_delay,
        forward: ForwardPolicy::SilentVoters,
    };
    let engine = Engine::new(ctx.child("engine"), cfg).start(votes, certificates, resolver);
    Ok(Validator { engine, app })
}
