//! Fault scenarios of issue 3 for the consensus engine: four validators in
//! commonware's deterministic runtime over its simulated network, running
//! our real consensus code (`consensus::validator`) and the real ledger rules
//! (`consensus::memory::MemoryStore`). Simulated time, so a 30 s partition
//! takes a second or two of wall time; same seed, same run.
//!
//! Plus one smoke test over real TCP on 127.0.0.1 through `consensus::start`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use commonware_codec::Decode;
use commonware_consensus::simplex::mocks::conflicter::{self, Conflicter};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::ConflictingNotarize;
use commonware_cryptography::ed25519::PublicKey;
use commonware_cryptography::sha256::Digest as Sha256Digest;
use commonware_cryptography::Sha256;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_parallel::Sequential;
use commonware_runtime::{deterministic, Clock, Quota, Runner, Supervisor};
use commonware_utils::{probability, NZUsize, NZU32};
use dchat_keyfile::Identity;
use dchatd::consensus::memory::MemoryStore;
use dchatd::consensus::validator::{start_validator, Channels, Validator, ValidatorSetup, JOURNAL_PARTITION};
use dchatd::consensus::{
    private_key, public_key, ChainParams, ChainStore, ConsensusEvent, CHANNEL_CERTIFICATES, CHANNEL_RELAY,
    CHANNEL_RESOLVER, CHANNEL_SYNC, CHANNEL_VOTES,
};
use dchatd::ledger::{Genesis, GenesisValidator, SignedTx, TxKind};
use tokio::sync::broadcast;

type Ctx = deterministic::Context;

#[path = "consensus_sim/harness.rs"]
mod harness;
use harness::*;

#[test]
fn four_validators_finalize_identical_blocks_with_the_submitted_transactions() {
    run(1, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        sim.start_all().await;
        // Transactions reach every validator's mempool (what gossip will do).
        let txs: Vec<SignedTx> = (10..30).map(register).collect();
        for tx in &txs[..10] {
            for n in &sim.nodes {
                n.store.submit(tx.clone());
            }
        }
        sim.wait_for(&[0, 1, 2, 3], 5, Duration::from_secs(30)).await;
        for tx in &txs[10..] {
            for n in &sim.nodes {
                n.store.submit(tx.clone());
            }
        }
        sim.wait_for(&[0, 1, 2, 3], 20, Duration::from_secs(30)).await;
        let common = sim.assert_identical(&[0, 1, 2, 3]);
        assert!(common >= 20);

        // Every transaction is in exactly one finalized block, and every
        // node's ledger registered every account.
        let blocks = sim.nodes[0].store.blocks();
        let included: Vec<[u8; 32]> = blocks.iter().flat_map(|b| b.txs.iter().map(SignedTx::id)).collect();
        let unique: BTreeSet<[u8; 32]> = included.iter().copied().collect();
        assert_eq!(included.len(), unique.len(), "a transaction was included twice");
        for tx in &txs {
            assert!(unique.contains(&tx.id()), "transaction never finalized");
        }
        for n in &sim.nodes {
            let state = n.store.state();
            for i in 10..30u8 {
                assert!(state.account(&format!("user{i}")).is_some(), "user{i} missing");
            }
            assert_eq!(n.store.mempool_len(), 0);
        }
        // Blocks are spaced by at least the interval.
        for w in blocks.windows(2) {
            assert!(w[1].timestamp_ms >= w[0].timestamp_ms + 500);
        }
    });
}

#[test]
fn a_single_validator_finalizes_alone() {
    // What `dchatd --dev` runs: a genesis with one validator.
    run(7, |ctx| async move {
        let mut g = genesis(200);
        g.validators.truncate(1);
        let params = ChainParams::new(&g, None).expect("params");
        let seed = seeds()[0];
        let pk = public_key(&pubkey(&seed)).expect("key");
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size: u32::try_from(params.max_message_bytes()).expect("fits"),
                max_peers_per_set: NZUsize!(2),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            vec![pk.clone()],
        )
        .await;
        network.start();
        let control = oracle.control(pk);
        let q = Quota::per_second(NZU32!(10_000));
        let channels = Channels {
            votes: control.register(CHANNEL_VOTES, q).await.expect("register"),
            certificates: control.register(CHANNEL_CERTIFICATES, q).await.expect("register"),
            resolver: control.register(CHANNEL_RESOLVER, q).await.expect("register"),
            relay: control.register(CHANNEL_RELAY, q).await.expect("register"),
            sync: control.register(CHANNEL_SYNC, q).await.expect("register"),
        };
        let store = Arc::new(MemoryStore::new(&g).expect("genesis"));
        store.submit(register(1));
        let setup = ValidatorSetup {
            params,
            key: private_key(&seed).expect("key"),
            journal_partition: JOURNAL_PARTITION.into(),
        };
        let events = broadcast::channel(16).0;
        let _v =
            start_validator(ctx.child("validator"), setup, store.clone(), events, control, channels).expect("start");
        let start = ctx.current();
        while store.height() < 10 {
            assert!(
                ctx.current().duration_since(start).expect("time") < Duration::from_secs(10),
                "stalled"
            );
            ctx.sleep(Duration::from_millis(10)).await;
        }
        assert!(store.state().account("user1").is_some());
    });
}

