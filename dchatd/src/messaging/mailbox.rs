//! What a recipient sends a relay. No chain is needed to check either: the
//! mailbox id is derived from the identity key, so a signature by that key
//! proves ownership.
//!
//! ```text
//! fetch    "dchat-fetch/1" mailbox[32] identity_key[32] timestamp_ms:u64 signature[64]
//! receipt  "dchat-receipt/1" mailbox[32] identity_key[32] count:u32 envelope_id[32]… signature[64]
//! ```
//!
//! Signatures cover a domain tag followed by the encoding up to the
//! signature. A fetch is only good within [`MAX_CLOCK_SKEW_MS`] of the
//! relay's clock, so a captured one cannot drain a mailbox later. A replayed
//! receipt is harmless: it names envelopes already deleted, and new
//! envelopes have new ids (their ephemeral keys make every ciphertext
//! unique).

use dchat_keyfile::Identity;

use super::envelope::mailbox_id;
use super::wire::{check_input, check_len, read_array_list, verify_signature, MessagingError};
use crate::ledger::codec::{Reader, Writer};

pub const FETCH_MAGIC: &[u8] = b"dchat-fetch/1";
const FETCH_SIGN_DOMAIN: &[u8] = b"dchat-fetch-sig/1";
pub const RECEIPT_MAGIC: &[u8] = b"dchat-receipt/1";
const RECEIPT_SIGN_DOMAIN: &[u8] = b"dchat-receipt-sig/1";

/// How far a fetch request's timestamp may be from the relay's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Most envelope ids one receipt may name.
pub const MAX_RECEIPT_IDS: usize = 1024;

const FETCH_BYTES: usize = FETCH_MAGIC.len() + 32 + 32 + 8 + 64;
const MAX_RECEIPT_BYTES: usize = RECEIPT_MAGIC.len() + 32 + 32 + 4 + 32 * MAX_RECEIPT_IDS + 64;

/// "Give me the envelopes in my mailbox", signed by the mailbox's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub mailbox: [u8; 32],
    pub identity_key: [u8; 32],
    pub timestamp_ms: u64,
    pub signature: [u8; 64],
}

/// "I have these envelopes; delete them", signed by the mailbox's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub mailbox: [u8; 32],
    pub identity_key: [u8; 32],
    pub envelope_ids: Vec<[u8; 32]>,
    pub signature: [u8; 64],
}

/// The mailbox belongs to the key: checked before the (dearer) signature.
fn check_owner(mailbox: &[u8; 32], identity_key: &[u8; 32]) -> Result<(), MessagingError> {
    if *mailbox != mailbox_id(identity_key) {
        return Err(MessagingError::WrongMailbox);
    }
    Ok(())
}

impl FetchRequest {
    /// A request for `identity`'s own mailbox, stamped `now_ms`.
    pub fn new(identity: &Identity, now_ms: u64) -> FetchRequest {
        let identity_key = identity.identity_public();
        let mut req = FetchRequest {
            mailbox: mailbox_id(&identity_key),
            identity_key,
            timestamp_ms: now_ms,
            signature: [0; 64],
        };
        req.signature = identity.sign(&req.signing_message());
        req
    }

    fn write_unsigned(&self, w: &mut Writer) {
        w.raw(FETCH_MAGIC);
        w.raw(&self.mailbox);
        w.raw(&self.identity_key);
        w.u64(self.timestamp_ms);
    }

    /// The exact bytes the owner signs.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(FETCH_SIGN_DOMAIN);
        self.write_unsigned(&mut w);
        w.into_bytes()
    }

    /// Accepts the request only if the mailbox belongs to the key, the
    /// timestamp is within [`MAX_CLOCK_SKEW_MS`] of `now_ms` and the
    /// signature verifies.
    pub fn verify(&self, now_ms: u64) -> Result<(), MessagingError> {
        check_owner(&self.mailbox, &self.identity_key)?;
        if self.timestamp_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
            return Err(MessagingError::StaleTimestamp {
                timestamp_ms: self.timestamp_ms,
                now_ms,
                max_skew_ms: MAX_CLOCK_SKEW_MS,
            });
        }
        verify_signature(&self.identity_key, &self.signing_message(), &self.signature)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w);
        w.raw(&self.signature);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<FetchRequest, MessagingError> {
        check_input("fetch request", bytes, FETCH_BYTES)?;
        let mut r = Reader::new(bytes);
        r.magic(FETCH_MAGIC)?;
        let req = FetchRequest {
            mailbox: r.array()?,
            identity_key: r.array()?,
            timestamp_ms: r.u64()?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(req)
    }
}

impl Receipt {
    /// A receipt for envelopes `identity` fetched from its own mailbox.
    pub fn new(identity: &Identity, envelope_ids: Vec<[u8; 32]>) -> Result<Receipt, MessagingError> {
        check_len("envelope ids", envelope_ids.len(), MAX_RECEIPT_IDS)?;
        let identity_key = identity.identity_public();
        let mut receipt = Receipt {
            mailbox: mailbox_id(&identity_key),
            identity_key,
            envelope_ids,
            signature: [0; 64],
        };
        receipt.signature = identity.sign(&receipt.signing_message());
        Ok(receipt)
    }

    fn write_unsigned(&self, w: &mut Writer) {
        w.raw(RECEIPT_MAGIC);
        w.raw(&self.mailbox);
        w.raw(&self.identity_key);
        // Capped at MAX_RECEIPT_IDS by new() and decode().
        w.u32(u32::try_from(self.envelope_ids.len()).unwrap_or(u32::MAX));
        for id in &self.envelope_ids {
            w.raw(id);
        }
    }

    /// The exact bytes the owner signs.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(RECEIPT_SIGN_DOMAIN);
        self.write_unsigned(&mut w);
        w.into_bytes()
    }

    /// Accepts the receipt only if the mailbox belongs to the key, it names
    /// at most [`MAX_RECEIPT_IDS`] envelopes and the signature verifies.
    pub fn verify(&self) -> Result<(), MessagingError> {
        check_owner(&self.mailbox, &self.identity_key)?;
        check_len("envelope ids", self.envelope_ids.len(), MAX_RECEIPT_IDS)?;
        verify_signature(&self.identity_key, &self.signing_message(), &self.signature)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w);
        w.raw(&self.signature);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Receipt, MessagingError> {
        check_input("receipt", bytes, MAX_RECEIPT_BYTES)?;
        let mut r = Reader::new(bytes);
        r.magic(RECEIPT_MAGIC)?;
        let receipt = Receipt {
            mailbox: r.array()?,
            identity_key: r.array()?,
            envelope_ids: read_array_list(&mut r, "envelope ids", MAX_RECEIPT_IDS)?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(receipt)
    }
}
