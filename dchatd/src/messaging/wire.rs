//! What every messaging format shares: the error type, the name cap,
//! signature checks and random ids.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::ledger::codec::Reader;
use crate::ledger::DecodeError;

/// Longest account or channel name carried in a message, in bytes. Wider
/// than the ledger's 32 so that a future longer name (or an account id in
/// hex) never makes an otherwise valid message undecodable.
pub const MAX_NAME_BYTES: usize = 64;

/// Why a message could not be built, decoded, opened or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    /// The bytes are not a canonical encoding (truncated, trailing bytes,
    /// wrong tag or version, oversize field, bad UTF-8).
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    /// A value to be encoded breaks a cap; nothing was signed or sent.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    /// Noise refused the ciphertext: tampered, truncated, or sealed to a
    /// different X25519 key. Deliberately says no more than that.
    #[error("envelope does not decrypt")]
    Decrypt,
    /// The plaintext inside a valid Noise message is not what a sender
    /// produces (its framing or lengths disagree).
    #[error("envelope plaintext is malformed: {0}")]
    BadPlaintext(&'static str),
    /// Noise failed while sealing (cannot happen with valid keys; reported
    /// rather than unwrapped).
    #[error("cannot seal envelope: {0}")]
    Seal(String),
    /// `seal` was asked to sign a message whose `from_key` is not the
    /// sender's identity key.
    #[error("message from_key is not the sealing identity's key")]
    SenderKeyMismatch,
    /// Not a valid ed25519 public key, or the signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The message or envelope was addressed to someone else.
    #[error("addressed to another recipient")]
    WrongRecipient,
    /// The mailbox id does not belong to the identity key given with it.
    #[error("mailbox does not belong to this identity key")]
    WrongMailbox,
    /// A fetch request's timestamp is too far from the relay's clock.
    #[error("timestamp {timestamp_ms} ms is more than {max_skew_ms} ms from now ({now_ms} ms)")]
    StaleTimestamp {
        timestamp_ms: u64,
        now_ms: u64,
        max_skew_ms: u64,
    },
    /// The operating system's random number generator failed.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// A fresh 16-byte message or post id sent at `now_ms`: that time in
/// milliseconds since the Unix epoch (48 bits, big-endian) and 80 random
/// bits, as in a UUIDv7.
/// Ids are unique by their random part; the time in front makes each
/// node's ids grow, so the indexes keyed by them (a message's
/// `(account, id)`, a post's id) take new ones at their end instead of
/// rewriting a page somewhere in the middle for each. The time is no news
/// to anyone who sees an id: messages and posts carry their send time.
pub fn new_message_id(now_ms: u64) -> Result<[u8; 16], MessagingError> {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    getrandom::fill(&mut id[6..]).map_err(|e| MessagingError::Random(e.to_string()))?;
    Ok(id)
}

/// Checks an ed25519 signature strictly (no malleable or small-order
/// forms), as the ledger does for transactions.
pub(crate) fn verify_signature(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), MessagingError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| MessagingError::BadSignature)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| MessagingError::BadSignature)
}

/// Checks several ed25519 signatures, each (key, message, signature), at
/// about 60 % of the cost of one at a time in parts of 16, and with the strict
/// check's verdict on each except as below. Those whose key decodes and is
/// not of small order, and whose R is canonical and not of small order,
/// are checked together first (ed25519-dalek's batch equation, with
/// coefficients drawn from a transcript of all the inputs); the others,
/// and all of them if the batch fails, one at a time with
/// [`verify_signature`]. So every refusal is the strict check's.
///
/// An acceptance is the batch equation's. It differs from the strict
/// check only for a signature whose R its own signer built with a
/// small-order part mixed in: such a one passes a batch about half the
/// time. Nobody but the signer can make one (every input is in the
/// transcript), so at worst a sender who does has its own message taken
/// or refused depending on its neighbours. One bad signature costs its
/// whole part the batch and then one check each: about 1.6 times one at a
/// time, at worst.
pub(crate) fn verify_signatures(items: &[([u8; 32], &[u8], [u8; 64])]) -> Vec<Result<(), MessagingError>> {
    // The decoded key of each item that may go into the batch.
    let batchable: Vec<(usize, VerifyingKey)> = items
        .iter()
        .enumerate()
        .filter(|(_, (_, _, signature))| batchable_r(signature))
        .filter_map(|(i, (key, _, _))| Some((i, VerifyingKey::from_bytes(key).ok().filter(|k| !k.is_weak())?)))
        .collect();
    let mut passed = vec![false; items.len()];
    if batchable.len() > 1 {
        let messages: Vec<&[u8]> = batchable.iter().map(|(i, _)| items[*i].1).collect();
        let signatures: Vec<Signature> = batchable
            .iter()
            .map(|(i, _)| Signature::from_bytes(&items[*i].2))
            .collect();
        let keys: Vec<VerifyingKey> = batchable.iter().map(|(_, k)| *k).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            for (i, _) in batchable {
                passed[i] = true;
            }
        }
    }
    items
        .iter()
        .zip(passed)
        .map(|((key, message, signature), passed)| {
            if passed {
                Ok(())
            } else {
                verify_signature(key, message, signature)
            }
        })
        .collect()
}

/// Whether a signature's R may go into a batch: its encoding is canonical
/// (y below the field's prime) and it is not one of the eight points of
/// small order, which the strict check refuses and the batch equation does
/// not. Compares bytes only: no point is decoded.
fn batchable_r(signature: &[u8; 64]) -> bool {
    static SMALL_ORDER_Y: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    let mut y = [0u8; 32];
    y.copy_from_slice(&signature[..32]);
    // Without the sign of x; p = 2^255 - 19 is ed ff … ff 7f little-endian.
    y[31] &= 0x7f;
    let at_least_p = y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed;
    if at_least_p {
        return false;
    }
    let small = SMALL_ORDER_Y.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|point| {
                let mut y = point.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect()
    });
    !small.contains(&y)
}

/// Refuses a value to be encoded when it is over its cap.
pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), MessagingError> {
    if len > max {
        return Err(MessagingError::TooLarge { what, len, max });
    }
    Ok(())
}

/// Refuses input over `max` bytes before any parsing.
pub(crate) fn check_input(what: &'static str, bytes: &[u8], max: usize) -> Result<(), MessagingError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max,
        }
        .into());
    }
    Ok(())
}

/// A `u32` count followed by that many fixed-width items, at most `max`.
/// The count is checked against the cap and the bytes left before anything
/// is allocated.
pub(crate) fn read_array_list<const N: usize>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<Vec<[u8; N]>, DecodeError> {
    let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    if count > max {
        return Err(DecodeError::TooLong { field, len: count, max });
    }
    if count.saturating_mul(N) > r.remaining() {
        return Err(DecodeError::Truncated);
    }
    (0..count).map(|_| r.array::<N>()).collect()
}
