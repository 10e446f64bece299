//! Accounts and channels: the happy paths and the invitation rules.

use super::*;

fn members(s: &LedgerState, channel: &str) -> Vec<String> {
    s.channel(channel).unwrap().members.iter().cloned().collect()
}

#[test]
fn register_records_keys_and_height_and_gives_no_funds() {
    let mut s = fresh();
    let carol = ident(3);
    let applied = send(
        &mut s,
        &carol,
        TxKind::RegisterAccount {
            name: "Carol".into(),
            identity_key: key(&carol),
            messaging_key: messaging_key(&carol),
        },
    )
    .unwrap();
    assert_eq!(
        applied.event,
        Event::AccountRegistered {
            account: "carol".into()
        }
    );
    assert_eq!(applied.nonce, 0);
    assert_eq!(applied.height, 1);

    let account = s.account("CAROL").unwrap();
    assert_eq!(account.name, "Carol", "the registered spelling is kept");
    assert_eq!(account.identity_key, key(&carol));
    assert_eq!(account.messaging_key, messaging_key(&carol));
    assert_eq!(account.registered_at, 1);
    assert_eq!(s.account_by_key(&key(&carol)), Some(account));
    assert_eq!(s.next_nonce(&key(&carol)), 1);
    assert_eq!(s.balance(&key(&carol)), 0);
}

#[test]
fn create_join_leave() {
    let mut s = fresh();
    let (alice, bob) = (ident(1), ident(2));
    register(&mut s, &alice, "alice");
    register(&mut s, &bob, "bob");

    let kind = TxKind::CreateChannel {
        name: "General".into(),
        description: "chat".into(),
        invite_only: false,
    };
    let applied = send(&mut s, &alice, kind).unwrap();
    assert_eq!(
        applied.event,
        Event::ChannelCreated {
            channel: "general".into(),
            owner: "alice".into()
        }
    );
    let c = s.channel("general").unwrap();
    assert_eq!(
        (c.name.as_str(), c.owner.as_str(), c.description.as_str()),
        ("General", "alice", "chat")
    );
    assert!(!c.invite_only);
    assert_eq!(members(&s, "general"), ["alice"], "the owner is the first member");

    let applied = send(&mut s, &bob, join("GENERAL")).unwrap();
    assert_eq!(
        applied.event,
        Event::ChannelJoined {
            channel: "general".into(),
            account: "bob".into()
        }
    );
    assert_eq!(members(&s, "general"), ["alice", "bob"]);

    let applied = send(&mut s, &bob, leave("general")).unwrap();
    assert_eq!(
        applied.event,
        Event::ChannelLeft {
            channel: "general".into(),
            account: "bob".into()
        }
    );
    assert_eq!(members(&s, "general"), ["alice"]);

    // Leaving is not forever on an open channel.
    send(&mut s, &bob, join("general")).unwrap();
    assert_eq!(members(&s, "general"), ["alice", "bob"]);
    assert_eq!(s.channels().count(), 1);
}

#[test]
fn invite_only_join_needs_the_owners_invitation() {
    let mut s = fresh();
    let (alice, bob, carol) = (ident(1), ident(2), ident(3));
    register(&mut s, &alice, "alice");
    register(&mut s, &bob, "bob");
    register(&mut s, &carol, "carol");
    create_channel(&mut s, &alice, "secret", true);

    assert_eq!(
        expect_rejected(&mut s, &bob, join("secret")),
        Rejection::NotInvited("secret".into())
    );
    // Only the owner can invite.
    assert_eq!(
        expect_rejected(&mut s, &carol, invite("secret", "bob")),
        Rejection::NotOwner("secret".into())
    );

    let applied = send(&mut s, &alice, invite("secret", "Bob")).unwrap();
    assert_eq!(
        applied.event,
        Event::Invited {
            channel: "secret".into(),
            account: "bob".into()
        }
    );
    assert!(s.channel("secret").unwrap().invited.contains("bob"));
    // The invitation is bob's, not carol's.
    assert_eq!(
        expect_rejected(&mut s, &carol, join("secret")),
        Rejection::NotInvited("secret".into())
    );

    send(&mut s, &bob, join("secret")).unwrap();
    assert_eq!(members(&s, "secret"), ["alice", "bob"]);
    assert!(
        s.channel("secret").unwrap().invited.is_empty(),
        "joining uses up the invitation"
    );

    // After leaving, bob needs a new invitation.
    send(&mut s, &bob, leave("secret")).unwrap();
    assert_eq!(
        expect_rejected(&mut s, &bob, join("secret")),
        Rejection::NotInvited("secret".into())
    );
    send(&mut s, &alice, invite("secret", "bob")).unwrap();
    send(&mut s, &bob, join("secret")).unwrap();
}

#[test]
fn the_owner_may_leave_and_come_back_without_invitation() {
    let mut s = fresh();
    let alice = ident(1);
    register(&mut s, &alice, "alice");
    create_channel(&mut s, &alice, "secret", true);
    send(&mut s, &alice, leave("secret")).unwrap();
    assert!(members(&s, "secret").is_empty());
    assert_eq!(
        s.channel("secret").unwrap().owner,
        "alice",
        "leaving does not give up ownership"
    );
    send(&mut s, &alice, join("secret")).unwrap();
    assert_eq!(members(&s, "secret"), ["alice"]);
}

#[test]
fn names_are_unique_across_case_for_channels_too() {
    let mut s = fresh();
    let (alice, bob) = (ident(1), ident(2));
    register(&mut s, &alice, "alice");
    register(&mut s, &bob, "bob");
    create_channel(&mut s, &alice, "Rust", false);
    let kind = TxKind::CreateChannel {
        name: "rUST".into(),
        description: String::new(),
        invite_only: true,
    };
    assert_eq!(
        expect_rejected(&mut s, &bob, kind),
        Rejection::ChannelTaken("rUST".into())
    );
    assert_eq!(s.channel("rust").unwrap().owner, "alice");
}
