//! The canonical encodings: round trips, the exact layout, and refusal of
//! anything that is not exactly one canonical value.

use super::*;

#[test]
fn every_tx_kind_round_trips() {
    let alice = ident(1);
    for (nonce, kind) in every_kind(&alice).into_iter().enumerate() {
        let tx = signed(&alice, nonce as u64, kind);
        let bytes = tx.encode();
        assert!(bytes.len() <= MAX_TX_BYTES);
        let back = SignedTx::decode(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.id(), tx.id());
    }
}

#[test]
fn tx_layout_is_the_documented_one() {
    let alice = ident(1);
    let tx = signed(
        &alice,
        0x0102_0304_0506_0708,
        TxKind::Stake {
            role: StakeRole::Relay,
            amount: 5,
        },
    );
    let bytes = tx.encode();
    let mut expected = Vec::new();
    expected.extend_from_slice(b"dchat-tx/1");
    expected.extend_from_slice(&key(&alice));
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // nonce, big-endian
    expected.push(6); // Stake
    expected.push(2); // Relay
    expected.extend_from_slice(&5u64.to_be_bytes());
    expected.extend_from_slice(&tx.signature);
    assert_eq!(bytes, expected);
    assert_eq!(tx.id(), sha256(&bytes));

    // Strings are u32-length-prefixed UTF-8.
    let join = signed(&alice, 0, join("ab")).encode();
    assert_eq!(&join[50..57], &[3, 0, 0, 0, 2, b'a', b'b']);

    // The signature covers the chain id behind its own domain tag.
    let msg = tx.tx.signing_message(CHAIN);
    assert!(msg.starts_with(b"dchat-tx-sig/1\0\0\0\x0adchat-test"));
    assert!(msg.ends_with(&tx.tx.encode()));
}

#[test]
fn signing_is_deterministic_and_ids_differ_per_tx() {
    let alice = ident(1);
    let a = signed(&alice, 0, join("x"));
    let b = signed(&alice, 0, join("x"));
    let c = signed(&alice, 1, join("x"));
    assert_eq!(a, b);
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
}

