//! Direct messages, relay mailboxes and channel posts: the pure parts, with
//! no network and no database (STYLE.md habit 6). The network calls these to
//! build, check and open what it sends and receives; `storage` keeps the
//! results.
//!
//! - `envelope`: [`DirectMessage`]s signed by their sender and sealed with
//!   Noise_X to the recipient's X25519 key into an [`Envelope`] (one or
//!   several of a conversation in each, under one signature), the only
//!   thing a relay sees (mailbox id, expiry, ciphertext).
//! - `open`: decrypting an envelope, checking its sender, then its
//!   signature (many envelopes' together).
//! - `mailbox`: what a recipient sends a relay: a signed [`FetchRequest`]
//!   proving it owns a mailbox, and a signed [`Receipt`] that lets the relay
//!   delete what was fetched.
//! - `post`: signed [`ChannelPost`]s, spread over gossipsub.
//! - `wire`: the error type and the pieces every format shares.
//! - `x25519`: the DH under the Noise handshakes (aws-lc's, with results of
//!   static keys remembered).
//! - `ed25519`: a sender's signatures, aws-lc's (the same bytes as
//!   dalek's, sooner).
//!
//! Every format starts with a tag naming it and its version, uses the
//! ledger's canonical codec (big-endian integers, `u32`-length-prefixed
//! strings) and is decoded strictly: caps on every field, no trailing bytes,
//! a typed error and never a panic on hostile input.

mod ed25519;
mod envelope;
mod kept;
mod mailbox;
mod open;
mod post;
mod wire;
mod x25519;

#[cfg(test)]
mod tests;

pub use ed25519::forget as forget_signer;
pub use envelope::{
    mailbox_id, seal, seal_many, Content, DirectMessage, Envelope, DMS_SIGN_DOMAIN, DM_MAGIC, DM_SIGN_DOMAIN,
    ENVELOPE_MAGIC, MAX_ACK_IDS, MAX_DMS_PER_ENVELOPE, MAX_ENVELOPE_BYTES, MAX_MESSAGE_BYTES_PER_ENVELOPE,
    MAX_SIGNED_BYTES_PER_ENVELOPE, MAX_TEXT_BYTES, NOISE_PARAMS,
};
pub use mailbox::{FetchRequest, Receipt, FETCH_MAGIC, MAX_CLOCK_SKEW_MS, MAX_RECEIPT_IDS, RECEIPT_MAGIC};
pub use open::{decrypt, open, open_all, verify_all, Opened, Unverified};
pub use post::{ChannelPost, MAX_POST_BYTES, MAX_POST_TEXT_BYTES, POST_MAGIC};
pub use wire::{new_message_id, MessagingError, MAX_NAME_BYTES};