#[test]
fn a_killed_validator_misses_nothing_after_restarting_from_its_storage() {
    run(2, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        sim.start_all().await;
        sim.wait_for(&[0, 1, 2, 3], 5, Duration::from_secs(30)).await;

        sim.kill(3);
        sim.links(false, |i, j| i == 3 || j == 3).await;
        let down_at = sim.heights()[3];
        sim.wait_for(&[0, 1, 2], down_at + 20, Duration::from_secs(60)).await;
        assert_eq!(sim.heights()[3], down_at, "a dead validator finalized blocks");

        sim.links(true, |i, j| i == 3 || j == 3).await;
        sim.start(3, &journal(3)).await;
        let target = sim.heights()[..3].iter().copied().max().expect("nodes") + 3;
        let took = sim.wait_for(&[0, 1, 2, 3], target, Duration::from_secs(60)).await;
        println!("restarted validator caught up from {down_at} to {target} in {took:?} (simulated)");
        assert!(sim.assert_identical(&[0, 1, 2, 3]) as u64 >= target);
        // The blocks it missed came through our sync: no certificate of
        // their own on the restarted node.
        let proofs = sim.nodes[3].store.heights_with_proof();
        assert!((down_at + 1..down_at + 15).any(|h| !proofs.contains(&h)));
    });
}

#[test]
fn all_validators_crashing_at_once_resume_from_their_storage() {
    run(6, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        sim.start_all().await;
        sim.wait_for(&[0, 1, 2, 3], 5, Duration::from_secs(30)).await;
        // Crash everyone while the next block is voted for but not final:
        // its proposal is out (its timestamp has come) and votes are in
        // flight.
        let offset: u64 = std::env::var("CRASH_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25);
        loop {
            let h = sim.heights().into_iter().min().expect("nodes");
            let now = sim_ms(&sim.ctx);
            let out = sim.nodes.iter().any(|n| {
                n.store
                    .unfinalized_above(h)
                    .iter()
                    .any(|b| b.timestamp_ms + offset <= now)
            });
            if out {
                break;
            }
            sim.ctx.sleep(Duration::from_millis(1)).await;
        }
        for i in 0..4 {
            sim.kill(i);
        }
        let before = sim.heights().into_iter().max().expect("nodes");
        sim.ctx.sleep(Duration::from_secs(2)).await;
        for i in 0..4 {
            sim.start(i, &journal(i)).await;
        }
        sim.wait_for(&[0, 1, 2, 3], before + 5, Duration::from_secs(60)).await;
        sim.assert_identical(&[0, 1, 2, 3]);
    });
}

#[test]
fn a_two_two_partition_finalizes_nothing_and_resumes_within_three_intervals() {
    run(3, |ctx| async move {
        let interval = Duration::from_millis(1000);
        let mut sim = Sim::new(ctx, 1000).await;
        sim.start_all().await;
        sim.wait_for(&[0, 1, 2, 3], 5, Duration::from_secs(30)).await;

        let across = |i: usize, j: usize| (i < 2) != (j < 2);
        sim.links(false, across).await;
        // What was already in flight may still finalize.
        sim.ctx.sleep(Duration::from_secs(3)).await;
        let before = sim.heights();
        sim.ctx.sleep(Duration::from_secs(30)).await;
        assert_eq!(sim.heights(), before, "a block was finalized without a quorum");
        sim.assert_identical(&[0, 1, 2, 3]);

        sim.links(true, across).await;
        let next = before.iter().copied().max().expect("nodes") + 1;
        let start = sim.ctx.current();
        loop {
            if sim.heights().iter().any(|&h| h >= next) {
                break;
            }
            sim.ctx.sleep(Duration::from_millis(10)).await;
        }
        let resumed = sim.ctx.current().duration_since(start).expect("time");
        println!("first finalization {resumed:?} after healing (interval {interval:?})");
        assert!(resumed <= 3 * interval, "resumed only after {resumed:?}");
        sim.wait_for(&[0, 1, 2, 3], next + 3, Duration::from_secs(30)).await;
        sim.assert_identical(&[0, 1, 2, 3]);
    });
}