#[test]
fn truncated_input_is_refused_at_every_length() {
    let alice = ident(1);
    for kind in every_kind(&alice) {
        let bytes = signed(&alice, 3, kind).encode();
        for cut in 0..bytes.len() {
            assert!(
                SignedTx::decode(&bytes[..cut]).is_err(),
                "decoded a prefix of {cut} bytes"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = signed(&ident(1), 0, join("general")).encode();
    bytes.push(0);
    assert_eq!(SignedTx::decode(&bytes), Err(DecodeError::TrailingBytes { extra: 1 }));
}

#[test]
fn unknown_tags_and_bad_booleans_are_refused() {
    let alice = ident(1);
    let kind_at = TX_MAGIC.len() + 32 + 8;

    let mut bytes = signed(&alice, 0, join("general")).encode();
    bytes[kind_at] = 9;
    assert_eq!(
        SignedTx::decode(&bytes),
        Err(DecodeError::UnknownTag {
            what: "transaction kind",
            tag: 9
        })
    );
    bytes[kind_at] = 0;
    assert!(matches!(
        SignedTx::decode(&bytes),
        Err(DecodeError::UnknownTag { tag: 0, .. })
    ));

    let mut bytes = signed(
        &alice,
        0,
        TxKind::Stake {
            role: StakeRole::Validator,
            amount: 1,
        },
    )
    .encode();
    bytes[kind_at + 1] = 3;
    assert_eq!(
        SignedTx::decode(&bytes),
        Err(DecodeError::UnknownTag {
            what: "stake role",
            tag: 3
        })
    );

    let kind = TxKind::CreateChannel {
        name: "c".into(),
        description: "d".into(),
        invite_only: true,
    };
    let mut bytes = signed(&alice, 0, kind).encode();
    let flag_at = bytes.len() - 64 - 1;
    assert_eq!(bytes[flag_at], 1);
    bytes[flag_at] = 2;
    assert_eq!(SignedTx::decode(&bytes), Err(DecodeError::BadBool(2)));
}

#[test]
fn wrong_magic_is_refused() {
    let mut bytes = signed(&ident(1), 0, join("general")).encode();
    bytes[9] = b'2'; // "dchat-tx/2"
    assert_eq!(SignedTx::decode(&bytes), Err(DecodeError::BadMagic));
}

#[test]
fn oversize_strings_and_transactions_are_refused() {
    let alice = ident(1);
    // A 33-byte channel name is over the wire cap, even though it encodes.
    let bytes = signed(&alice, 0, join(&"c".repeat(33))).encode();
    assert_eq!(
        SignedTx::decode(&bytes),
        Err(DecodeError::TooLong {
            field: "channel",
            len: 33,
            max: MAX_NAME_LEN
        })
    );
    let kind = TxKind::CreateChannel {
        name: "c".into(),
        description: "d".repeat(1025),
        invite_only: false,
    };
    let bytes = signed(&alice, 0, kind).encode();
    assert!(matches!(
        SignedTx::decode(&bytes),
        Err(DecodeError::TooLong {
            field: "description",
            ..
        })
    ));

    let huge = vec![0u8; MAX_TX_BYTES + 1];
    assert!(matches!(SignedTx::decode(&huge), Err(DecodeError::TooLarge { .. })));

    // A length prefix claiming 4 GiB is refused without allocating it.
    let mut bytes = signed(&alice, 0, join("general")).encode();
    let len_at = TX_MAGIC.len() + 32 + 8 + 1;
    bytes[len_at..len_at + 4].copy_from_slice(&[0xff; 4]);
    assert!(matches!(SignedTx::decode(&bytes), Err(DecodeError::TooLong { .. })));
}

#[test]
fn invalid_utf8_is_refused() {
    let mut bytes = signed(&ident(1), 0, join("ab")).encode();
    bytes[55] = 0xff;
    assert_eq!(
        SignedTx::decode(&bytes),
        Err(DecodeError::InvalidUtf8 { field: "channel" })
    );
}

#[test]
fn block_round_trips_and_its_hash_covers_the_txs() {
    let mut state = fresh();
    let alice = ident(1);
    let txs = vec![register_tx(&alice, "alice", 0), signed(&alice, 1, join("nowhere"))];
    let block = state.propose_block(txs, 2_000, key(&validator())).block;
    assert_eq!(block.txs.len(), 1, "the join to a missing channel was left out");

    let bytes = block.encode();
    assert!(bytes.starts_with(BLOCK_MAGIC));
    let back = Block::decode(&bytes).unwrap();
    assert_eq!(back, block);
    assert_eq!(back.hash(), sha256(&bytes));

    let mut other = block.clone();
    other.txs.clear();
    assert_ne!(other.hash(), block.hash());
    state.apply_block(&block).unwrap();
}

#[test]
fn block_decode_refuses_truncation_trailing_bytes_and_bad_counts() {
    let mut state = fresh();
    let block = state
        .propose_block(vec![register_tx(&ident(1), "alice", 0)], 2_000, key(&validator()))
        .block;
    let bytes = block.encode();
    for cut in 0..bytes.len() {
        assert!(Block::decode(&bytes[..cut]).is_err(), "decoded a prefix of {cut} bytes");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Block::decode(&long), Err(DecodeError::TrailingBytes { extra: 1 }));

    // A count far above the limit is refused before anything is read.
    let count_at = BLOCK_MAGIC.len() + 8 + 32 + 8 + 32 + 32;
    let mut bad = bytes.clone();
    bad[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(Block::decode(&bad), Err(DecodeError::TooLarge { .. })));
    // A count just one too high runs out of input.
    bad[count_at..count_at + 4].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(Block::decode(&bad), Err(DecodeError::Truncated));
    state.apply_block(&block).unwrap();
}

#[test]
fn json_shows_keys_and_hashes_in_hex() {
    let alice = ident(1);
    let tx = register_tx(&alice, "alice", 0);
    let json = serde_json::to_value(&tx).unwrap();
    assert_eq!(json["id"], hex::encode(tx.id()));
    assert_eq!(json["signer"], alice.id());
    assert_eq!(json["kind"]["type"], "register_account");
    assert_eq!(json["kind"]["messaging_key"], alice.messaging_public_hex());
    assert_eq!(json["signature"], hex::encode(tx.signature));

    let (_, genesis_block) = LedgerState::from_genesis(&genesis_with(&[])).unwrap();
    let json = serde_json::to_value(&genesis_block).unwrap();
    for field in ["height", "hash", "parent", "txs"] {
        assert!(json.get(field).is_some(), "chain block JSON lacks {field}");
    }
    assert_eq!(json["hash"], hex::encode(genesis_block.hash()));
}
