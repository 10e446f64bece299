//! `io.dchat.Chain.Submit`: signed transactions from outside the daemon
//! (scripts, other wallets, the chain benchmark) enter the mempool, each
//! gets its id or the reason it was refused, and the accepted ones become
//! final. A real `dchatd --dev` (one validator) on a temporary state dir.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use dchat_keyfile::Identity;
use dchat_testkit::{call, Daemon};
use dchatd::ledger::{SignedTx, TxKind};
use serde_json::{json, Value};

const START: Duration = Duration::from_secs(30);
const FINAL: Duration = Duration::from_secs(30);

fn register(chain_id: &str, name: &str) -> SignedTx {
    let identity = Identity::generate().unwrap();
    let kind = TxKind::RegisterAccount {
        name: name.to_string(),
        identity_key: identity.identity_public(),
        messaging_key: identity.messaging_public(),
    };
    SignedTx::create(&identity, chain_id, 0, kind)
}

fn submit(socket: &Path, txs: &[String]) -> Value {
    call(socket, "io.dchat.Chain.Submit", json!({ "transactions": txs }))
}

#[test]
fn submitted_transactions_are_pooled_refused_or_final() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::builder().dev(tmp.path().join("state")).notify(true).spawn();
    daemon.wait_ready(START);
    let socket = daemon.socket_path().to_owned();
    let status = call(&socket, "io.dchat.Chain.Status", json!({}));
    let chain_id = status["parameters"]["chain_id"].as_str().unwrap().to_string();

    let alice = register(&chain_id, "alice");
    let bob = register(&chain_id, "bob");
    let mut forged = register(&chain_id, "mallory");
    forged.signature[0] ^= 1;
    let other_chain = register("another-chain", "carol");
    let also_alice = register(&chain_id, "alice");
    let hex_of = |tx: &SignedTx| hex::encode(tx.encode());
    let batch = vec![
        hex_of(&alice),
        "zz-not-hex".to_string(),
        hex_of(&bob),
        hex::encode([1u8, 2, 3]),
        hex_of(&forged),
        hex_of(&other_chain),
        hex_of(&alice),
        hex_of(&also_alice),
    ];
    let reply = submit(&socket, &batch);
    assert!(reply.get("error").is_none(), "{reply}");
    let results = reply["parameters"]["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), batch.len(), "one result per transaction: {reply}");
    let id = |i: usize| results[i]["id"].as_str().map(str::to_string);
    let error = |i: usize| results[i]["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(id(0), Some(hex::encode(alice.id())), "{reply}");
    assert!(error(1).starts_with("not hex"), "{reply}");
    assert_eq!(id(2), Some(hex::encode(bob.id())), "{reply}");
    assert!(error(3).starts_with("not a transaction"), "{reply}");
    for bad_signature in [4, 5] {
        assert!(id(bad_signature).is_none(), "{reply}");
        assert!(error(bad_signature).contains("signature"), "{reply}");
    }
    assert!(error(6).contains("already pending"), "{reply}");
    assert!(error(7).contains("alice"), "the name is claimed in the pool: {reply}");

    // The accepted ones become final; the refused never do.
    let deadline = Instant::now() + FINAL;
    for tx in [&alice, &bob] {
        loop {
            let found = call(&socket, "io.dchat.Chain.Tx", json!({ "id": hex::encode(tx.id()) }));
            if found.get("error").is_none() {
                assert!(found["parameters"]["height"].as_u64().unwrap() >= 1, "{found}");
                break;
            }
            assert!(Instant::now() < deadline, "not final in {FINAL:?}: {found}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let forged_id = hex::encode(forged.id());
    let missing = call(&socket, "io.dchat.Chain.Tx", json!({ "id": forged_id }));
    assert_eq!(missing["error"], "io.dchat.Chain.NoSuchTx", "{missing}");
    let shown = call(&socket, "io.dchat.Accounts.Show", json!({ "name": "bob" }));
    assert!(shown.get("error").is_none(), "bob is registered on chain: {shown}");

    // Too many in one call: refused as a whole, naming the limit.
    let many = vec![hex_of(&register(&chain_id, "x")); 1001];
    let refused = submit(&socket, &many);
    assert_eq!(refused["error"], "org.varlink.service.InvalidParameter", "{refused}");
    let mempool = call(&socket, "io.dchat.Chain.Status", json!({}));
    assert_eq!(mempool["parameters"]["mempool"], 0, "{mempool}");
}
