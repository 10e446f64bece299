//! Envelopes that carry several messages of one conversation: they open
//! whole and in order under one signature, every way to mix or overfill
//! one is refused, and envelopes of the earlier format (a signature for
//! each message) still open.

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

/// The one signature of `msgs`, as `seal_many` makes it.
fn signature(from: &Identity, msgs: &[DirectMessage]) -> [u8; 64] {
    from.sign(&envelope::signing_bytes(msgs))
}

/// Each message's own signature, as the builds before ADR 0018 sealed.
fn each_signed<'a>(from: &Identity, msgs: &'a [DirectMessage]) -> Vec<(&'a DirectMessage, [u8; 64])> {
    msgs.iter().map(|m| (m, from.sign(&m.signing_message()))).collect()
}

/// `msgs` sealed by `from` under `from`'s signature(s) as they are, in
/// both formats: (under one signature, each signed alone).
fn both_formats(from: &Identity, to: &Identity, msgs: &[DirectMessage]) -> [Envelope; 2] {
    let (key, mailbox) = (to.messaging_public(), mailbox_id(&to.identity_public()));
    [
        envelope::seal_signed_many(from, msgs, &signature(from, msgs), &key, mailbox, NOW).unwrap(),
        envelope::seal_each_signed(from, &each_signed(from, msgs), &key, mailbox, NOW).unwrap(),
    ]
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
        assert!(o.sender_matches(&alice.identity_public(), &alice.messaging_public()));
    }
    let one = seal_many(&alice, &msgs[..1], &bob.messaging_public(), NOW).unwrap();
    assert_eq!(open_one(&bob, &one).unwrap().message, msgs[0]);
}

#[test]
fn encoded_len_is_the_length_of_the_encoding() {
    let (alice, bob) = (ident(1), ident(2));
    for content in [text(""), text("héllo"), Content::Delivered(vec![[1; 16]; 3])] {
        let msg = dm(&alice, &bob, content);
        assert_eq!(msg.encoded_len(), msg.encode().len());
    }
    let mut shortest = dm(&alice, &bob, text(""));
    (shortest.from, shortest.to) = (String::new(), String::new());
    assert_eq!(shortest.encode().len(), envelope::MIN_DM_BYTES);
}

#[test]
fn an_envelope_carries_one_signature_and_the_earlier_format_still_opens() {
    let (alice, bob) = (ident(1), ident(2));
    let msgs = conversation(&alice, &bob, MAX_DMS_PER_ENVELOPE);
    let env = seal_many(&alice, &msgs, &bob.messaging_public(), NOW).unwrap();
    // However many messages, the recipient checks one signature.
    assert_eq!(decrypt(&bob, &env).unwrap().signature_count(), 1);
    assert_eq!(open(&bob, &env).unwrap().len(), MAX_DMS_PER_ENVELOPE);

    // What the earlier builds sealed: one message alone (ADR 0009) or
    // several each signed (ADR 0017), as still found in outboxes and
    // relays' mailboxes.
    for n in [1, 4] {
        let [together, each] = both_formats(&alice, &bob, &msgs[..n]);
        assert_eq!(decrypt(&bob, &together).unwrap().signature_count(), 1);
        assert_eq!(decrypt(&bob, &each).unwrap().signature_count(), n);
        for env in [together, each] {
            let opened = open(&bob, &env).unwrap();
            assert_eq!(opened.into_iter().map(|o| o.message).collect::<Vec<_>>(), msgs[..n]);
        }
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
    assert!(big.iter().map(DirectMessage::encoded_len).sum::<usize>() > MAX_MESSAGE_BYTES_PER_ENVELOPE);
    assert!(matches!(
        seal_many(&alice, &big, &key, NOW),
        Err(MessagingError::TooLarge { .. })
    ));
    assert!(seal_many(&alice, &big[..1], &key, NOW).is_ok());
}

#[test]
fn a_crafted_envelope_that_mixes_ends_or_overfills_is_refused() {
    let (alice, bob, carol) = (ident(1), ident(2), ident(3));
    let bad_plaintext = |env: &Envelope| matches!(open(&bob, env), Err(MessagingError::BadPlaintext(_)));

    // A message for carol slipped in between two for bob.
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[1].to_key = carol.identity_public();
    assert!(both_formats(&alice, &bob, &msgs).iter().all(bad_plaintext));
    // …or one that claims another sender.
    let mut msgs = conversation(&alice, &bob, 3);
    msgs[2].from = "mallory".into();
    assert!(both_formats(&alice, &bob, &msgs).iter().all(bad_plaintext));

    // One message more than the cap.
    let msgs = conversation(&alice, &bob, MAX_DMS_PER_ENVELOPE + 1);
    assert!(both_formats(&alice, &bob, &msgs).iter().all(bad_plaintext));
    for env in both_formats(&alice, &bob, &msgs[1..]) {
        assert_eq!(open(&bob, &env).unwrap().len(), MAX_DMS_PER_ENVELOPE);
    }

    // No message at all.
    assert!(both_formats(&alice, &bob, &[]).iter().all(bad_plaintext));
}

#[test]
fn one_bad_signature_refuses_its_whole_envelope_and_no_other() {
    let (alice, bob) = (ident(1), ident(2));
    let (key, bob_box) = (bob.messaging_public(), mailbox_id(&bob.identity_public()));
    let msgs = conversation(&alice, &bob, 4);
    let forged = envelope::seal_signed_many(&alice, &msgs, &signature(&ident(3), &msgs), &key, bob_box, NOW).unwrap();
    // In the earlier format, one of four signatures forged.
    let mut each = each_signed(&alice, &msgs);
    each[2].1 = ident(3).sign(&msgs[2].signing_message());
    let one_forged = envelope::seal_each_signed(&alice, &each, &key, bob_box, NOW).unwrap();
    let good = seal_many(&alice, &msgs, &key, NOW).unwrap();
    let single = seal(&alice, &msgs[0], &key, NOW).unwrap();
    let [_, good_each] = both_formats(&alice, &bob, &msgs);
    // Sealed to another key: it fails before its signatures are read, and
    // the envelopes after it must still get their own verdicts.
    let [_, undecryptable] = both_formats(&alice, &ident(3), &msgs);
    let undecryptable = Envelope {
        mailbox: bob_box,
        ..undecryptable
    };

    assert_eq!(open(&bob, &forged), Err(MessagingError::BadSignature));
    assert_eq!(open(&bob, &one_forged), Err(MessagingError::BadSignature));
    let envelopes = [
        &good,
        &forged,
        &single,
        &one_forged,
        &undecryptable,
        &good_each,
        &forged,
    ];
    let together = open_all(envelopes.iter().map(|env| (&bob, *env)));
    let lens: Vec<_> = together.iter().map(|got| got.as_ref().map(Vec::len)).collect();
    let bad = Err(&MessagingError::BadSignature);
    assert_eq!(
        lens,
        [Ok(4), bad, Ok(1), bad, Err(&MessagingError::Decrypt), Ok(4), bad]
    );
    for (env, got) in envelopes.into_iter().zip(together) {
        assert_eq!(got, open(&bob, env));
    }
}
