//! Direct messages, the envelopes that carry them, and sealing (opening
//! is [`super::open`]'s).
//!
//! A [`DirectMessage`] is encoded canonically; the messages of an envelope
//! are signed together by the sender's ed25519 key over
//! `"dchat-dms-sig/1" ‖ encoding…`. The signed bytes are then encrypted
//! with Noise `X` (one-way: the sender's static X25519 key travels
//! encrypted and is authenticated by the `ss` DH) to the recipient's
//! published X25519 key. The prologue binds the envelope's header (mailbox
//! and expiry) into the handshake, so a relay that changes either breaks
//! decryption instead of silently re-addressing or extending it.
//!
//! One envelope may carry several messages of one conversation (the same
//! sender and recipient): they share the Noise handshake, so its X25519
//! work is paid once for all of them (ADR 0017), and one signature over
//! all of them, so its ed25519 work is too (ADR 0018). Envelopes of the
//! earlier format, each message signed on its own (ADRs 0009 and 0017),
//! still open: the top bit of the plaintext's length tells the two apart.
//!
//! A Noise message is at most 65535 bytes and a text may be 64 KiB, so the
//! plaintext is cut into the handshake message and, when needed, further
//! transport messages of the same session. Each is written
//! `u32`-length-prefixed into [`Envelope::ciphertext`]; their nonces fix
//! the order, and the leading length makes a dropped tail frame an error
//! rather than a shorter message.
//!
//! ```text
//! message  "dchat-dm/1" id[16] from to…  (see DirectMessage::write)
//! plain    (2^31 | len):u32 message… signature[64]
//!            signature: over "dchat-dms-sig/1" ‖ message…
//!            len: the bytes of the messages and the signature
//! plain    len:u32 (message signature[64])…   (earlier builds; read only)
//!            each signature: over "dchat-dm-sig/1" ‖ message
//! envelope "dchat-env/1" mailbox[32] expires_at_ms:u64 ciphertext:bytes
//! ```

use std::borrow::Borrow;

use dchat_keyfile::Identity;
use snow::params::NoiseParams;

use super::wire::{check_input, check_len, read_array_list, MessagingError, MAX_NAME_BYTES};
use super::x25519::Resolver;
use crate::ledger::codec::{sha256, Reader, Writer};
use crate::ledger::DecodeError;

/// The Noise protocol name. Part of the format: changing it is a new version.
pub const NOISE_PARAMS: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";
/// Tag and version of an encoded [`DirectMessage`].
pub const DM_MAGIC: &[u8] = b"dchat-dm/1";
/// Domain separation of a signature over one message, as the earlier
/// builds sealed them (still read: [`super::open`]).
pub const DM_SIGN_DOMAIN: &[u8] = b"dchat-dm-sig/1";
/// Domain separation of the one signature over every message of an
/// envelope.
pub const DMS_SIGN_DOMAIN: &[u8] = b"dchat-dms-sig/1";
/// Set in the plaintext's length word when one signature covers every
/// message; the earlier format's lengths never reach it.
pub(super) const ONE_SIGNATURE: u32 = 1 << 31;
/// An ed25519 signature's bytes.
pub(super) const SIGNATURE_LEN: usize = 64;
/// Tag and version of an encoded [`Envelope`].
pub const ENVELOPE_MAGIC: &[u8] = b"dchat-env/1";
/// Domain of [`mailbox_id`].
const MAILBOX_DOMAIN: &[u8] = b"dchat-mailbox/1";
/// Domain of the Noise prologue.
const PROLOGUE_DOMAIN: &[u8] = b"dchat-env-prologue/1";

/// Longest text of one message, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most message ids one delivery acknowledgement may carry (as many bytes
/// as the longest text).
pub const MAX_ACK_IDS: usize = MAX_TEXT_BYTES / 16;
/// Largest encoded envelope a relay or recipient accepts.
pub const MAX_ENVELOPE_BYTES: usize = 80 * 1024;

