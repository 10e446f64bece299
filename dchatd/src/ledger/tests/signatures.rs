//! Signatures and nonces: who may act, and only once per nonce.

use super::*;

#[test]
fn tampered_signature_is_refused() {
    let s = fresh();
    let mut tx = register_tx(&ident(1), "alice", 0);
    tx.signature[10] ^= 1;
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));
}

#[test]
fn tampered_field_after_signing_is_refused() {
    let s = world();
    let mut tx = signed(&ident(2), 1, join("general"));
    assert_eq!(s.check(&tx), Ok(()));
    tx.tx.kind = join("secret");
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));

    let mut tx = signed(
        &ident(1),
        3,
        TxKind::Stake {
            role: StakeRole::Relay,
            amount: 1,
        },
    );
    assert_eq!(s.check(&tx), Ok(()));
    tx.tx.kind = TxKind::Stake {
        role: StakeRole::Relay,
        amount: 2,
    };
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));
}

#[test]
fn signature_by_another_key_or_for_another_chain_is_refused() {
    let s = world();
    // bob signs a transaction that claims alice as signer.
    let tx = Tx {
        kind: join("general"),
        signer: key(&ident(1)),
        nonce: 3,
    }
    .sign(CHAIN, &ident(2));
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));
    // bob's own transaction, signed for a different chain.
    let tx = Tx {
        kind: join("general"),
        signer: key(&ident(2)),
        nonce: 1,
    }
    .sign("other-chain", &ident(2));
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));
    // A signer field that is not a valid curve point at all.
    let mut tx = signed(&ident(2), 1, join("general"));
    tx.tx.signer = [0xff; 32];
    assert_eq!(s.check(&tx), Err(Rejection::BadSignature));
}

#[test]
fn replayed_tx_is_refused_by_nonce() {
    let mut s = fresh();
    let tx = register_tx(&ident(1), "alice", 0);
    s.apply(&tx).unwrap();
    let before = s.clone();
    assert_eq!(s.apply(&tx), Err(Rejection::BadNonce { expected: 1, got: 0 }));
    assert_eq!(s, before);
}

#[test]
fn out_of_order_nonce_is_refused_and_in_order_succeeds() {
    let mut s = world();
    let bob = ident(2);
    let first = signed(&bob, 1, join("general"));
    let second = signed(&bob, 2, leave("general"));
    assert_eq!(s.apply(&second), Err(Rejection::BadNonce { expected: 1, got: 2 }));
    s.apply(&first).unwrap();
    s.apply(&second).unwrap();
    assert_eq!(s.next_nonce(&key(&bob)), 3);
}

#[test]
fn rejected_tx_does_not_use_up_the_nonce() {
    let mut s = world();
    let bob = ident(2);
    assert_eq!(
        expect_rejected(&mut s, &bob, join("nowhere")),
        Rejection::NoSuchChannel("nowhere".into())
    );
    assert_eq!(s.next_nonce(&key(&bob)), 1);
    send(&mut s, &bob, join("general")).unwrap();
}
