//! The simulator: four validators of our consensus code over commonware's
//! deterministic runtime and simulated network, with their stores and
//! events, started, killed and linked at will.

use super::*;

pub(crate) const CHAIN_ID: &str = "sim";

/// Validator seeds; the validator index used below is the position of the
/// public key in the sorted set (the engine's order).
pub(crate) fn seeds() -> Vec<[u8; 32]> {
    (1..=4u8).map(|i| [i; 32]).collect()
}

pub(crate) fn pubkey(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

pub(crate) fn genesis(interval_ms: u64) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        block_interval_ms: interval_ms,
        validators: seeds()
            .iter()
            .map(|s| GenesisValidator {
                key: pubkey(s),
                stake: 1,
            })
            .collect(),
        balances: Vec::new(),
    }
}

pub(crate) fn link() -> Link {
    Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        success_rate: probability!(1.0),
    }
}

/// One validator slot: its store (which outlives crashes) and, while it
/// runs, its tasks.
pub(crate) struct Node {
    pub(crate) seed: [u8; 32],
    pub(crate) pk: PublicKey,
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) events: broadcast::Sender<ConsensusEvent>,
    pub(crate) running: Option<Validator>,
}

pub(crate) struct Sim {
    pub(crate) ctx: Ctx,
    pub(crate) oracle: Oracle<PublicKey, Ctx>,
    pub(crate) params: ChainParams,
    pub(crate) nodes: Vec<Node>,
}

impl Sim {
    /// Four validators, all linked, none started.
    pub(crate) async fn new(ctx: Ctx, interval_ms: u64) -> Sim {
        let genesis = genesis(interval_ms);
        let params = ChainParams::new(&genesis, None).expect("params");
        let pks: Vec<PublicKey> = params.participants.iter().cloned().collect();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size: u32::try_from(params.max_message_bytes()).expect("fits"),
                max_peers_per_set: NZUsize!(8),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            pks.clone(),
        )
        .await;
        network.start();
        let mut nodes: Vec<Node> = seeds()
            .into_iter()
            .map(|seed| Node {
                seed,
                pk: public_key(&pubkey(&seed)).expect("key"),
                store: Arc::new(MemoryStore::new(&genesis).expect("genesis")),
                events: broadcast::channel(1024).0,
                running: None,
            })
            .collect();
        nodes.sort_by(|a, b| a.pk.cmp(&b.pk));
        let sim = Sim {
            ctx,
            oracle,
            params,
            nodes,
        };
        sim.links(true, |_, _| true).await;
        sim
    }

    /// Adds or removes the links between nodes i and j for which `pick`
    /// says so (both directions).
    pub(crate) async fn links(&self, up: bool, pick: impl Fn(usize, usize) -> bool) {
        for i in 0..self.nodes.len() {
            for j in 0..self.nodes.len() {
                if i == j || !pick(i, j) {
                    continue;
                }
                let (a, b) = (self.nodes[i].pk.clone(), self.nodes[j].pk.clone());
                if up {
                    self.oracle.add_link(a, b, link()).await.expect("link");
                } else {
                    // Absent already is fine.
                    let _ = self.oracle.remove_link(a, b).await;
                }
            }
        }
    }

    pub(crate) async fn channels(
        &self,
        i: usize,
    ) -> Channels<simulated::Sender<PublicKey, Ctx>, simulated::Receiver<PublicKey>> {
        let control = self.oracle.control(self.nodes[i].pk.clone());
        let q = Quota::per_second(NZU32!(10_000));
        Channels {
            votes: control.register(CHANNEL_VOTES, q).await.expect("register"),
            certificates: control.register(CHANNEL_CERTIFICATES, q).await.expect("register"),
            resolver: control.register(CHANNEL_RESOLVER, q).await.expect("register"),
            relay: control.register(CHANNEL_RELAY, q).await.expect("register"),
            sync: control.register(CHANNEL_SYNC, q).await.expect("register"),
        }
    }

    /// Starts (or restarts) validator i on its store and the given journal.
    pub(crate) async fn start(&mut self, i: usize, journal: &str) {
        let channels = self.channels(i).await;
        let node = &self.nodes[i];
        let setup = ValidatorSetup {
            params: self.params.clone(),
            key: private_key(&node.seed).expect("key"),
            journal_partition: journal.to_string(),
        };
        let ctx = self.ctx.child("validator").with_attribute("index", i);
        let blocker = self.oracle.control(node.pk.clone());
        let store: Arc<dyn ChainStore> = node.store.clone();
        let v = start_validator(ctx, setup, store, node.events.clone(), blocker, channels).expect("start");
        self.nodes[i].running = Some(v);
    }

    pub(crate) async fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i, &journal(i)).await;
        }
    }

    /// Kills validator i like SIGKILL: its tasks stop mid-step; its store
    /// and journal stay.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(v) = self.nodes[i].running.take() {
            v.abort();
        }
    }

    pub(crate) fn heights(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.store.height()).collect()
    }

    /// Waits (in simulated time) until every node in `which` reached
    /// `height`; panics after `limit`.
    pub(crate) async fn wait_for(&self, which: &[usize], height: u64, limit: Duration) -> Duration {
        let start = self.ctx.current();
        loop {
            let hs = self.heights();
            if which.iter().all(|&i| hs[i] >= height) {
                return self.ctx.current().duration_since(start).expect("time moves forward");
            }
            let waited = self.ctx.current().duration_since(start).expect("time moves forward");
            assert!(
                waited < limit,
                "nodes {which:?} did not reach height {height} in {limit:?}: heights {hs:?}"
            );
            self.ctx.sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every pair of nodes in `which` holds the same block at every height
    /// both have; returns the common height.
    pub(crate) fn assert_identical(&self, which: &[usize]) -> usize {
        let chains: Vec<Vec<[u8; 32]>> = which.iter().map(|&i| self.nodes[i].store.hashes()).collect();
        let common = chains.iter().map(Vec::len).min().expect("nodes");
        for (k, c) in chains.iter().enumerate() {
            assert_eq!(
                c[..common],
                chains[0][..common],
                "node {} forked from node {}",
                which[k],
                which[0]
            );
        }
        common - 1
    }

    /// How many validators blocked validator i on the network.
    pub(crate) async fn blocked_by(&self, i: usize) -> usize {
        let pk = &self.nodes[i].pk;
        self.oracle
            .blocked()
            .await
            .expect("network")
            .iter()
            .filter(|(_, to)| to == pk)
            .count()
    }

    pub(crate) fn key_of(&self, i: usize) -> [u8; 32] {
        let mut k = [0; 32];
        k.copy_from_slice(self.nodes[i].pk.as_ref());
        k
    }
}

/// Validator i's vote journal. All validators share the simulator's
/// storage, so each needs its own partition (on a real node it is
/// `JOURNAL_PARTITION` in its own directory).
pub(crate) fn journal(i: usize) -> String {
    format!("{JOURNAL_PARTITION}-{i}")
}

pub(crate) fn run<F, Fut>(seed: u64, f: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // RUST_LOG=dchatd=debug shows what consensus does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cfg = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(600)));
    deterministic::Runner::new(cfg).start(f);
}

/// A registration transaction for a fresh identity `n`.
pub(crate) fn register(n: u8) -> SignedTx {
    let id = Identity::from_secrets(&[n; 32], &[n.wrapping_add(100); 32]);
    let key = id.signing_key().verifying_key().to_bytes();
    SignedTx::create(
        &id,
        CHAIN_ID,
        0,
        TxKind::RegisterAccount {
            name: format!("user{n}"),
            identity_key: key,
            messaging_key: [n; 32],
        },
    )
}
