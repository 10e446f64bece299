//! Consensus in production: its own OS thread running commonware's tokio
//! runtime (which builds its own runtime and cannot nest inside the
//! daemon's), the authenticated TCP network among the genesis validators
//! (`p2p::authenticated::lookup`, every validator's address known), the
//! vote journal under `storage_dir`, and a handle for the daemon.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use commonware_cryptography::ed25519::PublicKey;
use commonware_cryptography::{ChaCha20Poly1305, Signer};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager};
use commonware_runtime::{Quota, Runner as _, Spawner, Supervisor};
use commonware_stream::{cups, sake};
use commonware_utils::ordered::Map;
use commonware_utils::{NZUsize, NZU32};
use tokio::sync::{broadcast, oneshot};
use tracing::{error, info};

use super::params::{
    key_bytes, private_key, public_key, ChainParams, Timing, CHANNEL_CERTIFICATES, CHANNEL_RELAY, CHANNEL_RESOLVER,
    CHANNEL_SYNC, CHANNEL_VOTES,
};
use super::validator::{start_validator, Channels, ValidatorSetup, JOURNAL_PARTITION};
use super::{ChainStore, ConsensusError, ConsensusEvent};
use crate::ledger::Genesis;

/// How long `stop` lets tasks finish before giving up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`start`] needs.
#[derive(Clone)]
pub struct ConsensusConfig {
    /// This validator's ed25519 seed (`Identity::identity_secret`); its
    /// public key must be a genesis validator.
    pub identity_seed: [u8; 32],
    pub genesis: Genesis,
    /// Where to accept consensus connections from the other validators.
    pub listen: SocketAddr,
    /// Every genesis validator's key and consensus address (this node's
    /// own entry, if present, is ignored).
    pub peers: Vec<([u8; 32], SocketAddr)>,
    /// The vote journal. Keep it with the node's state: losing it allows a
    /// restarted validator to sign conflicting votes.
    pub storage_dir: PathBuf,
    /// The engine's timers; `None` derives them from the genesis interval.
    pub timing: Option<Timing>,
    /// Testnets on one host or a LAN: accept private addresses and redial
    /// quickly. Off for public networks.
    pub local_network: bool,
    /// Threads of the consensus runtime.
    pub worker_threads: usize,
}

impl std::fmt::Debug for ConsensusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusConfig")
            .field("identity_seed", &"<secret>")
            .field("chain_id", &self.genesis.chain_id)
            .field("listen", &self.listen)
            .field("peers", &self.peers.len())
            .field("storage_dir", &self.storage_dir)
            .field("timing", &self.timing)
            .field("local_network", &self.local_network)
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

/// The running consensus. Dropping it stops consensus without waiting.
pub struct ConsensusHandle {
    events: broadcast::Sender<ConsensusEvent>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<Result<(), ConsensusError>>>,
    outcome: Option<Result<(), ConsensusError>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsensusHandle {
    /// Finalizations, evidence and halts from now on. A slow subscriber
    /// misses events (`RecvError::Lagged`), never blocks consensus; the
    /// store is the record.
    pub fn events(&self) -> broadcast::Receiver<ConsensusEvent> {
        self.events.subscribe()
    }

    /// Resolves when consensus ends by itself (a panic or a fatal runtime
    /// error); never while it runs normally. Cancel-safe.
    pub async fn closed(&mut self) -> Result<(), ConsensusError> {
        if let Some(done) = self.done.as_mut() {
            let r = done
                .await
                .unwrap_or(Err(ConsensusError::Runtime("consensus thread vanished".into())));
            self.done = None;
            self.outcome = Some(r);
        }
        match &self.outcome {
            Some(Ok(())) | None => Ok(()),
            Some(Err(e)) => Err(ConsensusError::Runtime(e.to_string())),
        }
    }

    /// Stops the engine and the network, waits for the thread to end.
    pub async fn stop(mut self) -> Result<(), ConsensusError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let outcome = match (self.outcome.take(), self.done.take()) {
            (Some(r), _) => r,
            (None, Some(done)) => done
                .await
                .unwrap_or(Err(ConsensusError::Runtime("consensus thread vanished".into()))),
            (None, None) => Ok(()),
        };
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                return Err(ConsensusError::Runtime("consensus thread did not end cleanly".into()));
            }
        }
        outcome
    }
}

impl Drop for ConsensusHandle {
    fn drop(&mut self) {
        // Dropping the stop sender makes the root task stop the runtime.
        self.stop.take();
    }
}