/// Largest Noise message (the spec's limit).
pub(super) const NOISE_MAX_MSG: usize = 65535;
/// AEAD tag added to every encrypted payload.
const TAG_LEN: usize = 16;
/// Handshake message overhead of pattern X: `e` (32), encrypted `s`
/// (32 + tag), and the payload's tag.
const HANDSHAKE_OVERHEAD: usize = 32 + 32 + TAG_LEN + TAG_LEN;
/// Plaintext carried by the handshake message and by each later one.
const FIRST_CHUNK: usize = NOISE_MAX_MSG - HANDSHAKE_OVERHEAD;
const NEXT_CHUNK: usize = NOISE_MAX_MSG - TAG_LEN;

/// Largest signed message: every field at its cap plus the signature. Text
/// and acknowledgements have the same largest size (tag, count, 64 KiB).
const MAX_SIGNED_DM_BYTES: usize =
    DM_MAGIC.len() + 16 + (4 + MAX_NAME_BYTES) + 32 + (4 + MAX_NAME_BYTES) + 32 + 8 + 8 + 1 + 4 + MAX_TEXT_BYTES + 64;
/// Most messages one envelope carries. In the earlier format each cost its
/// recipient a signature check, so this bounded what a forged envelope
/// could make it do; now it bounds the rows one envelope writes.
pub const MAX_DMS_PER_ENVELOPE: usize = 64;
/// Most bytes of signed messages one envelope carries (the plaintext after
/// its length word): as many as the largest single message, so an
/// envelope of several is never larger than one of one could be.
pub const MAX_SIGNED_BYTES_PER_ENVELOPE: usize = MAX_SIGNED_DM_BYTES;
/// Most bytes of message encodings ([`DirectMessage::encoded_len`]) one
/// envelope carries beside its signature.
pub const MAX_MESSAGE_BYTES_PER_ENVELOPE: usize = MAX_SIGNED_BYTES_PER_ENVELOPE - SIGNATURE_LEN;
// The length word's top bit is free to tell the formats apart.
const _: () = assert!(MAX_SIGNED_BYTES_PER_ENVELOPE < ONE_SIGNATURE as usize);
/// The shortest encoded message: empty names and text.
pub(super) const MIN_DM_BYTES: usize = DM_MAGIC.len() + 16 + 4 + 32 + 4 + 32 + 8 + 8 + 1 + 4;
// So what is left of a plaintext under one signature tells whether another
// message follows ([`super::open`]).
const _: () = assert!(MIN_DM_BYTES > SIGNATURE_LEN);

/// Envelope bytes before the ciphertext: tag, mailbox, expiry, length.
const ENVELOPE_HEADER: usize = ENVELOPE_MAGIC.len() + 32 + 8 + 4;
const MAX_CIPHERTEXT_BYTES: usize = MAX_ENVELOPE_BYTES - ENVELOPE_HEADER;

/// What a direct message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text for the recipient to read.
    Text(String),
    /// The recipient's acknowledgement, sent back to the original sender,
    /// that it received (and stored) the messages with these ids.
    Delivered(Vec<[u8; 16]>),
}

/// One direct message, as signed by its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// Chosen by the sender ([`super::new_message_id`]: its time, then
    /// random bits); duplicates are dropped by id.
    pub id: [u8; 16],
    /// The sender's account name.
    pub from: String,
    /// The sender's ed25519 identity key; the signature verifies with it.
    pub from_key: [u8; 32],
    /// The recipient's account name.
    pub to: String,
    /// The recipient's ed25519 identity key; decides the mailbox.
    pub to_key: [u8; 32],
    /// Position in the sender→recipient conversation, from 0.
    pub seq: u64,
    pub sent_at_ms: u64,
    pub content: Content,
}

/// What a relay stores and forwards: who it is for, until when, and bytes
/// only the recipient can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// [`mailbox_id`] of the recipient's identity key.
    pub mailbox: [u8; 32],
    /// After this, relays drop it and the recipient may ignore it.
    pub expires_at_ms: u64,
    /// The Noise messages, each `u32`-length-prefixed.
    pub ciphertext: Vec<u8>,
}

