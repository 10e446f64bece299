//! Round trips, every rejection the formats promise, and property tests
//! that feed random and mutated bytes to every decoder.

use dchat_keyfile::Identity;
use proptest::prelude::*;

use super::*;
use crate::ledger::DecodeError;

mod many;
mod together;

const NOW: u64 = 1_800_000_000_000;

fn ident(seed: u8) -> Identity {
    Identity::from_secrets(&[seed; 32], &[seed.wrapping_add(100); 32])
}

fn dm(from: &Identity, to: &Identity, content: Content) -> DirectMessage {
    DirectMessage {
        id: [7; 16],
        from: "alice".into(),
        from_key: from.identity_public(),
        to: "bob".into(),
        to_key: to.identity_public(),
        seq: 3,
        sent_at_ms: NOW,
        content,
    }
}

/// Opens an envelope that must carry one message.
fn open_one(recipient: &Identity, env: &Envelope) -> Result<Opened, MessagingError> {
    open(recipient, env).map(|mut opened| {
        assert_eq!(opened.len(), 1, "one message in the envelope");
        opened.remove(0)
    })
}

fn text(s: &str) -> Content {
    Content::Text(s.into())
}

fn sealed(text_len: usize) -> (Identity, Identity, DirectMessage, Envelope) {
    let (alice, bob) = (ident(1), ident(2));
    let msg = dm(&alice, &bob, Content::Text("x".repeat(text_len)));
    let env = seal(&alice, &msg, &bob.messaging_public(), NOW + 60_000).unwrap();
    (alice, bob, msg, env)
}

#[test]
fn seal_open_round_trip() {
    let (alice, bob, msg, env) = sealed(1000);
    assert_eq!(env.mailbox, mailbox_id(&bob.identity_public()));
    let decoded = Envelope::decode(&env.encode()).unwrap();
    assert_eq!(decoded, env);
    assert_eq!(decoded.id(), env.id());

    let opened = open_one(&bob, &decoded).unwrap();
    assert_eq!(opened.message, msg);
    assert_eq!(opened.sender_x25519, alice.messaging_public());
    assert!(opened.sender_matches(&alice.identity_public(), &alice.messaging_public()));
    assert!(!opened.sender_matches(&alice.identity_public(), &ident(9).messaging_public()));
    assert!(!opened.sender_matches(&ident(9).identity_public(), &alice.messaging_public()));
}

#[test]
fn largest_text_spans_several_noise_messages() {
    let (_, bob, msg, env) = sealed(MAX_TEXT_BYTES);
    assert!(env.encode().len() <= MAX_ENVELOPE_BYTES);
    assert!(env.ciphertext.len() > 65535, "needs more than one Noise message");
    assert_eq!(
        open_one(&bob, &Envelope::decode(&env.encode()).unwrap())
            .unwrap()
            .message,
        msg
    );
}

#[test]
fn empty_text_and_acknowledgements_round_trip() {
    let (alice, bob) = (ident(1), ident(2));
    for content in [
        text(""),
        Content::Delivered(vec![]),
        Content::Delivered(vec![[1; 16], [2; 16]]),
        Content::Delivered(vec![[3; 16]; MAX_ACK_IDS]),
    ] {
        // An acknowledgement goes back from bob to alice.
        let mut msg = dm(&bob, &alice, content);
        msg.from = "bob".into();
        msg.to = "alice".into();
        let env = seal(&bob, &msg, &alice.messaging_public(), NOW).unwrap();
        assert_eq!(open_one(&alice, &env).unwrap().message, msg);
    }
}

#[test]
fn every_sealing_is_different() {
    let (alice, bob) = (ident(1), ident(2));
    let msg = dm(&alice, &bob, text("same"));
    let a = seal(&alice, &msg, &bob.messaging_public(), NOW).unwrap();
    let b = seal(&alice, &msg, &bob.messaging_public(), NOW).unwrap();
    assert_ne!(a.ciphertext, b.ciphertext, "fresh ephemeral keys");
    assert_ne!(a.id(), b.id());
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let (_, bob, _, env) = sealed(100);
    // Flip a bit in every position past the first frame's length prefix.
    for i in 4..env.ciphertext.len() {
        let mut bad = env.clone();
        bad.ciphertext[i] ^= 0x01;
        assert_eq!(open_one(&bob, &bad), Err(MessagingError::Decrypt), "byte {i}");
    }
}