#[test]
fn an_equivocating_validator_is_recorded_and_honest_validators_agree() {
    run(4, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        let byzantine = 3;
        let mut events: Vec<_> = sim.nodes[..3].iter().map(|n| n.events.subscribe()).collect();
        for i in 0..3 {
            sim.start(i, &journal(i)).await;
        }
        // Validator 3 signs two notarize (and finalize) votes for every
        // proposal it sees: the real one and a random one.
        let channels = sim.channels(byzantine).await;
        let scheme = sim
            .params
            .signer(&private_key(&sim.nodes[byzantine].seed).expect("key"))
            .expect("member");
        let c: Conflicter<_, _, Sha256> = Conflicter::new(sim.ctx.child("byzantine"), conflicter::Config { scheme });
        c.start(channels.votes);

        sim.wait_for(&[0, 1, 2], 15, Duration::from_secs(60)).await;
        sim.assert_identical(&[0, 1, 2]);

        // The engine keeps both votes as evidence only where it had not yet
        // tied the signer to one proposal; the leader of that view sees the
        // first, random vote conflict with its own proposal and just blocks
        // the peer. So some, not necessarily all, honest nodes hold evidence.
        let culprit = sim.key_of(byzantine);
        let verifier = sim.params.verifier();
        let mut recorded = 0;
        for (i, events) in events.iter_mut().enumerate() {
            let evidence = sim.nodes[i].store.evidence();
            recorded += evidence.len();
            for e in &evidence {
                assert_eq!(e.signer, culprit, "node {i} blamed an honest validator");
                assert_eq!(e.kind, "conflicting_notarize");
                // Anyone holding the validator set can check it.
                let proof = ConflictingNotarize::<Scheme, Sha256Digest>::decode_cfg(e.bytes.clone(), &())
                    .expect("evidence decodes");
                assert!(
                    proof.verify(&mut sim.ctx, &verifier, &Sequential),
                    "evidence does not verify"
                );
                assert!(
                    std::iter::from_fn(|| events.try_recv().ok())
                        .any(|ev| matches!(ev, ConsensusEvent::Evidence(ref x) if x == e)),
                    "node {i} emitted no event for its evidence"
                );
            }
        }
        assert!(recorded > 0, "no honest node recorded the equivocation");
        assert!(sim.blocked_by(byzantine).await >= 2, "the equivocator was not cut off");
    });
}

/// What the other validators caught a validator doing.
struct Caught {
    /// Crash-restarts done.
    restarts: usize,
    /// Evidence recorded against it.
    evidence: usize,
    /// Validators that cut it off (the engine blocks a peer for any
    /// conflicting or invalid vote, also where it cannot keep both votes
    /// as evidence).
    blocked_by: usize,
}

/// Crashes validator `who` just after it sent the vote on its own
/// proposal, and restarts it at once on the journal `journal(k)` (restart
/// k), up to three times.
async fn restart_leader_mid_view(sim: &mut Sim, who: usize, journal: impl Fn(usize) -> String) -> Caught {
    sim.start_all().await;
    sim.wait_for(&[0, 1, 2, 3], 3, Duration::from_secs(30)).await;
    let others: Vec<usize> = (0..4).filter(|&i| i != who).collect();
    let mut restarts = 0;
    for k in 0..3 {
        // Wait until `who` proposes: its block is saved and not final.
        let store = sim.nodes[who].store.clone();
        let me = sim.key_of(who);
        let start = sim.ctx.current();
        let ts = loop {
            if let Some(ts) = pending_own_block(&store, me) {
                break Some(ts);
            }
            if sim.ctx.current().duration_since(start).expect("time") > Duration::from_secs(30) {
                break None;
            }
            sim.ctx.sleep(Duration::from_millis(5)).await;
        };
        let Some(ts) = ts else { break };
        // Its vote goes out when the proposal's timestamp arrives; crash
        // just after, before the view can complete, and come back at once.
        let now = sim_ms(&sim.ctx);
        if ts > now {
            sim.ctx.sleep(Duration::from_millis(ts - now + 2)).await;
        }
        sim.kill(who);
        sim.start(who, &journal(k)).await;
        restarts += 1;
        let h = sim.heights()[others[0]];
        sim.wait_for(&others, h + 3, Duration::from_secs(60)).await;
        if sim.blocked_by(who).await > 0 {
            break;
        }
    }
    let culprit = sim.key_of(who);
    let evidence = others
        .iter()
        .map(|&i| {
            sim.nodes[i]
                .store
                .evidence()
                .iter()
                .filter(|e| e.signer == culprit)
                .count()
        })
        .sum();
    Caught {
        restarts,
        evidence,
        blocked_by: sim.blocked_by(who).await,
    }
}

