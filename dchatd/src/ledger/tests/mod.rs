//! Deterministic tests of the ledger: fixed keys, fixed timestamps, no I/O.
//! Shared fixtures live here; each file covers one concern.

mod blocks;
mod channels;
mod encoding;
mod properties;
mod rejections;
mod root;
mod signatures;
mod staking;

use dchat_keyfile::Identity;

use super::*;

pub const CHAIN: &str = "dchat-test";

/// A fixed identity per number, so every run signs the same bytes.
pub fn ident(n: u8) -> Identity {
    Identity::from_secrets(&[n; 32], &[n.wrapping_add(100); 32])
}

pub fn key(id: &Identity) -> [u8; 32] {
    id.signing_key().verifying_key().to_bytes()
}

pub fn messaging_key(id: &Identity) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(id.messaging_public_hex(), &mut out).unwrap();
    out
}

/// The only validator of the test chain.
pub fn validator() -> Identity {
    ident(200)
}

/// Genesis with one validator (stake 100) and the given initial balances.
pub fn genesis_with(balances: &[(&Identity, u64)]) -> Genesis {
    Genesis {
        chain_id: CHAIN.to_string(),
        genesis_time_ms: 1_000,
        block_interval_ms: 100,
        validators: vec![GenesisValidator {
            key: key(&validator()),
            stake: 100,
        }],
        balances: balances
            .iter()
            .map(|(id, amount)| GenesisBalance {
                key: key(id),
                amount: *amount,
            })
            .collect(),
    }
}

/// A fresh state where `ident(1)` holds a balance of 1000.
pub fn fresh() -> LedgerState {
    LedgerState::from_genesis(&genesis_with(&[(&ident(1), 1000)]))
        .unwrap()
        .0
}

pub fn signed(id: &Identity, nonce: u64, kind: TxKind) -> SignedTx {
    SignedTx::create(id, CHAIN, nonce, kind)
}

pub fn register_tx(id: &Identity, name: &str, nonce: u64) -> SignedTx {
    signed(
        id,
        nonce,
        TxKind::RegisterAccount {
            name: name.to_string(),
            identity_key: key(id),
            messaging_key: messaging_key(id),
        },
    )
}

/// Signs `kind` with the signer's next nonce and applies it.
pub fn send(state: &mut LedgerState, id: &Identity, kind: TxKind) -> Result<Applied, Rejection> {
    let tx = signed(id, state.next_nonce(&key(id)), kind);
    state.apply(&tx)
}

/// Like [`send`], but only checks; also asserts that check and apply agree
/// (a rejected check leaves the state as it was).
pub fn expect_rejected(state: &mut LedgerState, id: &Identity, kind: TxKind) -> Rejection {
    let before = state.clone();
    let tx = signed(id, state.next_nonce(&key(id)), kind);
    let checked = state.check(&tx).expect_err("check should reject");
    let applied = state.apply(&tx).expect_err("apply should reject");
    assert_eq!(checked, applied, "check and apply disagree");
    assert_eq!(*state, before, "a rejected transaction changed the state");
    applied
}

pub fn register(state: &mut LedgerState, id: &Identity, name: &str) {
    let kind = TxKind::RegisterAccount {
        name: name.to_string(),
        identity_key: key(id),
        messaging_key: messaging_key(id),
    };
    send(state, id, kind).unwrap();
}

pub fn create_channel(state: &mut LedgerState, owner: &Identity, name: &str, invite_only: bool) {
    let kind = TxKind::CreateChannel {
        name: name.to_string(),
        description: format!("about {name}"),
        invite_only,
    };
    send(state, owner, kind).unwrap();
}

pub fn join(channel: &str) -> TxKind {
    TxKind::JoinChannel {
        channel: channel.to_string(),
    }
}

pub fn leave(channel: &str) -> TxKind {
    TxKind::LeaveChannel {
        channel: channel.to_string(),
    }
}

pub fn invite(channel: &str, account: &str) -> TxKind {
    TxKind::InviteToChannel {
        channel: channel.to_string(),
        account: account.to_string(),
    }
}

/// One transaction of every kind, for encoding tests.
pub fn every_kind(id: &Identity) -> Vec<TxKind> {
    vec![
        TxKind::RegisterAccount {
            name: "alice".into(),
            identity_key: key(id),
            messaging_key: messaging_key(id),
        },
        TxKind::CreateChannel {
            name: "general".into(),
            description: "talk — ü".into(),
            invite_only: true,
        },
        join("general"),
        leave("general"),
        invite("general", "bob"),
        TxKind::Stake {
            role: StakeRole::Validator,
            amount: 500,
        },
        TxKind::Unstake {
            role: StakeRole::Relay,
            amount: u64::MAX,
        },
        TxKind::AnchorMessages {
            merkle_root: [7; 32],
            count: 42,
        },
    ]
}

/// alice (1000 coins) and bob registered; alice owns open "general" and
/// invite-only "secret".
pub fn world() -> LedgerState {
    let mut s = fresh();
    register(&mut s, &ident(1), "alice");
    register(&mut s, &ident(2), "bob");
    create_channel(&mut s, &ident(1), "general", false);
    create_channel(&mut s, &ident(1), "secret", true);
    s
}