/// Starts consensus and returns once the network listens and the engine
/// runs (so the daemon may report READY).
pub async fn start(config: ConsensusConfig, store: Arc<dyn ChainStore>) -> Result<ConsensusHandle, ConsensusError> {
    let params = ChainParams::new(&config.genesis, config.timing)?;
    let key = private_key(&config.identity_seed)?;
    let me = key.public_key();
    // Fails early with our error instead of commonware's panic.
    let setup = ValidatorSetup {
        params: params.clone(),
        key,
        journal_partition: JOURNAL_PARTITION.to_string(),
    };
    params.signer(&setup.key)?;
    let mut peers: Vec<(PublicKey, Address)> = vec![(me.clone(), Address::from(config.listen))];
    for (k, addr) in &config.peers {
        let pk = public_key(k)?;
        if pk == me {
            continue;
        }
        if params.participants.position(&pk).is_none() {
            return Err(ConsensusError::Config(format!(
                "peer {} is not a genesis validator",
                hex::encode(k)
            )));
        }
        peers.push((pk, Address::from(*addr)));
    }
    for v in params.participants.iter() {
        if !peers.iter().any(|(k, _)| k == v) {
            return Err(ConsensusError::Config(format!(
                "no consensus address for genesis validator {}",
                hex::encode(key_bytes(v))
            )));
        }
    }
    TcpListener::bind(config.listen).map_err(|source| ConsensusError::Listen {
        addr: config.listen,
        source,
    })?;
    std::fs::create_dir_all(&config.storage_dir)
        .map_err(|e| ConsensusError::Store(format!("{}: {e}", config.storage_dir.display())))?;

    let (events, _) = broadcast::channel(1024);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), ConsensusError>>();
    let (done_tx, done_rx) = oneshot::channel();
    let thread_events = events.clone();
    let thread = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || {
            let result = run(config, setup, peers, store, thread_events, stop_rx, ready_tx);
            if let Err(e) = &result {
                error!(error = %e, "consensus ended");
            }
            let _ = done_tx.send(result);
        })
        .map_err(|e| ConsensusError::Runtime(format!("cannot start the consensus thread: {e}")))?;
    let mut handle = ConsensusHandle {
        events,
        stop: Some(stop_tx),
        done: Some(done_rx),
        outcome: None,
        thread: Some(thread),
    };
    match ready_rx.await {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.stop().await;
            Err(e)
        }
        // The thread ended before it was ready: its outcome says why.
        Err(_) => {
            handle.closed().await?;
            Err(ConsensusError::Runtime("consensus stopped during startup".into()))
        }
    }
}

/// The consensus thread: builds the runtime, runs until told to stop.
fn run(
    config: ConsensusConfig,
    setup: ValidatorSetup,
    peers: Vec<(PublicKey, Address)>,
    store: Arc<dyn ChainStore>,
    events: broadcast::Sender<ConsensusEvent>,
    stop_rx: oneshot::Receiver<()>,
    ready_tx: oneshot::Sender<Result<(), ConsensusError>>,
) -> Result<(), ConsensusError> {
    let runtime_cfg = commonware_runtime::tokio::Config::new()
        .with_worker_threads(config.worker_threads.max(1))
        .with_catch_panics(false)
        .with_storage_directory(config.storage_dir.clone());
    let runner = commonware_runtime::tokio::Runner::new(runtime_cfg);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        runner.start(move |ctx| async move {
            let namespace = setup.params.namespace.clone();
            let max_message = u32::try_from(setup.params.max_message_bytes()).unwrap_or(u32::MAX);
            let handshake = cups::Cups::<_, ChaCha20Poly1305>::new(
                sake::Sake {
                    signer: setup.key.clone(),
                    synchrony_bound: Duration::from_secs(5),
                    max_handshake_age: Duration::from_secs(10),
                    version: sake::Version::V1,
                },
                cups::Version::V1,
            );
            let max_peers = NZUsize!(peers.len().max(1) + 1);
            let p2p_cfg = if config.local_network {
                lookup::Config::local(
                    handshake,
                    &namespace,
                    config.listen,
                    max_peers,
                    max_message,
                    NZUsize!(1024),
                )
            } else {
                lookup::Config::recommended(
                    handshake,
                    &namespace,
                    config.listen,
                    max_peers,
                    max_message,
                    NZUsize!(1024),
                )
            };
            let (mut network, mut oracle) = lookup::Network::new(ctx.child("p2p"), p2p_cfg);
            let _ = oracle.track(0, Map::from_iter_dedup(peers));
            let channels = Channels {
                votes: network.register(CHANNEL_VOTES, Quota::per_second(NZU32!(1024))),
                certificates: network.register(CHANNEL_CERTIFICATES, Quota::per_second(NZU32!(1024))),
                resolver: network.register(CHANNEL_RESOLVER, Quota::per_second(NZU32!(256))),
                relay: network.register(CHANNEL_RELAY, Quota::per_second(NZU32!(64))),
                sync: network.register(CHANNEL_SYNC, Quota::per_second(NZU32!(256))),
            };
            network.start();
            let started = start_validator(ctx.child("validator"), setup, store, events, oracle, channels);
            match started {
                Ok(_validator) => {
                    info!(listen = %config.listen, "consensus started");
                    let _ = ready_tx.send(Ok(()));
                }
                Err(e) => {
                    // `start` reports it and stops us.
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            }
            // A stop request, or the handle dropped.
            let _ = stop_rx.await;
            info!("consensus stopping");
            ctx.stop(0, Some(STOP_TIMEOUT))
                .await
                .map_err(|e| ConsensusError::Runtime(format!("consensus tasks did not stop in time: {e}")))
        })
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(ConsensusError::Panicked(msg))
        }
    }
}
