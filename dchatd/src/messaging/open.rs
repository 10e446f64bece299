//! Opening envelopes: [`decrypt`] one (its messages parsed, one sender's
//! to one recipient), check its sender against the chain if the caller
//! can ([`Unverified::sender_matches`]), then [`verify_all`] the
//! signatures of many together. [`open`] and [`open_all`] do both steps
//! for callers with no chain. Sealing and the formats are in
//! [`super::envelope`].

use dchat_keyfile::Identity;

use super::envelope::{
    builder, mailbox_id, prologue, signing_bytes, DirectMessage, Envelope, MAX_DMS_PER_ENVELOPE,
    MAX_SIGNED_BYTES_PER_ENVELOPE, NOISE_MAX_MSG, ONE_SIGNATURE, SIGNATURE_LEN,
};
use super::wire::{verify_signatures, MessagingError};
use crate::ledger::codec::Reader;

/// A verified, decrypted direct message (one of those its envelope carried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub message: DirectMessage,
    /// The sender's X25519 key, as authenticated by Noise.
    pub sender_x25519: [u8; 32],
}

impl Opened {
    /// True when the keys this message came with are the ones the chain
    /// registered for the account it claims to be from. Callers must check
    /// this before showing the message as from `message.from`.
    pub fn sender_matches(&self, registered_identity: &[u8; 32], registered_x25519: &[u8; 32]) -> bool {
        self.message.from_key == *registered_identity && self.sender_x25519 == *registered_x25519
    }
}

/// Decrypts and verifies an envelope addressed to `recipient`: its
/// messages, in the order sealed. Does not check expiry or the chain: see
/// [`Envelope::is_expired`] and [`Opened::sender_matches`].
pub fn open(recipient: &Identity, env: &Envelope) -> Result<Vec<Opened>, MessagingError> {
    open_all([(recipient, env)])
        .pop()
        .unwrap_or(Err(MessagingError::Decrypt))
}

/// [`open`] for several envelopes, each with its recipient, in order: a
/// [`decrypt`] of each, then [`verify_all`].
pub fn open_all<'a>(
    envelopes: impl IntoIterator<Item = (&'a Identity, &'a Envelope)>,
) -> Vec<Result<Vec<Opened>, MessagingError>> {
    verify_all(
        envelopes
            .into_iter()
            .map(|(recipient, env)| decrypt(recipient, env))
            .collect(),
    )
}

/// Checks the signatures of `decrypted`'s envelopes together
/// ([`verify_signatures`]), so a bad one is refused alone, with the error
/// [`open`] gives; an envelope is taken whole or refused whole. An error
/// in, from [`decrypt`], comes out as it is.
pub fn verify_all(decrypted: Vec<Result<Unverified, MessagingError>>) -> Vec<Result<Vec<Opened>, MessagingError>> {
    let checks: Vec<Vec<SignatureCheck>> = decrypted.iter().flatten().map(Unverified::signatures).collect();
    let batch: Vec<([u8; 32], &[u8], [u8; 64])> = checks
        .iter()
        .flatten()
        .map(|(key, signed, signature)| (*key, signed.as_slice(), *signature))
        .collect();
    let mut verdicts = verify_signatures(&batch).into_iter();
    let mut counts = checks.iter().map(Vec::len);
    decrypted
        .into_iter()
        .map(|d| {
            let d = d?;
            // Every verdict of this envelope is taken, so the next
            // envelope's start where they should.
            let n = counts.next().unwrap_or(0);
            let verdicts: Vec<_> = verdicts.by_ref().take(n).collect();
            if n == 0 || verdicts.len() != n {
                return Err(MessagingError::BadSignature);
            }
            verdicts.into_iter().collect::<Result<Vec<()>, _>>()?;
            d.addressed()
        })
        .collect()
}

/// One signature to check: the key, the bytes signed, the signature.
type SignatureCheck = ([u8; 32], Vec<u8>, [u8; 64]);

/// How an envelope's messages were signed.
enum Signed {
    /// One signature over `DMS_SIGN_DOMAIN` and every message, in order
    /// ([`signing_bytes`]).
    Together([u8; 64]),
    /// The earlier format: each message's own signature, in order.
    Each(Vec<[u8; 64]>),
}

/// An envelope decrypted and its messages parsed, their signatures and
/// recipient key not checked yet. Its sender (shared by every message)
/// can be checked against the chain first ([`Unverified::sender_matches`]),
/// which costs nothing beside the signature checks: anyone who knows a
/// recipient's X25519 key can make an envelope that decrypts.
pub struct Unverified {
    messages: Vec<DirectMessage>,
    signed: Signed,
    sender_x25519: [u8; 32],
    own_key: [u8; 32],
}

impl Unverified {
    /// The account name every message claims to be from.
    pub fn from(&self) -> &str {
        // decrypt never makes one without a message.
        self.messages.first().map_or("", |m| m.from.as_str())
    }

    /// As [`Opened::sender_matches`], for every message at once.
    pub fn sender_matches(&self, registered_identity: &[u8; 32], registered_x25519: &[u8; 32]) -> bool {
        self.messages
            .first()
            .is_some_and(|m| m.from_key == *registered_identity)
            && self.sender_x25519 == *registered_x25519
    }

    /// How many signatures [`verify_all`] checks for it: one, or one per
    /// message in the format before ADR 0018.
    pub fn signature_count(&self) -> usize {
        match &self.signed {
            Signed::Together(_) => 1,
            Signed::Each(signatures) => signatures.len(),
        }
    }

