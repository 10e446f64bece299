//! Blocks: header rules, all-or-nothing application, proposing; genesis.

use super::*;

fn proposer() -> [u8; 32] {
    key(&validator())
}

/// A valid block 1 on `fresh()` registering alice and bob.
fn block_one(s: &LedgerState) -> Block {
    let txs = vec![register_tx(&ident(1), "alice", 0), register_tx(&ident(2), "bob", 0)];
    let proposal = s.propose_block(txs, 2_000, proposer());
    assert!(proposal.rejected.is_empty());
    proposal.block
}

/// Applies `block` expecting `error`, and checks that nothing changed.
fn refused(s: &mut LedgerState, block: &Block, error: BlockError) {
    let before = s.clone();
    assert_eq!(s.apply_block(block), Err(error));
    assert_eq!(*s, before, "a refused block changed the state");
}

#[test]
fn a_proposed_block_applies_and_moves_the_chain_forward() {
    let mut s = fresh();
    let genesis_hash = s.last_hash();
    let block = block_one(&s);
    assert_eq!((block.height, block.parent), (1, genesis_hash));

    let applied = s.apply_block(&block).unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0].tx_id, block.txs[0].id());
    assert_eq!(applied[1].event, Event::AccountRegistered { account: "bob".into() });
    assert_eq!(
        (s.height(), s.last_hash(), s.last_timestamp_ms()),
        (1, block.hash(), 2_000)
    );
    assert_eq!(s.state_root(), block.state_root);
    assert_eq!(s.account("bob").unwrap().registered_at, 1);

    // Block 2 builds on block 1; an empty block is fine and keeps the root.
    let empty = s.propose_block(Vec::new(), 2_100, proposer()).block;
    assert_eq!(
        (empty.height, empty.parent, empty.state_root),
        (2, block.hash(), block.state_root)
    );
    s.apply_block(&empty).unwrap();
    assert_eq!(s.height(), 2);
}

#[test]
fn wrong_state_root_is_refused_and_changes_nothing() {
    let mut s = fresh();
    let mut block = block_one(&s);
    let computed = block.state_root;
    block.state_root[0] ^= 1;
    refused(
        &mut s,
        &block,
        BlockError::WrongStateRoot {
            claimed: block.state_root,
            computed,
        },
    );
}

#[test]
fn wrong_parent_is_refused_and_changes_nothing() {
    let mut s = fresh();
    let mut block = block_one(&s);
    block.parent = [9; 32];
    let expected = s.last_hash();
    refused(&mut s, &block, BlockError::WrongParent { expected, got: [9; 32] });
}

#[test]
fn wrong_height_is_refused_and_a_block_cannot_apply_twice() {
    let mut s = fresh();
    let mut block = block_one(&s);
    block.height = 2;
    refused(&mut s, &block, BlockError::WrongHeight { expected: 1, got: 2 });

    let block = block_one(&s);
    s.apply_block(&block).unwrap();
    refused(&mut s, &block, BlockError::WrongHeight { expected: 2, got: 1 });
}

#[test]
fn unknown_proposer_and_time_going_backwards_are_refused() {
    let mut s = fresh();
    let mut block = block_one(&s);
    block.proposer = key(&ident(1));
    refused(&mut s, &block, BlockError::UnknownProposer(key(&ident(1))));

    let mut block = block_one(&s);
    block.timestamp_ms = 999; // genesis is at 1000
    refused(
        &mut s,
        &block,
        BlockError::TimestampRegressed {
            parent: 1_000,
            got: 999,
        },
    );
}

#[test]
fn one_bad_tx_refuses_the_whole_block() {
    let mut s = fresh();
    let mut block = block_one(&s);
    // Third tx replays alice's registration: the first two were fine, but
    // none of them may stick.
    let replay = block.txs[0].clone();
    block.txs.push(replay.clone());
    let error = BlockError::Tx {
        index: 2,
        tx_id: replay.id(),
        rejection: Rejection::BadNonce { expected: 1, got: 0 },
    };
    refused(&mut s, &block, error);
    assert!(s.account("alice").is_none());
}

#[test]
fn too_many_txs_are_refused() {
    let mut s = fresh();
    let mut block = block_one(&s);
    block.txs = vec![block.txs[0].clone(); MAX_BLOCK_TXS + 1];
    refused(
        &mut s,
        &block,
        BlockError::TooManyTxs {
            count: MAX_BLOCK_TXS + 1,
            max: MAX_BLOCK_TXS,
        },
    );
}