fn sim_ms(ctx: &Ctx) -> u64 {
    u64::try_from(
        ctx.current()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_millis(),
    )
    .expect("fits")
}

/// The timestamp of a block `me` proposed above the finalized height, if
/// any (the store saves proposals before they are sent).
fn pending_own_block(store: &MemoryStore, me: [u8; 32]) -> Option<u64> {
    let h = store.height();
    store
        .unfinalized_above(h)
        .into_iter()
        .find(|b| b.proposer == me)
        .map(|b| b.timestamp_ms)
}

#[test]
fn a_validator_restarted_mid_view_never_signs_a_conflicting_vote() {
    run(5, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        let caught = restart_leader_mid_view(&mut sim, 1, |_| journal(1)).await;
        assert_eq!(caught.restarts, 3);
        assert_eq!(caught.evidence, 0, "the restarted validator equivocated");
        assert_eq!(caught.blocked_by, 0, "the restarted validator was cut off");
        let h = sim.heights().into_iter().max().expect("nodes");
        sim.wait_for(&[0, 1, 2, 3], h + 2, Duration::from_secs(30)).await;
        sim.assert_identical(&[0, 1, 2, 3]);
    });
}

/// The control for the test above: the same crash with the journal lost
/// makes the validator sign a second, different vote for its view, and the
/// others catch it.
#[test]
fn a_validator_restarted_without_its_journal_is_caught_equivocating() {
    run(5, |ctx| async move {
        let mut sim = Sim::new(ctx, 500).await;
        let caught = restart_leader_mid_view(&mut sim, 1, |k| format!("lost-journal-{k}")).await;
        assert!(caught.blocked_by > 0, "the conflicting vote went unnoticed");
        sim.assert_identical(&[0, 2, 3]);
    });
}

/// A port nobody listens on right now.
fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_over_tcp_finalize_and_stop_cleanly() {
    let genesis = genesis(300);
    let addrs: Vec<std::net::SocketAddr> = (0..4).map(|_| free_port()).collect();
    let peers: Vec<([u8; 32], std::net::SocketAddr)> =
        seeds().iter().zip(&addrs).map(|(s, a)| (pubkey(s), *a)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let mut nodes = Vec::new();
    for (i, seed) in seeds().into_iter().enumerate() {
        let store = Arc::new(MemoryStore::new(&genesis).expect("genesis"));
        let config = dchatd::consensus::ConsensusConfig {
            identity_seed: seed,
            genesis: genesis.clone(),
            listen: addrs[i],
            peers: peers.clone(),
            storage_dir: dir.path().join(format!("v{i}")),
            timing: None,
            local_network: true,
            worker_threads: 1,
        };
        let handle = dchatd::consensus::start(config, store.clone()).await.expect("start");
        let events = handle.events();
        nodes.push((handle, events, store));
    }
    let target = 3;
    for (i, (_, events, _)) in nodes.iter_mut().enumerate() {
        let reached = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match events.recv().await {
                    Ok(ConsensusEvent::Finalized { height, .. }) if height >= target => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events of node {i} ended: {e}"),
                }
            }
        })
        .await;
        assert!(reached.is_ok(), "node {i} did not finalize height {target} within 30 s");
    }
    println!(
        "4 validators over TCP finalized height {target} after {:?}",
        started.elapsed()
    );
    let stopping = std::time::Instant::now();
    let mut stores = Vec::new();
    for (handle, _, store) in nodes {
        handle.stop().await.expect("clean stop");
        stores.push(store);
    }
    println!("stopped in {:?}", stopping.elapsed());
    let chains: Vec<Vec<[u8; 32]>> = stores.iter().map(|s| s.hashes()).collect();
    let common = chains.iter().map(Vec::len).min().expect("nodes");
    assert!(common > target as usize);
    for c in &chains {
        assert_eq!(c[..common], chains[0][..common]);
    }
}