#[test]
fn tampered_header_is_rejected() {
    let (_, bob, _, env) = sealed(100);
    let mut later = env.clone();
    later.expires_at_ms += 1;
    assert_eq!(
        open_one(&bob, &later),
        Err(MessagingError::Decrypt),
        "prologue binds expiry"
    );
}

#[test]
fn dropped_or_extra_frames_are_rejected() {
    let (_, bob, _, env) = sealed(MAX_TEXT_BYTES);
    let mut r = crate::ledger::codec::Reader::new(&env.ciphertext);
    let first = r.bytes("f", 65535).unwrap().len();
    let mut truncated = env.clone();
    truncated.ciphertext.truncate(4 + first);
    assert!(matches!(
        open_one(&bob, &truncated),
        Err(MessagingError::BadPlaintext(_))
    ));

    let mut extra = env.clone();
    extra.ciphertext.extend_from_slice(&[0, 0, 0, 16]);
    extra.ciphertext.extend_from_slice(&[0; 16]);
    assert!(matches!(open_one(&bob, &extra), Err(MessagingError::BadPlaintext(_))));
}

#[test]
fn envelope_for_another_recipient_is_rejected() {
    let (_, _, _, env) = sealed(10);
    let carol = ident(3);
    assert_eq!(open_one(&carol, &env), Err(MessagingError::WrongRecipient));

    // Re-addressed to carol's mailbox but still encrypted to bob's key.
    let mut redirected = env.clone();
    redirected.mailbox = mailbox_id(&carol.identity_public());
    assert_eq!(open_one(&carol, &redirected), Err(MessagingError::Decrypt));
}

#[test]
fn message_for_another_identity_inside_is_rejected() {
    // Sealed to bob's X25519 key and mailbox, but the signed message names
    // carol: bob must not accept what was written to someone else.
    let (alice, bob, carol) = (ident(1), ident(2), ident(3));
    let msg = dm(&alice, &carol, text("for carol"));
    let mut env = seal(&alice, &msg, &bob.messaging_public(), NOW).unwrap();
    assert_eq!(env.mailbox, mailbox_id(&carol.identity_public()));
    assert_eq!(open_one(&bob, &env), Err(MessagingError::WrongRecipient));
    // Even once a relay moves it to bob's mailbox, the prologue changes.
    env.mailbox = mailbox_id(&bob.identity_public());
    assert_eq!(open_one(&bob, &env), Err(MessagingError::Decrypt));
}

#[test]
fn sealing_with_someone_elses_from_key_is_refused() {
    let (alice, bob, mallory) = (ident(1), ident(2), ident(4));
    let msg = dm(&alice, &bob, text("I am alice"));
    assert_eq!(
        seal(&mallory, &msg, &bob.messaging_public(), NOW),
        Err(MessagingError::SenderKeyMismatch)
    );
}

#[test]
fn signature_by_another_key_is_rejected() {
    let (alice, bob, mallory) = (ident(1), ident(2), ident(4));
    let msg = dm(&alice, &bob, text("hi"));
    let (key, bob_box) = (bob.messaging_public(), mailbox_id(&bob.identity_public()));
    let under = |signature: [u8; 64]| {
        let env = envelope::seal_signed_many(&alice, std::slice::from_ref(&msg), &signature, &key, bob_box, NOW);
        open(&bob, &env.unwrap()).map(|_| ())
    };
    let signing = envelope::signing_bytes([&msg]);
    assert_eq!(under(mallory.sign(&signing)), Err(MessagingError::BadSignature));
    assert_eq!(under(alice.sign(&signing)), Ok(()));
    // A signature over the same fields without the domain tag, or with the
    // earlier format's tag, is refused.
    assert_eq!(under(alice.sign(&msg.encode())), Err(MessagingError::BadSignature));
    assert_eq!(
        under(alice.sign(&msg.signing_message())),
        Err(MessagingError::BadSignature)
    );
    // And in the earlier format, the other way round.
    let each = |signature: [u8; 64]| {
        let env = envelope::seal_each_signed(&alice, &[(&msg, signature)], &key, bob_box, NOW);
        open(&bob, &env.unwrap()).map(|_| ())
    };
    assert_eq!(each(alice.sign(&msg.signing_message())), Ok(()));
    assert_eq!(
        each(mallory.sign(&msg.signing_message())),
        Err(MessagingError::BadSignature)
    );
    assert_eq!(each(alice.sign(&signing)), Err(MessagingError::BadSignature));
}