/// The mailbox of an identity: `SHA-256("dchat-mailbox/1" ‖ key)`. Relays
/// index envelopes by it without learning the account name.
pub fn mailbox_id(identity_key: &[u8; 32]) -> [u8; 32] {
    let mut w = Writer::hasher();
    w.raw(MAILBOX_DOMAIN);
    w.raw(identity_key);
    w.finish_hash()
}

impl Content {
    fn check_caps(&self) -> Result<(), MessagingError> {
        match self {
            Content::Text(text) => check_len("text", text.len(), MAX_TEXT_BYTES),
            Content::Delivered(ids) => check_len("delivered ids", ids.len(), MAX_ACK_IDS),
        }
    }
}

impl DirectMessage {
    /// The canonical encoding, without the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    fn write(&self, w: &mut Writer) {
        w.raw(DM_MAGIC);
        w.raw(&self.id);
        w.str(&self.from);
        w.raw(&self.from_key);
        w.str(&self.to);
        w.raw(&self.to_key);
        w.u64(self.seq);
        w.u64(self.sent_at_ms);
        match &self.content {
            Content::Text(text) => {
                w.u8(1);
                w.str(text);
            }
            Content::Delivered(ids) => {
                w.u8(2);
                // Capped at MAX_ACK_IDS by check_caps before anything is signed.
                w.u32(u32::try_from(ids.len()).unwrap_or(u32::MAX));
                for id in ids {
                    w.raw(id);
                }
            }
        }
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<DirectMessage, DecodeError> {
        r.magic(DM_MAGIC)?;
        Ok(DirectMessage {
            id: r.array()?,
            from: r.string("from", MAX_NAME_BYTES)?,
            from_key: r.array()?,
            to: r.string("to", MAX_NAME_BYTES)?,
            to_key: r.array()?,
            seq: r.u64()?,
            sent_at_ms: r.u64()?,
            content: match r.u8()? {
                1 => Content::Text(r.string("text", MAX_TEXT_BYTES)?),
                2 => Content::Delivered(read_array_list(r, "delivered ids", MAX_ACK_IDS)?),
                tag => return Err(DecodeError::UnknownTag { what: "content", tag }),
            },
        })
    }

    /// Refuses a message whose fields are over their caps.
    pub fn check_caps(&self) -> Result<(), MessagingError> {
        check_len("from", self.from.len(), MAX_NAME_BYTES)?;
        check_len("to", self.to.len(), MAX_NAME_BYTES)?;
        self.content.check_caps()
    }

    /// The length of its encoding, computed: what [`seal_many`]'s callers
    /// add up, to at most [`MAX_MESSAGE_BYTES_PER_ENVELOPE`], to fill an
    /// envelope.
    pub fn encoded_len(&self) -> usize {
        let content = match &self.content {
            Content::Text(text) => 4 + text.len(),
            Content::Delivered(ids) => 4 + 16 * ids.len(),
        };
        DM_MAGIC.len() + 16 + (4 + self.from.len()) + 32 + (4 + self.to.len()) + 32 + 8 + 8 + 1 + content
    }

    /// Whether `other` goes from the same sender to the same recipient, so
    /// that both may share an envelope.
    pub(crate) fn same_ends(&self, other: &DirectMessage) -> bool {
        self.from == other.from && self.from_key == other.from_key && self.to == other.to && self.to_key == other.to_key
    }

    /// The bytes a sender of the earlier format signed, this message alone.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(DM_SIGN_DOMAIN);
        self.write(&mut w);
        w.into_bytes()
    }

    /// SHA-256 of the text (what anchors on chain commit to); for an
    /// acknowledgement, of the concatenated ids.
    pub fn content_hash(&self) -> [u8; 32] {
        match &self.content {
            Content::Text(text) => sha256(text.as_bytes()),
            Content::Delivered(ids) => sha256(&ids.concat()),
        }
    }
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(ENVELOPE_MAGIC);
        w.raw(&self.mailbox);
        w.u64(self.expires_at_ms);
        w.bytes(&self.ciphertext);
        w.into_bytes()
    }

    /// Parses exactly one envelope of at most [`MAX_ENVELOPE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, MessagingError> {
        check_input("envelope", bytes, MAX_ENVELOPE_BYTES)?;
        let mut r = Reader::new(bytes);
        r.magic(ENVELOPE_MAGIC)?;
        let env = Envelope {
            mailbox: r.array()?,
            expires_at_ms: r.u64()?,
            ciphertext: r.bytes("ciphertext", MAX_CIPHERTEXT_BYTES)?.to_vec(),
        };
        r.finish()?;
        Ok(env)
    }

    /// SHA-256 of the encoding: how relays and receipts name an envelope.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.encode())
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

