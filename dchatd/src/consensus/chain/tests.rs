//! The application logic without engine, network or clock: inputs in,
//! effects out, over the in-memory store and the real ledger.

use std::sync::Arc;

use commonware_cryptography::sha256::Digest;
use commonware_utils::channel::oneshot;

use super::*;
use crate::consensus::memory::MemoryStore;
use crate::consensus::params::MAX_MESSAGE_BYTES;
use crate::ledger::{Genesis, GenesisValidator};

const INTERVAL: u64 = 100;

fn key(i: u8) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&[i; 32])
        .verifying_key()
        .to_bytes()
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: "unit".into(),
        genesis_time_ms: 0,
        block_interval_ms: INTERVAL,
        validators: (1..=4).map(|i| GenesisValidator { key: key(i), stake: 1 }).collect(),
        balances: Vec::new(),
    }
}

struct Node {
    chain: Chain,
    store: Arc<MemoryStore>,
    me: [u8; 32],
}

fn node(i: u8) -> Node {
    let g = genesis();
    let store = Arc::new(MemoryStore::new(&g).expect("genesis"));
    let me = key(i);
    let cfg = ChainConfig {
        me,
        peers: (1..=4).filter(|&j| j != i).map(key).collect(),
        interval_ms: INTERVAL,
        max_drift_ms: 500,
        fetch_timeout_ms: 1000,
        max_message_bytes: MAX_MESSAGE_BYTES,
        stall_ms: 5000,
    };
    let chain = Chain::new(cfg, store.clone(), LedgerState::from_genesis(&g).expect("genesis"), 0).expect("chain");
    Node { chain, store, me }
}

fn genesis_block() -> (LedgerState, Block) {
    LedgerState::from_genesis(&genesis()).expect("genesis")
}

/// A valid child of `parent` (the state after it) by `proposer`.
fn child(parent: &LedgerState, ts: u64, proposer: [u8; 32]) -> (LedgerState, Block) {
    let block = parent.propose_block(Vec::new(), ts, proposer).block;
    let mut next = parent.clone();
    next.apply_block(&block).expect("valid");
    (next, block)
}

fn verdict(fx: &[Effect]) -> Option<bool> {
    fx.iter().find_map(|e| match e {
        Effect::AnswerVerify { valid, .. } => Some(*valid),
        _ => None,
    })
}

fn verify(
    n: &mut Node,
    parent: [u8; 32],
    leader: [u8; 32],
    block: &Block,
    now: u64,
) -> (Vec<Effect>, oneshot::Receiver<bool>) {
    let (tx, rx) = oneshot::channel();
    (n.chain.verify(parent, leader, block.hash(), tx, now), rx)
}

#[test]
fn a_proposal_is_saved_answered_at_its_timestamp_and_verifies_elsewhere() {
    let (_, g) = genesis_block();
    let mut a = node(1);
    let (tx, _rx) = oneshot::channel::<Digest>();
    // Asked before one interval has passed: nothing is built yet, only a
    // wake-up is asked for at the earliest time the block may have.
    let fx = a.chain.propose(g.hash(), tx, 40);
    assert!(fx.iter().all(|e| !matches!(e, Effect::AnswerPropose { .. })), "{fx:?}");
    assert!(fx.iter().any(|e| matches!(e, Effect::WakeAt(INTERVAL))), "{fx:?}");
    // A transaction that arrives meanwhile is in the block.
    let alice = dchat_keyfile::Identity::generate().expect("key");
    let register = crate::ledger::SignedTx::create(
        &alice,
        "unit",
        0,
        crate::ledger::TxKind::RegisterAccount {
            name: "alice".into(),
            identity_key: alice.identity_public(),
            messaging_key: alice.messaging_public(),
        },
    );
    a.store.submit(register.clone());
    let fx = a.chain.tick(INTERVAL / 2);
    assert!(fx.iter().all(|e| !matches!(e, Effect::WakeAt(_))), "asked once: {fx:?}");
    let fx = a.chain.tick(INTERVAL);
    let (digest, at) = fx
        .iter()
        .find_map(|e| match e {
            Effect::AnswerPropose { digest, at_ms, .. } => Some((*digest, *at_ms)),
            _ => None,
        })
        .expect("proposed");
    // One interval after genesis, not before.
    assert_eq!(at, INTERVAL);
    let block = a.store.block_by_hash(&digest).expect("saved before answering");
    assert_eq!((block.height, block.proposer, block.timestamp_ms), (1, a.me, INTERVAL));
    assert_eq!(block.txs, [register]);

    let mut b = node(2);
    b.chain.relayed(&block.encode(), 100);
    let (fx, _rx) = verify(&mut b, g.hash(), a.me, &block, 100);
    assert_eq!(verdict(&fx), Some(true));
    assert!(b.store.block_by_hash(&digest).is_some(), "saved before voting");
}

#[test]
fn wrong_leader_early_timestamp_bad_root_and_wrong_parent_are_refused() {
    let (gs, g) = genesis_block();
    let leader = key(1);
    let mut b = node(2);
    let mut check = |block: Block, parent: [u8; 32], leader: [u8; 32]| {
        b.chain.relayed(&block.encode(), 1000);
        let (tx, _rx) = oneshot::channel();
        verdict(&b.chain.verify(parent, leader, block.hash(), tx, 1000))
    };
    let (_, good) = child(&gs, 500, leader);
    assert_eq!(check(good.clone(), g.hash(), leader), Some(true));
    // Proposed by someone else than the view's leader.
    assert_eq!(check(good.clone(), g.hash(), key(3)), Some(false));
    // Built on another parent than the engine's.
    assert_eq!(check(good, [7; 32], leader), Some(false));
    // Less than one interval after its parent.
    let (_, early) = child(&gs, INTERVAL - 1, leader);
    assert_eq!(check(early, g.hash(), leader), Some(false));
    // Claims a state it does not lead to.
    let (_, mut forged) = child(&gs, 600, leader);
    forged.state_root = [1; 32];
    assert_eq!(check(forged, g.hash(), leader), Some(false));
}