#[test]
fn mallory_claiming_alices_key_is_caught() {
    // Mallory seals with her own keys but puts alice's key in from_key:
    // seal refuses; a hand-made envelope carrying her own key and alice's
    // name opens but does not match alice's registered keys.
    let (alice, bob, mallory) = (ident(1), ident(2), ident(4));
    let mut msg = dm(&mallory, &bob, text("I am alice"));
    msg.from = "alice".into();
    let env = seal(&mallory, &msg, &bob.messaging_public(), NOW).unwrap();
    let opened = open_one(&bob, &env).unwrap();
    assert!(!opened.sender_matches(&alice.identity_public(), &alice.messaging_public()));
}

#[test]
fn oversize_fields_are_refused_before_sealing() {
    let (alice, bob) = (ident(1), ident(2));
    let mut msg = dm(&alice, &bob, Content::Text("x".repeat(MAX_TEXT_BYTES + 1)));
    assert!(matches!(
        seal(&alice, &msg, &bob.messaging_public(), NOW),
        Err(MessagingError::TooLarge { what: "text", .. })
    ));
    msg.content = text("ok");
    msg.from = "a".repeat(MAX_NAME_BYTES + 1);
    assert!(matches!(
        msg.check_caps(),
        Err(MessagingError::TooLarge { what: "from", .. })
    ));
    msg.from = "alice".into();
    msg.content = Content::Delivered(vec![[0; 16]; MAX_ACK_IDS + 1]);
    assert!(matches!(msg.check_caps(), Err(MessagingError::TooLarge { .. })));
}

#[test]
fn content_hash_is_sha256_of_the_text() {
    let (alice, bob) = (ident(1), ident(2));
    let msg = dm(&alice, &bob, text("hello"));
    assert_eq!(
        hex::encode(msg.content_hash()),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}

#[test]
fn mailbox_id_is_domain_separated() {
    let key = ident(1).identity_public();
    assert_ne!(mailbox_id(&key), crate::ledger::sha256(&key));
    assert_ne!(mailbox_id(&key), mailbox_id(&ident(2).identity_public()));
}

#[test]
fn envelope_decode_rejects_bad_input() {
    let (_, _, _, env) = sealed(10);
    let bytes = env.encode();
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Envelope::decode(&trailing),
        Err(MessagingError::Decode(DecodeError::TrailingBytes { extra: 1 }))
    );
    let mut version = bytes.clone();
    version[ENVELOPE_MAGIC.len() - 1] = b'2';
    assert_eq!(
        Envelope::decode(&version),
        Err(MessagingError::Decode(DecodeError::BadMagic))
    );
    assert_eq!(
        Envelope::decode(&bytes[..bytes.len() - 1]),
        Err(MessagingError::Decode(DecodeError::Truncated))
    );
    assert!(matches!(
        Envelope::decode(&vec![0; MAX_ENVELOPE_BYTES + 1]),
        Err(MessagingError::Decode(DecodeError::TooLarge { .. }))
    ));
    // A ciphertext length over the cap is refused by the cap.
    let mut huge = bytes[..ENVELOPE_MAGIC.len() + 40].to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Envelope::decode(&huge),
        Err(MessagingError::Decode(DecodeError::TooLong {
            field: "ciphertext",
            ..
        }))
    ));
}

#[test]
fn expiry() {
    let (_, _, _, env) = sealed(1);
    assert!(!env.is_expired(NOW));
    assert!(env.is_expired(NOW + 60_000));
}