fn noise_params() -> Result<NoiseParams, MessagingError> {
    NOISE_PARAMS
        .parse()
        .map_err(|e| MessagingError::Seal(format!("{NOISE_PARAMS}: {e}")))
}

/// A handshake builder with our X25519 ([`super::x25519`]).
pub(super) fn builder() -> Result<snow::Builder<'static>, MessagingError> {
    Ok(snow::Builder::with_resolver(noise_params()?, Box::new(Resolver)))
}

/// Binds the envelope header into the handshake hash.
pub(super) fn prologue(mailbox: &[u8; 32], expires_at_ms: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(PROLOGUE_DOMAIN);
    w.raw(mailbox);
    w.u64(expires_at_ms);
    w.into_bytes()
}

/// Signs `msg` as `sender` and encrypts it to `recipient_x25519`, the
/// messaging key the chain registered for `msg.to_key`.
pub fn seal(
    sender: &Identity,
    msg: &DirectMessage,
    recipient_x25519: &[u8; 32],
    expires_at_ms: u64,
) -> Result<Envelope, MessagingError> {
    seal_many(sender, std::slice::from_ref(msg), recipient_x25519, expires_at_ms)
}

/// Signs `msgs` (owned or borrowed), all of them with one signature, as
/// `sender` and encrypts them together, in order, into one envelope to
/// `recipient_x25519`. They must all go from `sender` to one recipient, be
/// at most [`MAX_DMS_PER_ENVELOPE`], and their
/// [`DirectMessage::encoded_len`]s add up to at most
/// [`MAX_MESSAGE_BYTES_PER_ENVELOPE`].
pub fn seal_many(
    sender: &Identity,
    msgs: &[impl Borrow<DirectMessage>],
    recipient_x25519: &[u8; 32],
    expires_at_ms: u64,
) -> Result<Envelope, MessagingError> {
    let Some(first) = msgs.first().map(Borrow::borrow) else {
        return Err(MessagingError::Seal("no message to seal".into()));
    };
    check_len("messages of one envelope", msgs.len(), MAX_DMS_PER_ENVELOPE)?;
    let own_key = sender.identity_public();
    for msg in msgs.iter().map(Borrow::borrow) {
        msg.check_caps()?;
        if msg.from_key != own_key {
            return Err(MessagingError::SenderKeyMismatch);
        }
        if !msg.same_ends(first) {
            return Err(MessagingError::Seal(
                "messages of one envelope must share sender and recipient".into(),
            ));
        }
    }
    let signing = signing_bytes(msgs.iter().map(Borrow::borrow));
    let signature = super::ed25519::sign(sender, &signing);
    let plain = plaintext(&signing[DMS_SIGN_DOMAIN.len()..], &signature)?;
    seal_plaintext(
        sender,
        &plain,
        recipient_x25519,
        mailbox_id(&first.to_key),
        expires_at_ms,
    )
}

/// What the one signature of an envelope covers: [`DMS_SIGN_DOMAIN`], then
/// each message's encoding, in order.
pub(super) fn signing_bytes<'a>(msgs: impl IntoIterator<Item = &'a DirectMessage>) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(DMS_SIGN_DOMAIN);
    for msg in msgs {
        msg.write(&mut w);
    }
    w.into_bytes()
}

