//! Envelopes opened together and signatures checked in a batch: each is
//! refused exactly as it would be alone.

use super::*;

#[test]
fn envelopes_opened_together_fail_alone() {
    // Several senders and recipients, among them: a forged signature, a
    // message signed for carol that carol re-sealed to bob, the same with
    // a forged signature (the signature is judged first), and an envelope
    // for someone else's key.
    let (alice, bob, carol, dave) = (ident(1), ident(2), ident(3), ident(5));
    let bob_box = mailbox_id(&bob.identity_public());
    let mut cases: Vec<(&Identity, Envelope, Result<(), MessagingError>)> = Vec::new();
    for (i, (from, to)) in [(&alice, &bob), (&carol, &bob), (&dave, &carol), (&alice, &dave)]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let mut msg = dm(from, to, text(&format!("message {i}")));
        msg.id = [u8::try_from(i).unwrap(); 16];
        cases.push((to, seal(from, &msg, &to.messaging_public(), NOW).unwrap(), Ok(())));
    }
    let signature = |by: &Identity, msg: &DirectMessage| by.sign(&envelope::signing_bytes([msg]));
    let sealed = |by: &Identity, msg: &DirectMessage, signature: [u8; 64]| {
        let msgs = std::slice::from_ref(msg);
        envelope::seal_signed_many(by, msgs, &signature, &bob.messaging_public(), bob_box, NOW).unwrap()
    };
    let msg = dm(&alice, &bob, text("forged"));
    let env = sealed(&alice, &msg, signature(&carol, &msg));
    cases.insert(4, (&bob, env, Err(MessagingError::BadSignature)));
    let for_carol = dm(&alice, &carol, text("for carol"));
    let resealed = sealed(&carol, &for_carol, signature(&alice, &for_carol));
    cases.insert(7, (&bob, resealed, Err(MessagingError::WrongRecipient)));
    let both = sealed(&carol, &for_carol, signature(&carol, &for_carol));
    cases.insert(9, (&bob, both, Err(MessagingError::BadSignature)));
    // The same forgery in the earlier format, each message signed alone.
    let forged = [(&msg, carol.sign(&msg.signing_message()))];
    let env = envelope::seal_each_signed(&alice, &forged, &bob.messaging_public(), bob_box, NOW).unwrap();
    cases.insert(2, (&bob, env, Err(MessagingError::BadSignature)));
    let to_carol = seal(&alice, &for_carol, &bob.messaging_public(), NOW).unwrap();
    cases.insert(10, (&carol, to_carol, Err(MessagingError::Decrypt)));

    let check = |cases: &[(&Identity, Envelope, Result<(), MessagingError>)]| {
        let together = open_all(cases.iter().map(|(to, env, _)| (*to, env)));
        assert_eq!(together.len(), cases.len());
        for ((to, env, expected), got) in cases.iter().zip(together) {
            assert_eq!(got, open(to, env));
            assert_eq!(got.map(|_| ()), *expected);
        }
    };
    check(&cases);
    // Without the forgeries the batch holds, and the misaddressed message
    // is still refused after it.
    cases.retain(|(_, _, expected)| *expected != Err(MessagingError::BadSignature));
    check(&cases);
}

#[test]
fn signatures_checked_together_are_refused_as_alone() {
    let keys: Vec<Identity> = (1..=6).map(ident).collect();
    let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 40 + usize::from(i)]).collect();
    let good: Vec<([u8; 32], &[u8], [u8; 64])> = keys
        .iter()
        .zip(&messages)
        .map(|(k, m)| (k.identity_public(), m.as_slice(), k.sign(m)))
        .collect();
    assert!(wire::verify_signatures(&good).iter().all(Result::is_ok));
    assert!(wire::verify_signatures(&good[..1]).iter().all(Result::is_ok));
    assert!(wire::verify_signatures(&[]).is_empty());

    let mut mixed = good.clone();
    mixed[1].2[5] ^= 1; // a bit of R flipped
    mixed[3].1 = b"another message"; // signed over something else
    mixed[4].0 = keys[0].identity_public(); // someone else's key
                                            // The identity point: a key of small order, which the strict check
                                            // refuses whatever the signature.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    mixed.push((weak, b"x", [0; 64]));
    // Not a point at all.
    mixed.push(([0xff; 32], b"y", good[0].2));
    let verdicts = wire::verify_signatures(&mixed);
    let bad: Vec<usize> = (0..mixed.len()).filter(|i| verdicts[*i].is_err()).collect();
    assert_eq!(bad, vec![1, 3, 4, 6, 7]);
    for (item, verdict) in mixed.iter().zip(&verdicts) {
        assert_eq!(*verdict, wire::verify_signature(&item.0, item.1, &item.2));
    }
    // A non-canonical s (s + l): the strict check refuses it, and so does
    // the batch.
    let mut malleable = good.clone();
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, add) in malleable[2].2[32..].iter_mut().zip(l) {
        let sum = u16::from(*b) + u16::from(add) + carry;
        *b = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    let verdicts = wire::verify_signatures(&malleable);
    let bad: Vec<usize> = (0..malleable.len()).filter(|i| verdicts[*i].is_err()).collect();
    assert_eq!(bad, vec![2]);
}

#[test]
fn a_signature_with_a_small_order_r_is_refused_even_among_good_ones() {
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signature, Signer, SigningKey};
    use sha2::{Digest, Sha512};

    // R = the identity point and s = k·a: the plain equation holds, the
    // strict check refuses it (R of small order), and so must a batch.
    let key = SigningKey::from_bytes(&[9; 32]);
    let public = key.verifying_key().to_bytes();
    let message: &[u8] = b"a signature only its signer can shape";
    let mut r = [0u8; 32];
    r[0] = 1;
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(public)
            .chain_update(message)
            .finalize()
            .into(),
    );
    let s = k * key.to_scalar();
    let mut crafted = [0u8; 64];
    crafted[..32].copy_from_slice(&r);
    crafted[32..].copy_from_slice(s.as_bytes());

    let honest = SigningKey::from_bytes(&[10; 32]);
    let honest_message: &[u8] = b"hello";
    let honest_signature = honest.sign(honest_message);
    // The batch equation alone takes it: this is what the R check is for.
    assert!(ed25519_dalek::verify_batch(
        &[honest_message, message],
        &[honest_signature, Signature::from_bytes(&crafted)],
        &[honest.verifying_key(), key.verifying_key()],
    )
    .is_ok());
    assert_eq!(
        wire::verify_signature(&public, message, &crafted),
        Err(MessagingError::BadSignature)
    );
    let items = [
        (
            honest.verifying_key().to_bytes(),
            honest_message,
            honest_signature.to_bytes(),
        ),
        (public, message, crafted),
        (
            honest.verifying_key().to_bytes(),
            honest_message,
            honest_signature.to_bytes(),
        ),
    ];
    assert_eq!(
        wire::verify_signatures(&items),
        vec![Ok(()), Err(MessagingError::BadSignature), Ok(())]
    );
}