#[test]
fn fetch_request_round_trip_and_checks() {
    let bob = ident(2);
    let req = FetchRequest::new(&bob, NOW);
    assert_eq!(FetchRequest::decode(&req.encode()).unwrap(), req);
    req.verify(NOW).unwrap();
    req.verify(NOW + MAX_CLOCK_SKEW_MS).unwrap();
    req.verify(NOW - MAX_CLOCK_SKEW_MS).unwrap();
    for now in [NOW + MAX_CLOCK_SKEW_MS + 1, NOW - MAX_CLOCK_SKEW_MS - 1, 0, u64::MAX] {
        assert!(
            matches!(req.verify(now), Err(MessagingError::StaleTimestamp { .. })),
            "{now}"
        );
    }
}

#[test]
fn fetch_request_with_wrong_key_is_rejected() {
    let (bob, mallory) = (ident(2), ident(4));
    // Mallory asks for bob's mailbox with her own key: not her mailbox.
    let mut req = FetchRequest::new(&mallory, NOW);
    req.mailbox = mailbox_id(&bob.identity_public());
    assert_eq!(req.verify(NOW), Err(MessagingError::WrongMailbox));
    // ...or claims bob's key, but cannot sign for it.
    req.identity_key = bob.identity_public();
    assert_eq!(req.verify(NOW), Err(MessagingError::BadSignature));
    // A changed timestamp breaks bob's own signature.
    let mut old = FetchRequest::new(&bob, NOW - 10 * 60_000);
    assert!(matches!(old.verify(NOW), Err(MessagingError::StaleTimestamp { .. })));
    old.timestamp_ms = NOW;
    assert_eq!(old.verify(NOW), Err(MessagingError::BadSignature));
}

#[test]
fn receipt_round_trip_and_checks() {
    let (bob, mallory) = (ident(2), ident(4));
    let receipt = Receipt::new(&bob, vec![[1; 32], [2; 32]]).unwrap();
    assert_eq!(Receipt::decode(&receipt.encode()).unwrap(), receipt);
    receipt.verify().unwrap();

    let mut more = receipt.clone();
    more.envelope_ids.push([3; 32]);
    assert_eq!(more.verify(), Err(MessagingError::BadSignature));

    let mut theirs = Receipt::new(&mallory, vec![[1; 32]]).unwrap();
    theirs.mailbox = receipt.mailbox;
    assert_eq!(theirs.verify(), Err(MessagingError::WrongMailbox));

    assert!(matches!(
        Receipt::new(&bob, vec![[0; 32]; MAX_RECEIPT_IDS + 1]),
        Err(MessagingError::TooLarge { .. })
    ));
    let full = Receipt::new(&bob, vec![[0; 32]; MAX_RECEIPT_IDS]).unwrap();
    assert_eq!(Receipt::decode(&full.encode()).unwrap(), full);
}

#[test]
fn receipt_count_beyond_the_bytes_is_truncated_not_allocated() {
    let bob = ident(2);
    let receipt = Receipt::new(&bob, vec![]).unwrap();
    let mut bytes = receipt.encode();
    let at = RECEIPT_MAGIC.len() + 64;
    bytes[at..at + 4].copy_from_slice(&(MAX_RECEIPT_IDS as u32).to_be_bytes());
    assert_eq!(
        Receipt::decode(&bytes),
        Err(MessagingError::Decode(DecodeError::Truncated))
    );
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Receipt::decode(&bytes),
        Err(MessagingError::Decode(DecodeError::TooLong { .. }))
    ));
}