#[test]
fn propose_leaves_out_rejected_txs_and_keeps_time_monotonic() {
    let s = fresh();
    let alice = ident(1);
    let txs = vec![
        signed(&alice, 1, join("general")), // too early: nonce 1 before 0
        register_tx(&alice, "alice", 0),
        register_tx(&ident(2), "Alice", 0), // name taken by then
        signed(
            &alice,
            1,
            TxKind::Stake {
                role: StakeRole::Relay,
                amount: 10,
            },
        ),
    ];
    let proposal = s.propose_block(txs, 5, proposer());
    assert_eq!(proposal.block.txs.len(), 2);
    let reasons: Vec<_> = proposal.rejected.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        reasons,
        [Rejection::UnknownSigner, Rejection::NameTaken("Alice".into())]
    );
    assert_eq!(proposal.block.timestamp_ms, 1_000, "raised to the parent's timestamp");
    let mut s = s;
    s.apply_block(&proposal.block).unwrap();
    assert_eq!(s.stake(&key(&alice), StakeRole::Relay), 10);
}

#[test]
fn genesis_is_deterministic_and_commits_to_its_contents() {
    let (a, block_a) = LedgerState::from_genesis(&genesis_with(&[(&ident(1), 5)])).unwrap();
    let (b, block_b) = LedgerState::from_genesis(&genesis_with(&[(&ident(1), 5)])).unwrap();
    assert_eq!(a, b);
    assert_eq!(block_a, block_b);
    assert_eq!(
        (block_a.height, block_a.parent, block_a.timestamp_ms),
        (0, [0; 32], 1_000)
    );
    assert_eq!(a.last_hash(), block_a.hash());
    assert_eq!(a.state_root(), block_a.state_root);

    let (_, other_balance) = LedgerState::from_genesis(&genesis_with(&[(&ident(1), 6)])).unwrap();
    assert_ne!(other_balance.hash(), block_a.hash());
    let mut renamed = genesis_with(&[(&ident(1), 5)]);
    renamed.chain_id = "other".into();
    assert_ne!(LedgerState::from_genesis(&renamed).unwrap().1.hash(), block_a.hash());
}

#[test]
fn genesis_json_round_trips_and_bad_genesis_is_refused() {
    let genesis = genesis_with(&[(&ident(1), 5)]);
    let json = genesis.to_json();
    assert!(json.contains(&validator().id()), "keys are hex: {json}");
    assert_eq!(Genesis::from_json(json.as_bytes()).unwrap(), genesis);
    assert!(matches!(Genesis::from_json(b"{"), Err(GenesisError::Parse(_))));
    assert!(matches!(
        Genesis::from_json(br#"{"chain_id":"x","surprise":1}"#),
        Err(GenesisError::Parse(_))
    ));

    let dev = Genesis::single_validator("dev", proposer(), 200);
    assert_eq!(dev.validate(), Ok(()));

    let mut g = genesis.clone();
    g.chain_id = "has space".into();
    assert_eq!(g.validate(), Err(GenesisError::BadChainId { max: MAX_CHAIN_ID_LEN }));
    let mut g = genesis.clone();
    g.validators.clear();
    assert_eq!(
        LedgerState::from_genesis(&g).map(|_| ()),
        Err(GenesisError::NoValidators)
    );
    let mut g = genesis.clone();
    g.validators.push(g.validators[0].clone());
    assert_eq!(g.validate(), Err(GenesisError::DuplicateValidator(proposer())));
    let mut g = genesis.clone();
    g.validators[0].stake = 0;
    assert_eq!(g.validate(), Err(GenesisError::ZeroStake(proposer())));
    let mut g = genesis.clone();
    g.balances.push(g.balances[0].clone());
    assert_eq!(g.validate(), Err(GenesisError::DuplicateBalance(key(&ident(1)))));
    let mut g = genesis.clone();
    g.block_interval_ms = 0;
    assert_eq!(g.validate(), Err(GenesisError::ZeroBlockInterval));
    let mut g = genesis;
    g.balances[0].amount = u64::MAX;
    assert_eq!(g.validate(), Err(GenesisError::SupplyOverflow));
}

#[test]
fn a_proposal_carries_the_state_its_block_leads_to() {
    // Consensus keeps the proposer's state instead of applying its own
    // block again: it must be exactly what applying the block makes,
    // including what a rejected candidate must not leave behind.
    let s = fresh();
    let txs = vec![
        register_tx(&ident(1), "alice", 0),
        register_tx(&ident(2), "alice", 0),
        register_tx(&ident(3), "carol", 0),
    ];
    let proposal = s.propose_block(txs, 2_000, proposer());
    assert_eq!(proposal.rejected.len(), 1);
    let (state, applied) = s.after_block(&proposal.block).unwrap();
    assert_eq!(proposal.state, state);
    assert_eq!(proposal.applied, applied);
    assert_eq!(
        (state.height(), state.last_hash(), state.last_timestamp_ms()),
        (1, proposal.block.hash(), 2_000)
    );
    let mut applied_in_place = s.clone();
    assert_eq!(applied_in_place.apply_block(&proposal.block).unwrap(), applied);
    assert_eq!(applied_in_place, state);
}
