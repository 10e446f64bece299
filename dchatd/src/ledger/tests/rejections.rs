//! One test per rule rejection. Each goes through `expect_rejected`, which
//! also asserts that `check` and `apply` agree and that the state did not
//! change. Signatures and nonces are in `signatures.rs`.

use super::*;

#[test]
fn unregistered_signer_is_refused() {
    let mut s = world();
    assert_eq!(
        expect_rejected(&mut s, &ident(9), join("general")),
        Rejection::UnknownSigner
    );
}

#[test]
fn second_registration_of_a_key_is_refused() {
    let mut s = world();
    let kind = TxKind::RegisterAccount {
        name: "alice2".into(),
        identity_key: key(&ident(1)),
        messaging_key: messaging_key(&ident(1)),
    };
    assert_eq!(
        expect_rejected(&mut s, &ident(1), kind),
        Rejection::KeyAlreadyRegistered
    );
}

#[test]
fn taken_name_is_refused_in_any_case() {
    let mut s = world();
    let carol = ident(3);
    let kind = |name: &str| TxKind::RegisterAccount {
        name: name.into(),
        identity_key: key(&carol),
        messaging_key: messaging_key(&carol),
    };
    assert_eq!(
        expect_rejected(&mut s, &carol, kind("alice")),
        Rejection::NameTaken("alice".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &carol, kind("ALICE")),
        Rejection::NameTaken("ALICE".into())
    );
    assert!(s.account("Alice").is_some());
}

#[test]
fn invalid_names_are_refused() {
    let mut s = world();
    let carol = ident(3);
    for name in ["", "-carol", "ca rol", &"c".repeat(33)] {
        let kind = TxKind::RegisterAccount {
            name: name.into(),
            identity_key: key(&carol),
            messaging_key: messaging_key(&carol),
        };
        assert!(
            matches!(expect_rejected(&mut s, &carol, kind), Rejection::InvalidName { .. }),
            "{name:?}"
        );
    }
    let kind = TxKind::CreateChannel {
        name: "#general".into(),
        description: String::new(),
        invite_only: false,
    };
    assert!(matches!(
        expect_rejected(&mut s, &ident(1), kind),
        Rejection::InvalidName { .. }
    ));
    assert!(matches!(
        expect_rejected(&mut s, &ident(1), invite("secret", "b ob")),
        Rejection::InvalidName { .. }
    ));
}

#[test]
fn malformed_transactions_are_refused() {
    let mut s = world();
    let carol = ident(3);
    // identity_key that is not the signer's.
    let kind = TxKind::RegisterAccount {
        name: "carol".into(),
        identity_key: key(&ident(4)),
        messaging_key: messaging_key(&carol),
    };
    assert!(matches!(expect_rejected(&mut s, &carol, kind), Rejection::Malformed(_)));
    // Anchors must cover something, under a real root.
    let empty = TxKind::AnchorMessages {
        merkle_root: [1; 32],
        count: 0,
    };
    assert!(matches!(
        expect_rejected(&mut s, &ident(1), empty),
        Rejection::Malformed(_)
    ));
    let zero_root = TxKind::AnchorMessages {
        merkle_root: [0; 32],
        count: 3,
    };
    assert!(matches!(
        expect_rejected(&mut s, &ident(1), zero_root),
        Rejection::Malformed(_)
    ));
    // Descriptions over the cap.
    let long = TxKind::CreateChannel {
        name: "c".into(),
        description: "d".repeat(1025),
        invite_only: false,
    };
    assert!(matches!(
        expect_rejected(&mut s, &ident(1), long),
        Rejection::Malformed(_)
    ));
}

#[test]
fn anchors_need_a_registered_signer_and_are_recorded() {
    let mut s = world();
    let kind = TxKind::AnchorMessages {
        merkle_root: [5; 32],
        count: 12,
    };
    assert_eq!(
        expect_rejected(&mut s, &ident(9), kind.clone()),
        Rejection::UnknownSigner
    );
    let applied = send(&mut s, &ident(2), kind).unwrap();
    assert_eq!(applied.event, Event::MessagesAnchored { index: 0 });
    assert_eq!(
        s.anchors(),
        &[Anchor {
            signer: key(&ident(2)),
            merkle_root: [5; 32],
            count: 12,
            height: 1
        }]
    );
}

#[test]
fn channel_rejections() {
    let mut s = world();
    let (alice, bob) = (ident(1), ident(2));
    let create = |name: &str| TxKind::CreateChannel {
        name: name.into(),
        description: String::new(),
        invite_only: false,
    };
    assert_eq!(
        expect_rejected(&mut s, &bob, create("General")),
        Rejection::ChannelTaken("General".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, join("nowhere")),
        Rejection::NoSuchChannel("nowhere".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, leave("nowhere")),
        Rejection::NoSuchChannel("nowhere".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, invite("nowhere", "alice")),
        Rejection::NoSuchChannel("nowhere".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, invite("secret", "bob")),
        Rejection::NotOwner("secret".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, join("secret")),
        Rejection::NotInvited("secret".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &alice, join("general")),
        Rejection::AlreadyMember("general".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, leave("general")),
        Rejection::NotMember("general".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &alice, invite("secret", "carol")),
        Rejection::NoSuchAccount("carol".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &alice, invite("general", "bob")),
        Rejection::NotInviteOnly("general".into())
    );
    assert_eq!(
        expect_rejected(&mut s, &alice, invite("secret", "alice")),
        Rejection::AlreadyMember("secret".into())
    );
    send(&mut s, &alice, invite("secret", "bob")).unwrap();
    assert_eq!(
        expect_rejected(&mut s, &alice, invite("secret", "BOB")),
        Rejection::AlreadyInvited("secret".into())
    );
}

#[test]
fn stake_rejections() {
    let mut s = world();
    let (alice, bob) = (ident(1), ident(2));
    let stake = |amount| TxKind::Stake {
        role: StakeRole::Validator,
        amount,
    };
    let unstake = |amount| TxKind::Unstake {
        role: StakeRole::Relay,
        amount,
    };
    assert_eq!(expect_rejected(&mut s, &alice, stake(0)), Rejection::ZeroAmount);
    assert_eq!(expect_rejected(&mut s, &alice, unstake(0)), Rejection::ZeroAmount);
    assert_eq!(
        expect_rejected(&mut s, &alice, stake(1001)),
        Rejection::InsufficientBalance { have: 1000, need: 1001 }
    );
    assert_eq!(
        expect_rejected(&mut s, &bob, stake(1)),
        Rejection::InsufficientBalance { have: 0, need: 1 }
    );
    assert_eq!(
        expect_rejected(&mut s, &alice, unstake(1)),
        Rejection::InsufficientStake {
            role: StakeRole::Relay,
            have: 0,
            need: 1
        }
    );
}
