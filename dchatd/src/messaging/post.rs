//! Channel posts, spread over gossipsub. Each is signed by its author over
//! `"dchat-post-sig/1" ‖ encoding without the signature`:
//!
//! ```text
//! "dchat-post/1" id[16] channel author author_key[32] sent_at_ms:u64 text signature[64]
//! ```
//!
//! Whether the author is a member of the channel, and whether `author_key`
//! is the key registered for `author`, is on chain: the caller checks.

use dchat_keyfile::Identity;

use super::wire::{check_input, check_len, verify_signature, MessagingError, MAX_NAME_BYTES};
use crate::ledger::codec::{sha256, Reader, Writer};

pub const POST_MAGIC: &[u8] = b"dchat-post/1";
const POST_SIGN_DOMAIN: &[u8] = b"dchat-post-sig/1";
/// Longest post text. Smaller than a direct message's: a whole post must
/// fit one gossipsub message (64 KiB by default) with room to spare.
pub const MAX_POST_TEXT_BYTES: usize = 16 * 1024;
/// Largest encoded post.
pub const MAX_POST_BYTES: usize =
    POST_MAGIC.len() + 16 + 2 * (4 + MAX_NAME_BYTES) + 32 + 8 + 4 + MAX_POST_TEXT_BYTES + 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPost {
    /// Chosen by the author ([`super::new_message_id`]: its time, then
    /// random bits); duplicates are dropped by id.
    pub id: [u8; 16],
    pub channel: String,
    pub author: String,
    /// The author's ed25519 identity key; the signature verifies with it.
    pub author_key: [u8; 32],
    pub sent_at_ms: u64,
    pub text: String,
    pub signature: [u8; 64],
}

impl ChannelPost {
    /// Builds and signs a post by `identity`, after checking the caps.
    pub fn create(
        identity: &Identity,
        id: [u8; 16],
        channel: &str,
        author: &str,
        sent_at_ms: u64,
        text: &str,
    ) -> Result<ChannelPost, MessagingError> {
        check_len("channel", channel.len(), MAX_NAME_BYTES)?;
        check_len("author", author.len(), MAX_NAME_BYTES)?;
        check_len("text", text.len(), MAX_POST_TEXT_BYTES)?;
        let mut post = ChannelPost {
            id,
            channel: channel.to_owned(),
            author: author.to_owned(),
            author_key: identity.identity_public(),
            sent_at_ms,
            text: text.to_owned(),
            signature: [0; 64],
        };
        post.signature = identity.sign(&post.signing_message());
        Ok(post)
    }

    fn write_unsigned(&self, w: &mut Writer) {
        w.raw(POST_MAGIC);
        w.raw(&self.id);
        w.str(&self.channel);
        w.str(&self.author);
        w.raw(&self.author_key);
        w.u64(self.sent_at_ms);
        w.str(&self.text);
    }

    /// The exact bytes the author signs.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(POST_SIGN_DOMAIN);
        self.write_unsigned(&mut w);
        w.into_bytes()
    }

    /// Checks the caps and the signature against `author_key`.
    pub fn verify(&self) -> Result<(), MessagingError> {
        check_len("channel", self.channel.len(), MAX_NAME_BYTES)?;
        check_len("author", self.author.len(), MAX_NAME_BYTES)?;
        check_len("text", self.text.len(), MAX_POST_TEXT_BYTES)?;
        verify_signature(&self.author_key, &self.signing_message(), &self.signature)
    }

    /// SHA-256 of the text.
    pub fn content_hash(&self) -> [u8; 32] {
        sha256(self.text.as_bytes())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w);
        w.raw(&self.signature);
        w.into_bytes()
    }

    /// Parses exactly one post; does not verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<ChannelPost, MessagingError> {
        check_input("post", bytes, MAX_POST_BYTES)?;
        let mut r = Reader::new(bytes);
        r.magic(POST_MAGIC)?;
        let post = ChannelPost {
            id: r.array()?,
            channel: r.string("channel", MAX_NAME_BYTES)?,
            author: r.string("author", MAX_NAME_BYTES)?,
            author_key: r.array()?,
            sent_at_ms: r.u64()?,
            text: r.string("text", MAX_POST_TEXT_BYTES)?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(post)
    }
}