    /// What its signatures are checked against: (key, signed bytes,
    /// signature) for each, one unless it is of the earlier format.
    fn signatures(&self) -> Vec<SignatureCheck> {
        let key = self.messages.first().map_or([0; 32], |m| m.from_key);
        match &self.signed {
            Signed::Together(signature) => vec![(key, signing_bytes(&self.messages), *signature)],
            Signed::Each(signatures) => self
                .messages
                .iter()
                .zip(signatures)
                .map(|(m, signature)| (m.from_key, m.signing_message(), *signature))
                .collect(),
        }
    }

    /// The last check, once the signatures hold. The messages share their
    /// recipient ([`decrypt`] checks), so one comparison covers them all.
    fn addressed(self) -> Result<Vec<Opened>, MessagingError> {
        if self.messages.first().is_none_or(|m| m.to_key != self.own_key) {
            return Err(MessagingError::WrongRecipient);
        }
        let sender_x25519 = self.sender_x25519;
        Ok(self
            .messages
            .into_iter()
            .map(|message| Opened { message, sender_x25519 })
            .collect())
    }
}

/// Decrypts an envelope addressed to `recipient` and parses its messages
/// (one sender's, to one recipient, at most [`MAX_DMS_PER_ENVELOPE`]);
/// [`verify_all`] then checks their signatures.
pub fn decrypt(recipient: &Identity, env: &Envelope) -> Result<Unverified, MessagingError> {
    let own_key = recipient.identity_public();
    if env.mailbox != mailbox_id(&own_key) {
        return Err(MessagingError::WrongRecipient);
    }
    let decrypt = |_: snow::Error| MessagingError::Decrypt;
    let secret = recipient.messaging_secret();
    let prologue = prologue(&env.mailbox, env.expires_at_ms);
    let mut handshake = builder()?
        .local_private_key(&secret[..])
        .map_err(decrypt)?
        .prologue(&prologue)
        .map_err(decrypt)?
        .build_responder()
        .map_err(decrypt)?;

    let mut frames = Reader::new(&env.ciphertext);
    // A Noise message decrypts to fewer bytes than it has.
    let mut buf = vec![0u8; env.ciphertext.len().min(NOISE_MAX_MSG)];
    let first = frames.bytes("noise message", NOISE_MAX_MSG)?;
    let n = handshake.read_message(first, &mut buf).map_err(decrypt)?;
    let sender_x25519: [u8; 32] = handshake
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or(MessagingError::Decrypt)?;
    let mut plain = buf[..n].to_vec();
    let Some(len) = plain.first_chunk::<4>() else {
        return Err(MessagingError::BadPlaintext("shorter than its length prefix"));
    };
    let word = u32::from_be_bytes(*len);
    let together = word & ONE_SIGNATURE != 0;
    let body_len = usize::try_from(word & !ONE_SIGNATURE).unwrap_or(usize::MAX);
    if body_len > MAX_SIGNED_BYTES_PER_ENVELOPE {
        return Err(MessagingError::BadPlaintext("length over the message cap"));
    }
    let total = 4 + body_len;
    let mut transport = handshake.into_transport_mode().map_err(decrypt)?;
    while frames.remaining() > 0 {
        if plain.len() >= total {
            return Err(MessagingError::BadPlaintext("frames after the end of the message"));
        }
        let frame = frames.bytes("noise message", NOISE_MAX_MSG)?;
        let n = transport.read_message(frame, &mut buf).map_err(decrypt)?;
        plain.extend_from_slice(&buf[..n]);
    }
    if plain.len() != total {
        return Err(MessagingError::BadPlaintext("length differs from its prefix"));
    }

    let (messages, signed) = if together {
        read_together(&plain[4..])?
    } else {
        read_each(&plain[4..])?
    };
    Ok(Unverified {
        messages,
        signed,
        sender_x25519,
        own_key,
    })
}

/// The messages of a plaintext under one signature, and the signature.
fn read_together(plain: &[u8]) -> Result<(Vec<DirectMessage>, Signed), MessagingError> {
    let mut r = Reader::new(plain);
    let mut messages = Messages::default();
    // Every message is longer than a signature, so what is left at the
    // end of one decides whether another follows.
    while r.remaining() > SIGNATURE_LEN {
        messages.push(DirectMessage::read(&mut r)?)?;
    }
    let signature: [u8; 64] = r.array()?;
    r.finish()?;
    Ok((messages.done()?, Signed::Together(signature)))
}

/// The messages of a plaintext of the earlier format, each with its own
/// signature.
fn read_each(plain: &[u8]) -> Result<(Vec<DirectMessage>, Signed), MessagingError> {
    let mut r = Reader::new(plain);
    let mut messages = Messages::default();
    let mut signatures = Vec::new();
    while r.remaining() > 0 {
        messages.push(DirectMessage::read(&mut r)?)?;
        signatures.push(r.array()?);
    }
    r.finish()?;
    Ok((messages.done()?, Signed::Each(signatures)))
}

/// The messages of one envelope as they are read: one sender's to one
/// recipient, at least one and at most [`MAX_DMS_PER_ENVELOPE`].
#[derive(Default)]
struct Messages(Vec<DirectMessage>);

impl Messages {
    fn push(&mut self, message: DirectMessage) -> Result<(), MessagingError> {
        if self.0.len() == MAX_DMS_PER_ENVELOPE {
            return Err(MessagingError::BadPlaintext("more messages than an envelope may carry"));
        }
        if self.0.first().is_some_and(|m| !m.same_ends(&message)) {
            return Err(MessagingError::BadPlaintext(
                "messages of one envelope differ in their ends",
            ));
        }
        self.0.push(message);
        Ok(())
    }

    fn done(self) -> Result<Vec<DirectMessage>, MessagingError> {
        if self.0.is_empty() {
            return Err(MessagingError::BadPlaintext("no message"));
        }
        Ok(self.0)
    }
}
