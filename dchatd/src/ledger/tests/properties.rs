//! Property tests: decoding never panics and accepts only canonical bytes;
//! any transaction round-trips; random transaction streams are applied
//! identically by two states and never leave a rejected change behind.

use proptest::prelude::*;

use super::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
}

fn role() -> impl Strategy<Value = StakeRole> {
    prop_oneof![Just(StakeRole::Validator), Just(StakeRole::Relay)]
}

fn kind() -> impl Strategy<Value = TxKind> {
    prop_oneof![
        (name(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(name, identity_key, messaging_key)| {
            TxKind::RegisterAccount {
                name,
                identity_key,
                messaging_key,
            }
        }),
        (name(), ".{0,40}", any::<bool>()).prop_map(|(name, description, invite_only)| {
            TxKind::CreateChannel {
                name,
                description,
                invite_only,
            }
        }),
        name().prop_map(|channel| TxKind::JoinChannel { channel }),
        name().prop_map(|channel| TxKind::LeaveChannel { channel }),
        (name(), name()).prop_map(|(channel, account)| TxKind::InviteToChannel { channel, account }),
        (role(), any::<u64>()).prop_map(|(role, amount)| TxKind::Stake { role, amount }),
        (role(), any::<u64>()).prop_map(|(role, amount)| TxKind::Unstake { role, amount }),
        (any::<[u8; 32]>(), any::<u32>())
            .prop_map(|(merkle_root, count)| TxKind::AnchorMessages { merkle_root, count }),
    ]
}

/// Few, colliding names and small amounts, so random streams hit the rules
/// rather than bounce off unknown names. Signers 1 and 2 start registered
/// as "a" and "b"; signer 3 does not, and may register as any of them.
fn stream_kind(signer: u8) -> impl Strategy<Value = TxKind> {
    let channel = || prop_oneof![Just("x"), Just("y"), Just("X")].prop_map(str::to_string);
    let account = || prop_oneof![Just("a"), Just("b"), Just("c"), Just("B")].prop_map(str::to_string);
    let me = ident(signer);
    let register = account().prop_map(move |name| TxKind::RegisterAccount {
        name,
        identity_key: key(&me),
        messaging_key: messaging_key(&me),
    });
    prop_oneof![
        1 => register,
        2 => (channel(), any::<bool>()).prop_map(|(name, invite_only)| TxKind::CreateChannel {
            name,
            description: String::new(),
            invite_only
        }),
        3 => channel().prop_map(|channel| TxKind::JoinChannel { channel }),
        2 => channel().prop_map(|channel| TxKind::LeaveChannel { channel }),
        2 => (channel(), account()).prop_map(|(channel, account)| TxKind::InviteToChannel { channel, account }),
        2 => (role(), 0u64..700).prop_map(|(role, amount)| TxKind::Stake { role, amount }),
        2 => (role(), 0u64..700).prop_map(|(role, amount)| TxKind::Unstake { role, amount }),
    ]
}

/// A stream of (signer, nonce offset, kind): mostly the right nonce, now
/// and then a wrong one.
fn stream() -> impl Strategy<Value = Vec<(u8, u64, TxKind)>> {
    let signer = prop_oneof![3 => Just(1u8), 3 => Just(2u8), 1 => Just(3u8)];
    let step = signer.prop_flat_map(|signer| {
        (
            Just(signer),
            prop_oneof![14 => Just(0u64), 1 => Just(1u64), 1 => Just(u64::MAX)],
            stream_kind(signer),
        )
    });
    proptest::collection::vec(step, 0..30)
}

proptest! {
    #[test]
    fn any_tx_round_trips(k in kind(), nonce in any::<u64>(), signer in 1u8..=5) {
        let tx = signed(&ident(signer), nonce, k);
        let bytes = tx.encode();
        prop_assert_eq!(SignedTx::decode(&bytes), Ok(tx));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SignedTx::decode(&bytes);
        let _ = Block::decode(&bytes);
        let mut tagged = TX_MAGIC.to_vec();
        tagged.extend_from_slice(&bytes);
        let _ = SignedTx::decode(&tagged);
        let mut tagged = BLOCK_MAGIC.to_vec();
        tagged.extend_from_slice(&bytes);
        let _ = Block::decode(&tagged);
    }

    /// Flip, drop or insert bytes of a valid encoding: whatever still
    /// decodes must encode back to exactly the same bytes.
    #[test]
    fn only_canonical_bytes_decode(
        which in 0usize..8,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let alice = ident(1);
        let mut bytes = signed(&alice, 7, every_kind(&alice).swap_remove(which)).encode();
        for (at, value, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = value,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, value),
            }
        }
        if let Ok(tx) = SignedTx::decode(&bytes) {
            prop_assert_eq!(tx.encode(), bytes);
        }
    }

}

proptest! {
    // Strict signature verification costs ~20 ms in an unoptimized test
    // build (~50 µs in release), and each step verifies three times; a
    // dozen cases of up to 30 steps keep this test to seconds.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn random_streams_apply_deterministically(steps in stream()) {
        let genesis = genesis_with(&[(&ident(1), 1000), (&ident(2), 500)]);
        let (mut a, _) = LedgerState::from_genesis(&genesis).unwrap();
        register(&mut a, &ident(1), "a");
        register(&mut a, &ident(2), "b");
        let mut b = a.clone();
        for (signer, offset, k) in steps {
            let id = ident(signer);
            let nonce = a.next_nonce(&key(&id)).wrapping_add(offset);
            let tx = signed(&id, nonce, k);
            let before = a.clone();
            let checked = a.check(&tx);
            let ra = a.apply(&tx);
            let rb = b.apply(&tx);
            prop_assert_eq!(checked, ra.as_ref().map(|_| ()).map_err(Clone::clone));
            prop_assert_eq!(&ra, &rb);
            if ra.is_err() {
                prop_assert_eq!(&a, &before);
            }

            prop_assert_eq!(a.state_root(), b.state_root());
            let supply = |s: &LedgerState| {
                s.balances.values().chain(s.stakes.values()).sum::<u64>()
            };
            prop_assert_eq!(supply(&a), 1000 + 500 + 100, "coins are neither made nor lost");
        }
    }
}
