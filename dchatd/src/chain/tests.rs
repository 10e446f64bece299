use dchat_keyfile::Identity;

use super::*;
use crate::ledger::{Genesis, TxKind};
use crate::storage::Database;

fn validator() -> Identity {
    Identity::from_secrets(&[1; 32], &[2; 32])
}

fn genesis() -> Genesis {
    Genesis::single_validator("test-chain", validator().signing_key().verifying_key().to_bytes(), 100)
}

fn register(name: &str, seed: u8) -> SignedTx {
    let who = Identity::from_secrets(&[seed; 32], &[seed.wrapping_add(1); 32]);
    let kind = TxKind::RegisterAccount {
        name: name.into(),
        identity_key: who.signing_key().verifying_key().to_bytes(),
        messaging_key: [seed; 32],
    };
    SignedTx::create(&who, "test-chain", 0, kind)
}

fn file_db(dir: &std::path::Path) -> SharedDb {
    SharedDb::new(Database::open(&dir.join("db.sqlite3"), &Default::default()).unwrap())
}

/// Builds the next block from the mempool and finalizes it.
fn step(chain: &Chain) -> Block {
    let tip = chain.tip();
    let proposer = validator().signing_key().verifying_key().to_bytes();
    let (_, state) = chain.tip_with_state();
    let block = state
        .propose_block(chain.mempool_candidates(100, 1 << 20), tip.timestamp_ms + 100, proposer)
        .block;
    chain.store_unfinalized(&block).unwrap();
    chain.finalize(&block, Some(b"proof"), None).unwrap();
    block
}

#[test]
fn submitted_txs_are_built_finalized_stored_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(genesis(), file_db(dir.path())).unwrap();
    let tx = register("alice", 7);
    let id = chain.submit(tx.clone()).unwrap();
    assert_eq!(chain.mempool_len(), 1);
    // The pool already holds the name: a second claim is refused at once.
    assert!(matches!(
        chain.submit(register("ALICE", 9)),
        Err(ChainError::Rejected(_))
    ));
    assert!(matches!(chain.submit(tx), Err(ChainError::Pool(_))));
    let block = step(&chain);
    assert_eq!(block.height, 1);
    assert_eq!(block.txs.len(), 1);
    assert_eq!(chain.mempool_len(), 0);
    assert_eq!(chain.tx_height(&id).unwrap(), Some(1));
    assert!(chain.read(|s| s.account("alice").is_some()));
    // Finalizing twice is harmless.
    chain.finalize(&block, Some(b"proof"), None).unwrap();
    step(&chain);
    let tip_hash = chain.tip().hash();
    drop(chain);

    let reopened = Chain::open(genesis(), file_db(dir.path())).unwrap();
    assert_eq!(reopened.tip().height, 2);
    assert_eq!(reopened.tip().hash(), tip_hash);
    assert!(reopened.read(|s| s.account("alice").is_some()));
    assert_eq!(reopened.block_by_height(1).unwrap().0, block);
}

#[test]
fn a_database_of_another_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Chain::open(genesis(), file_db(dir.path())).unwrap());
    let other = Genesis::single_validator("other-chain", [9; 32], 100);
    match Chain::open(other, file_db(dir.path())) {
        Err(ChainError::WrongChain { found, .. }) => assert_eq!(found, "test-chain"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("another chain's database was accepted"),
    }
}

#[tokio::test]
async fn waiting_for_a_stalled_chain_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(genesis(), file_db(dir.path())).unwrap();
    let r = chain
        .submit_and_wait(register("carol", 4), Duration::from_millis(200))
        .await;
    assert!(matches!(r, Err(ChainError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn signing_takes_the_next_nonce_after_the_pooled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(genesis(), file_db(dir.path())).unwrap();
    chain.submit(register("alice", 7)).unwrap();
    step(&chain);
    let alice = Identity::from_secrets(&[7; 32], &[8; 32]);
    let key = alice.signing_key().verifying_key().to_bytes();
    // Two changes by one account queued before either is final: each must
    // get its own nonce (1, then 2), or the second would be refused.
    let mut waiters = Vec::new();
    for name in ["one", "two"] {
        let (shared, alice) = (Arc::clone(&chain), alice.clone());
        waiters.push(tokio::spawn(async move {
            let kind = TxKind::CreateChannel {
                name: name.into(),
                description: String::new(),
                invite_only: false,
            };
            shared
                .sign_submit_and_wait(
                    &key,
                    |nonce| SignedTx::create(&alice, "test-chain", nonce, kind),
                    Duration::from_secs(10),
                )
                .await
        }));
        while chain.mempool_len() < waiters.len() {
            tokio::task::yield_now().await;
        }
    }
    let block = step(&chain);
    assert_eq!(block.txs.iter().map(|t| t.tx.nonce).collect::<Vec<_>>(), [1, 2]);
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap().height, 2);
    }
    assert_eq!(chain.read(|s| s.channels().count()), 2);
}

#[test]
fn each_finalized_block_records_its_proposal_to_finality_time() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(genesis(), file_db(dir.path())).unwrap();
    let metrics = crate::metrics::Metrics::new();
    chain.set_finality_histogram(metrics.finality_latency.clone());
    let scrape =
        || crate::metrics::exposition::encode(metrics.registry(), crate::metrics::exposition::Format::Text).unwrap();
    let sample = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(sample(&scrape(), "dchat_chain_finality_latency_seconds_count"), 0.0);

    // A block proposed 1.5 s ago, finalized now.
    let (_, state) = chain.tip_with_state();
    let proposer = validator().signing_key().verifying_key().to_bytes();
    let block = state
        .propose_block(Vec::new(), crate::p2p::now_ms() - 1_500, proposer)
        .block;
    chain.finalize(&block, Some(b"proof"), None).unwrap();
    let text = scrape();
    assert_eq!(sample(&text, "dchat_chain_finality_latency_seconds_count"), 1.0);
    let sum = sample(&text, "dchat_chain_finality_latency_seconds_sum");
    assert!(
        (1.5..60.0).contains(&sum),
        "latency {sum} s for a block proposed 1.5 s ago"
    );
    // Finalizing it again (consensus reports at least once) records nothing.
    chain.finalize(&block, Some(b"proof"), None).unwrap();
    assert_eq!(sample(&scrape(), "dchat_chain_finality_latency_seconds_count"), 1.0);
    // A proposer clock slightly ahead of ours counts as zero, not as garbage.
    assert_eq!(store::finality_latency(2_000, 1_000), Duration::ZERO);
    assert_eq!(store::finality_latency(1_000, 3_500), Duration::from_millis(2_500));
}