/// The plaintext of messages under one signature: the flagged length,
/// the messages' encodings, the signature. Refused over the cap.
fn plaintext(encodings: &[u8], signature: &[u8; 64]) -> Result<Vec<u8>, MessagingError> {
    let len = encodings.len() + SIGNATURE_LEN;
    check_len("signed messages of one envelope", len, MAX_SIGNED_BYTES_PER_ENVELOPE)?;
    let mut plain = Writer::new();
    // At most MAX_SIGNED_BYTES_PER_ENVELOPE, below ONE_SIGNATURE (asserted
    // at compile time), so it fits and leaves the top bit free.
    plain.u32(ONE_SIGNATURE | u32::try_from(len).unwrap_or(0));
    plain.raw(encodings);
    plain.raw(signature);
    Ok(plain.into_bytes())
}

/// Encrypts `msgs` under `signature` as it is, for `mailbox` (the tests
/// forge signatures, misaddress and overfill envelopes with it).
#[cfg(test)]
pub(super) fn seal_signed_many(
    sender: &Identity,
    msgs: &[DirectMessage],
    signature: &[u8; 64],
    recipient_x25519: &[u8; 32],
    mailbox: [u8; 32],
    expires_at_ms: u64,
) -> Result<Envelope, MessagingError> {
    let signing = signing_bytes(msgs);
    let plain = plaintext(&signing[DMS_SIGN_DOMAIN.len()..], signature)?;
    seal_plaintext(sender, &plain, recipient_x25519, mailbox, expires_at_ms)
}

/// Encrypts messages in the earlier format, each with its signature as it
/// is, for `mailbox`: what the builds before ADR 0018 sealed, which
/// recipients still open (and the tests forge).
#[cfg(test)]
pub(super) fn seal_each_signed(
    sender: &Identity,
    signed: &[(&DirectMessage, [u8; 64])],
    recipient_x25519: &[u8; 32],
    mailbox: [u8; 32],
    expires_at_ms: u64,
) -> Result<Envelope, MessagingError> {
    let total: usize = signed.iter().map(|(msg, _)| msg.encoded_len() + SIGNATURE_LEN).sum();
    check_len("signed messages of one envelope", total, MAX_SIGNED_BYTES_PER_ENVELOPE)?;
    let mut plain = Writer::new();
    plain.u32(u32::try_from(total).unwrap_or(u32::MAX));
    for (msg, signature) in signed {
        msg.write(&mut plain);
        plain.raw(signature);
    }
    seal_plaintext(sender, &plain.into_bytes(), recipient_x25519, mailbox, expires_at_ms)
}

/// Encrypts a plaintext with Noise_X from `sender` to `recipient_x25519`,
/// its header bound in as the prologue.
fn seal_plaintext(
    sender: &Identity,
    plain: &[u8],
    recipient_x25519: &[u8; 32],
    mailbox: [u8; 32],
    expires_at_ms: u64,
) -> Result<Envelope, MessagingError> {
    let seal_err = |e: snow::Error| MessagingError::Seal(e.to_string());
    let secret = sender.messaging_secret();
    let prologue = prologue(&mailbox, expires_at_ms);
    let mut handshake = builder()?
        .local_private_key(&secret[..])
        .map_err(seal_err)?
        .remote_public_key(recipient_x25519)
        .map_err(seal_err)?
        .prologue(&prologue)
        .map_err(seal_err)?
        .build_initiator()
        .map_err(seal_err)?;

    let (first, rest) = plain.split_at(plain.len().min(FIRST_CHUNK));
    let mut buf = vec![0u8; (first.len() + HANDSHAKE_OVERHEAD).max(rest.len().min(NEXT_CHUNK) + TAG_LEN)];
    let mut out = Writer::new();
    let n = handshake.write_message(first, &mut buf).map_err(seal_err)?;
    out.bytes(&buf[..n]);
    let mut transport = handshake.into_transport_mode().map_err(seal_err)?;
    for chunk in rest.chunks(NEXT_CHUNK) {
        let n = transport.write_message(chunk, &mut buf).map_err(seal_err)?;
        out.bytes(&buf[..n]);
    }
    let env = Envelope {
        mailbox,
        expires_at_ms,
        ciphertext: out.into_bytes(),
    };
    check_len("ciphertext", env.ciphertext.len(), MAX_CIPHERTEXT_BYTES)?;
    Ok(env)
}
