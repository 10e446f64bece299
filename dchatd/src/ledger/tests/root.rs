//! The state root: a function of the state's contents only.

use super::*;

/// A fixed script touching every part of the state.
fn script() -> Vec<SignedTx> {
    let (alice, bob) = (ident(1), ident(2));
    vec![
        register_tx(&alice, "alice", 0),
        register_tx(&bob, "bob", 0),
        signed(
            &alice,
            1,
            TxKind::CreateChannel {
                name: "secret".into(),
                description: "d".into(),
                invite_only: true,
            },
        ),
        signed(&alice, 2, invite("secret", "bob")),
        signed(&bob, 1, join("secret")),
        signed(
            &alice,
            3,
            TxKind::Stake {
                role: StakeRole::Relay,
                amount: 10,
            },
        ),
        signed(
            &bob,
            2,
            TxKind::AnchorMessages {
                merkle_root: [3; 32],
                count: 2,
            },
        ),
    ]
}

#[test]
fn same_txs_in_the_same_order_give_the_same_root() {
    let (mut a, mut b) = (fresh(), fresh());
    for tx in script() {
        let ra = a.apply(&tx).unwrap();
        let rb = b.apply(&tx).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(a.state_root(), b.state_root());
    }
    assert_eq!(a, b);
}

#[test]
fn every_change_moves_the_root() {
    let mut s = fresh();
    let mut seen = vec![s.state_root()];
    for tx in script() {
        s.apply(&tx).unwrap();
        let root = s.state_root();
        assert!(!seen.contains(&root), "{:?} did not change the root", tx.tx.kind);
        seen.push(root);
    }
}

#[test]
fn registration_order_changes_the_block_but_not_the_root() {
    let mut ab = fresh();
    let mut ba = fresh();
    let (alice, bob) = (ident(1), ident(2));
    let block_ab = ab.propose_block(
        vec![register_tx(&alice, "alice", 0), register_tx(&bob, "bob", 0)],
        2_000,
        key(&validator()),
    );
    let block_ba = ba.propose_block(
        vec![register_tx(&bob, "bob", 0), register_tx(&alice, "alice", 0)],
        2_000,
        key(&validator()),
    );
    assert_ne!(
        block_ab.block.hash(),
        block_ba.block.hash(),
        "the blocks list the txs in different orders"
    );
    assert_eq!(block_ab.block.state_root, block_ba.block.state_root);
    ab.apply_block(&block_ab.block).unwrap();
    ba.apply_block(&block_ba.block).unwrap();
    assert_eq!(ab.state_root(), ba.state_root());
}

#[test]
fn insertion_order_of_the_maps_does_not_matter() {
    // Build the same contents by hand, inserting in opposite orders.
    let accounts: Vec<(String, Account)> = (1..=5u8)
        .map(|n| {
            let id = ident(n);
            let account = Account {
                name: format!("User{n}"),
                identity_key: key(&id),
                messaging_key: messaging_key(&id),
                registered_at: u64::from(n),
            };
            (format!("user{n}"), account)
        })
        .collect();
    let fill = |order: &mut dyn Iterator<Item = &(String, Account)>| {
        let mut s = fresh();
        for (name, account) in order {
            s.names_by_key.insert(account.identity_key, name.clone());
            s.accounts.insert(name.clone(), account.clone());
            s.nonces.insert(account.identity_key, 1);
            s.set_balance(account.identity_key, account.registered_at);
        }
        s
    };
    let forward = fill(&mut accounts.iter());
    let backward = fill(&mut accounts.iter().rev());
    assert_eq!(forward.state_root(), backward.state_root());
    assert_ne!(forward.state_root(), fresh().state_root());
}

#[test]
fn zero_balances_hash_like_absent_ones() {
    let mut with_zero = fresh();
    with_zero.set_balance([42; 32], 7);
    with_zero.set_balance([42; 32], 0);
    with_zero.set_stake([42; 32], StakeRole::Relay, 0);
    assert_eq!(with_zero.state_root(), fresh().state_root());
}

#[test]
fn the_root_ignores_chain_position_but_not_the_chain() {
    let mut s = fresh();
    let root = s.state_root();
    let empty = s.propose_block(Vec::new(), 3_000, key(&validator())).block;
    s.apply_block(&empty).unwrap();
    assert_eq!(
        s.state_root(),
        root,
        "an empty block changes the position, not the state"
    );

    let mut other = genesis_with(&[(&ident(1), 1000)]);
    other.chain_id = "elsewhere".into();
    assert_ne!(LedgerState::from_genesis(&other).unwrap().0.state_root(), root);
}

#[test]
fn the_hashed_writer_matches_sha256_of_the_bytes() {
    let mut bytes = codec::Writer::new();
    let mut hashed = codec::Writer::hasher();
    for w in [0u64, 1, u64::MAX] {
        bytes.u64(w);
        hashed.u64(w);
    }
    bytes.str("x");
    hashed.str("x");
    assert_eq!(hashed.finish_hash(), sha256(&bytes.into_bytes()));
}