#[test]
fn a_block_from_the_future_waits_until_its_time() {
    let (gs, g) = genesis_block();
    let mut b = node(2);
    let (_, block) = child(&gs, 5_000, key(1));
    b.chain.relayed(&block.encode(), 1_000);
    let (fx, _rx) = verify(&mut b, g.hash(), key(1), &block, 1_000);
    assert_eq!(verdict(&fx), None);
    assert!(fx.iter().any(|e| matches!(e, Effect::WakeAt(4_500))), "{fx:?}");
    assert_eq!(verdict(&b.chain.tick(4_400)), None);
    assert_eq!(verdict(&b.chain.tick(4_500)), Some(true));
}

#[test]
fn a_missing_proposal_is_fetched_from_the_leader_and_only_the_right_block_accepted() {
    let (gs, g) = genesis_block();
    let mut b = node(2);
    let (_, block) = child(&gs, 200, key(1));
    let (fx, _rx) = verify(&mut b, g.hash(), key(1), &block, 200);
    assert_eq!(verdict(&fx), None);
    // After the relay grace, ask the leader.
    let fx = b.chain.tick(200 + RELAY_GRACE_MS);
    let asked = fx.iter().any(|e| match e {
        Effect::Send {
            net: Net::Sync,
            to: To::One(k),
            bytes,
        } => {
            *k == key(1)
                && SyncMessage::decode(bytes)
                    == Some(SyncMessage::GetAncestors {
                        digest: block.hash(),
                        max: MAX_ANCESTORS,
                    })
        }
        _ => false,
    });
    assert!(asked, "{fx:?}");
    // A different block in the answer is ignored.
    let (_, other) = child(&gs, 300, key(1));
    let fx = b.chain.sync(key(1), SyncMessage::Blocks(vec![other.encode()]), 310);
    assert_eq!(verdict(&fx), None);
    let fx = b.chain.sync(key(1), SyncMessage::Blocks(vec![block.encode()]), 320);
    assert_eq!(verdict(&fx), Some(true));
}

#[test]
fn a_finalization_applies_the_chain_below_it_in_order() {
    let (gs, g) = genesis_block();
    let leader = key(1);
    let (s1, b1) = child(&gs, 100, leader);
    let (s2, b2) = child(&s1, 200, leader);
    let (_, b3) = child(&s2, 300, leader);
    let mut n = node(2);
    for b in [&b1, &b2, &b3] {
        n.chain.relayed(&b.encode(), 300);
    }
    let fx = n.chain.finalization(9, b3.hash(), vec![42], 300);
    let finalized: Vec<u64> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Event(ConsensusEvent::Finalized { height, .. }) => Some(*height),
            _ => None,
        })
        .collect();
    assert_eq!(finalized, vec![1, 2, 3]);
    assert_eq!(n.store.hashes(), vec![g.hash(), b1.hash(), b2.hash(), b3.hash()]);
    // Only the certified block carries the certificate.
    assert_eq!(n.store.heights_with_proof(), vec![3]);
    assert_eq!(n.chain.finalized(), (3, b3.hash()));
    // At least once: the same certificate again changes nothing.
    assert!(n.chain.finalization(9, b3.hash(), vec![42], 400).is_empty());

    // Building on a block the finalized chain passed by is refused.
    let (_, fork) = child(&s1, 250, key(3));
    n.chain.relayed(&fork.encode(), 400);
    let (fx, _rx) = verify(&mut n, b1.hash(), key(3), &fork, 400);
    assert_eq!(verdict(&fx), Some(false));
}

#[test]
fn a_lagging_node_fetches_the_finalized_chain_it_missed() {
    let (gs, _) = genesis_block();
    let leader = key(1);
    let mut blocks = Vec::new();
    let mut state = gs;
    for h in 1..=5 {
        let (s, b) = child(&state, h * 100, leader);
        state = s;
        blocks.push(b);
    }
    // A node that holds the chain (finalized up to 4, 5 still pending).
    let mut full = node(1);
    for b in &blocks {
        full.chain.relayed(&b.encode(), 500);
    }
    full.chain.finalization(4, blocks[3].hash(), vec![1], 500);
    // A node that heard only of the certificate on block 5.
    let mut lag = node(2);
    let fx = lag.chain.finalization(5, blocks[4].hash(), vec![2], 500);
    let request = fx
        .into_iter()
        .find_map(|e| match e {
            Effect::Send {
                net: Net::Sync,
                to: To::One(_),
                bytes,
            } => SyncMessage::decode(&bytes),
            _ => None,
        })
        .expect("asks for the block");
    let answer = full.chain.sync(lag.me, request, 500);
    let Some(Effect::Send { bytes, .. }) = answer.into_iter().next() else {
        panic!("no answer")
    };
    let answer = SyncMessage::decode(&bytes).expect("decodes");
    let SyncMessage::Blocks(list) = &answer else {
        panic!("{answer:?}")
    };
    assert_eq!(list.len(), 5, "newest first, down to height 1");
    lag.chain.sync(full.me, answer, 510);
    assert_eq!(
        lag.store.hashes()[1..],
        blocks.iter().map(Block::hash).collect::<Vec<_>>()[..]
    );
}