#[test]
fn post_round_trip_and_checks() {
    let (alice, mallory) = (ident(1), ident(4));
    let post = ChannelPost::create(&alice, [5; 16], "general", "alice", NOW, "hello all").unwrap();
    assert_eq!(ChannelPost::decode(&post.encode()).unwrap(), post);
    post.verify().unwrap();
    assert_eq!(post.content_hash(), crate::ledger::sha256(b"hello all"));

    let mut edited = post.clone();
    edited.text = "hello none".into();
    assert_eq!(edited.verify(), Err(MessagingError::BadSignature));
    let mut moved = post.clone();
    moved.channel = "random".into();
    assert_eq!(moved.verify(), Err(MessagingError::BadSignature));
    let mut stolen = post.clone();
    stolen.signature = mallory.sign(&post.signing_message());
    assert_eq!(stolen.verify(), Err(MessagingError::BadSignature));

    assert!(matches!(
        ChannelPost::create(
            &alice,
            [5; 16],
            "general",
            "alice",
            NOW,
            &"x".repeat(MAX_POST_TEXT_BYTES + 1)
        ),
        Err(MessagingError::TooLarge { what: "text", .. })
    ));
    let big = ChannelPost::create(
        &alice,
        [5; 16],
        "general",
        "alice",
        NOW,
        &"x".repeat(MAX_POST_TEXT_BYTES),
    )
    .unwrap();
    assert!(big.encode().len() <= MAX_POST_BYTES);
    assert_eq!(ChannelPost::decode(&big.encode()).unwrap(), big);

    let mut trailing = post.encode();
    trailing.push(1);
    assert!(matches!(
        ChannelPost::decode(&trailing),
        Err(MessagingError::Decode(DecodeError::TrailingBytes { .. }))
    ));
}

#[test]
fn message_ids_grow_with_time_and_are_unique_by_chance() {
    let now = crate::p2p::now_ms();
    assert_ne!(new_message_id(now).unwrap(), new_message_id(now).unwrap());
    // Same millisecond: the 80 random bits tell them apart.
    let same: std::collections::HashSet<[u8; 16]> = (0..1000).map(|_| new_message_id(NOW).unwrap()).collect();
    assert_eq!(same.len(), 1000);
    assert!(same.iter().all(|id| id[..6] == NOW.to_be_bytes()[2..]));
    // A later millisecond sorts after every id of an earlier one.
    let later = new_message_id(NOW + 1).unwrap();
    assert!(same.iter().all(|id| *id < later));
    // 2023-11-14: in the past.
    let past = 1_700_000_000_000;
    assert!(new_message_id(now).unwrap() > new_message_id(past).unwrap());
}

/// Valid encodings of every format, for the mutation property.
fn samples() -> Vec<Vec<u8>> {
    let (alice, bob) = (ident(1), ident(2));
    let env = seal(&alice, &dm(&alice, &bob, text("hi")), &bob.messaging_public(), NOW).unwrap();
    vec![
        env.encode(),
        FetchRequest::new(&bob, NOW).encode(),
        Receipt::new(&bob, vec![[1; 32], [2; 32]]).unwrap().encode(),
        ChannelPost::create(&alice, [5; 16], "general", "alice", NOW, "hi")
            .unwrap()
            .encode(),
    ]
}

/// Every decoder, and `open` on whatever envelope decodes. None may panic.
fn decode_all(bytes: &[u8]) {
    if let Ok(env) = Envelope::decode(bytes) {
        let _ = open(&ident(2), &env);
    }
    let _ = FetchRequest::decode(bytes).map(|r| r.verify(NOW));
    let _ = Receipt::decode(bytes).map(|r| r.verify());
    let _ = ChannelPost::decode(bytes).map(|p| p.verify());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        decode_all(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_encodings(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = samples().swap_remove(which);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if !bytes.is_empty() => { bytes.remove(i); }
                _ => {}
            }
        }
        decode_all(&bytes);
    }

    #[test]
    fn random_ciphertext_in_a_valid_envelope_never_opens(ciphertext in proptest::collection::vec(any::<u8>(), 0..300)) {
        let bob = ident(2);
        let env = Envelope { mailbox: mailbox_id(&bob.identity_public()), expires_at_ms: NOW, ciphertext };
        prop_assert!(open(&bob, &env).is_err());
    }

    #[test]
    fn posts_round_trip(text in ".{0,200}", channel in "[a-z]{1,32}", at in any::<u64>()) {
        let post = ChannelPost::create(&ident(1), [9; 16], &channel, "alice", at, &text).unwrap();
        prop_assert_eq!(ChannelPost::decode(&post.encode()).unwrap(), post.clone());
        prop_assert!(post.verify().is_ok());
    }
}
