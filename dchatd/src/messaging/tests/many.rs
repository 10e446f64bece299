//! Envelopes that carry several messages of one conversation: they open
//! whole and in order, and every way to mix or overfill one is refused.

use super::*;

/// `n` texts from alice to bob, with ids and sequence numbers 0…n-1.
fn conversation(alice: &Identity, bob: &Identity, n: usize) -> Vec<DirectMessage> {
    (0..n)
        .map(|i| {
            let mut msg = dm(alice, bob, text(&format!("message {i}")));
            msg.id = [u8::try_from(i).unwrap(); 16];
            msg.seq = u64::try_from(i).unwrap();
            msg
        })
        .collect()
}

/// Each message's signature, as `seal_many` would make it.
fn signed<'a>(from: &Identity, msgs: &'a [DirectMessage]) -> Vec<(&'a DirectMessage, [u8; 64])> {
    msgs.iter().map(|m| (m, from.sign(&m.signing_message()))).collect()
}

#[test]
fn several_messages_open_in_the_order_sealed() {
    let (alice, bob) = (ident(1), ident(2));
    let mut msgs = conversation(&alice, &bob, 5);
    msgs[3].content = Content::Delivered(vec![[9; 16], [8; 16]]);
    let env = seal_many(&alice, &msgs, &bob.messaging_public(), NOW).unwrap();
    let opened = open(&bob, &Envelope::decode(&env.encode()).unwrap()).unwrap();
    assert_eq!(
        opened.iter().map(|o| &o.message).collect::<Vec<_>>(),
        msgs.iter().collect::<Vec<_>>()
    );
    for o in &opened {
        assert!(o.message.verify(&o.signature).is_ok());
        assert!(o.sender_matches(&alice.identity_public(), &alice.messaging_public()));
    }
    // One message sealed alone is the single-message format.
    let one = seal_many(&alice, &msgs[..1], &bob.messaging_public(), NOW).unwrap();
    assert_eq!(open_one(&bob, &one).unwrap().message, msgs[0]);
}

#[test]
fn signed_len_is_the_length_in_the_plaintext() {
    let (alice, bob) = (ident(1), ident(2));
    for content in [text(""), text("héllo"), Content::Delivered(vec![[1; 16]; 3])] {
        let msg = dm(&alice, &bob, content);
        assert_eq!(msg.signed_len(), msg.encode().len() + 64);
    }
}

#[test]
fn seal_many_refuses_what_may_not_share_an_envelope() {
    let (alice, bob, carol) = (ident(1), ident(2), ident(3));
    let key = bob.messaging_public();
    assert!(matches!(
        seal_many(&alice, &[] as &[DirectMessage], &key, NOW),
        Err(MessagingError::Seal(_))
    ));

    let mut msgs = conversation(&alice, &bob, 3);
    msgs[2].to_key = carol.identity_public();
    assert!(matches!(
        seal_many(&alice, &msgs, &key, NOW),
        Err(MessagingError::Seal(_))
    ));
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[1].to = "carol".into();
    assert!(matches!(
        seal_many(&alice, &msgs, &key, NOW),
        Err(MessagingError::Seal(_))
    ));
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[1].from_key = carol.identity_public();
    assert_eq!(
        seal_many(&alice, &msgs, &key, NOW),
        Err(MessagingError::SenderKeyMismatch)
    );

    let too_many = conversation(&alice, &bob, MAX_DMS_PER_ENVELOPE + 1);
    assert!(matches!(
        seal_many(&alice, &too_many, &key, NOW),
        Err(MessagingError::TooLarge { .. })
    ));
    assert!(seal_many(&alice, &too_many[..MAX_DMS_PER_ENVELOPE], &key, NOW).is_ok());

    // Two texts that each fit alone but not together.
    let mut big = conversation(&alice, &bob, 2);
    for m in &mut big {
        m.content = text(&"x".repeat(MAX_TEXT_BYTES / 2 + 1));
    }
    assert!(big.iter().map(DirectMessage::signed_len).sum::<usize>() > MAX_SIGNED_BYTES_PER_ENVELOPE);
    assert!(matches!(
        seal_many(&alice, &big, &key, NOW),
        Err(MessagingError::TooLarge { .. })
    ));
    assert!(seal_many(&alice, &big[..1], &key, NOW).is_ok());
}

#[test]
fn a_crafted_envelope_that_mixes_ends_or_overfills_is_refused() {
    let (alice, bob, carol) = (ident(1), ident(2), ident(3));
    let (key, bob_box) = (bob.messaging_public(), mailbox_id(&bob.identity_public()));

    // A message for carol slipped in between two for bob.
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[1].to_key = carol.identity_public();
    let env = envelope::seal_signed_many(&alice, &signed(&alice, &msgs), &key, bob_box, NOW).unwrap();
    assert!(matches!(open(&bob, &env), Err(MessagingError::BadPlaintext(_))));
    // …or one that claims another sender.
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[2].from = "mallory".into();
    let env = envelope::seal_signed_many(&alice, &signed(&alice, &msgs), &key, bob_box, NOW).unwrap();
    assert!(matches!(open(&bob, &env), Err(MessagingError::BadPlaintext(_))));

    // One message more than the cap.
    let msgs = conversation(&alice, &bob, MAX_DMS_PER_ENVELOPE + 1);
    let env = envelope::seal_signed_many(&alice, &signed(&alice, &msgs), &key, bob_box, NOW).unwrap();
    assert!(matches!(open(&bob, &env), Err(MessagingError::BadPlaintext(_))));
    let env = envelope::seal_signed_many(&alice, &signed(&alice, &msgs[1..]), &key, bob_box, NOW).unwrap();
    assert_eq!(open(&bob, &env).unwrap().len(), MAX_DMS_PER_ENVELOPE);

    // No message at all.
    let env = envelope::seal_signed_many(&alice, &[], &key, bob_box, NOW).unwrap();
    assert!(matches!(open(&bob, &env), Err(MessagingError::BadPlaintext(_))));
}

#[test]
fn one_bad_signature_refuses_its_whole_envelope_and_no_other() {
    let (alice, bob) = (ident(1), ident(2));
    let (key, bob_box) = (bob.messaging_public(), mailbox_id(&bob.identity_public()));
    let msgs = conversation(&alice, &bob, 4);
    let mut forged = signed(&alice, &msgs);
    forged[2].1 = ident(3).sign(&msgs[2].signing_message());
    let bad = envelope::seal_signed_many(&alice, &forged, &key, bob_box, NOW).unwrap();
    let good = seal_many(&alice, &msgs, &key, NOW).unwrap();
    let single = seal(&alice, &msgs[0], &key, NOW).unwrap();

    assert_eq!(open(&bob, &bad), Err(MessagingError::BadSignature));
    let together = open_all([(&bob, &good), (&bob, &bad), (&bob, &single), (&bob, &bad)]);
    assert_eq!(together.len(), 4);
    assert_eq!(together[0].as_ref().map(Vec::len), Ok(4));
    assert_eq!(together[1], Err(MessagingError::BadSignature));
    assert_eq!(together[2].as_ref().map(Vec::len), Ok(1));
    assert_eq!(together[3], Err(MessagingError::BadSignature));
    for (env, got) in [&good, &bad, &single, &bad].into_iter().zip(together) {
        assert_eq!(got, open(&bob, env));
    }
}
