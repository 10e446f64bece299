//! A dchat identity: an ed25519 key that names and signs for the account, and
//! an X25519 key that others use to encrypt direct messages to it.
//!
//! The two keys are independent (the X25519 key is not derived from the
//! ed25519 one) so that either can be rotated later without the other.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::KeyError;

/// Length of an account id: lowercase hex of a 32-byte ed25519 public key.
pub const ID_HEX_LEN: usize = 64;

/// The secret halves of one account. Both keys wipe themselves when dropped.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    messaging: StaticSecret,
}

impl Identity {
    /// Fresh keys from the operating system's random number generator.
    ///
    /// Keys are built from raw bytes rather than through `rand_core`, so this
    /// crate does not depend on which `rand_core` the dalek crates pin.
    pub fn generate() -> Result<Identity, KeyError> {
        let mut seed = Zeroizing::new([0u8; 64]);
        getrandom::fill(&mut seed[..])?;
        let mut identity = Zeroizing::new([0u8; 32]);
        let mut messaging = Zeroizing::new([0u8; 32]);
        identity.copy_from_slice(&seed[..32]);
        messaging.copy_from_slice(&seed[32..]);
        Ok(Identity::from_secrets(&identity, &messaging))
    }

    /// Rebuilds an identity from its two 32-byte secrets. Every 32-byte
    /// string is a valid secret for both curves, so this cannot fail.
    pub fn from_secrets(identity: &[u8; 32], messaging: &[u8; 32]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(identity),
            messaging: StaticSecret::from(*messaging),
        }
    }

    /// The ed25519 secret key (seed), wiped when the returned value drops.
    pub fn identity_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 secret key, wiped when the returned value drops.
    pub fn messaging_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.messaging.to_bytes())
    }

    /// The account id: lowercase hex of the ed25519 public key.
    pub fn id(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// Same as [`Identity::id`]; named for symmetry with the messaging key.
    pub fn identity_public_hex(&self) -> String {
        self.id()
    }

    /// Lowercase hex of the X25519 public key.
    pub fn messaging_public_hex(&self) -> String {
        hex::encode(self.messaging_public())
    }

    /// The ed25519 public key: what the chain registers and signatures
    /// verify against.
    pub fn identity_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key that others encrypt direct messages to.
    pub fn messaging_public(&self) -> [u8; 32] {
        PublicKey::from(&self.messaging).to_bytes()
    }

    /// The ed25519 key, for callers that need the dalek type (libp2p, votes).
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    /// An ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

/// Prints the public halves only, so an identity can be logged safely.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .field("messaging_public", &self.messaging_public_hex())
            .finish_non_exhaustive()
    }
}

/// True when `id` looks like an account id (64 lowercase hex characters).
/// Callers check this before using an id in a file name.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_HEX_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn generate_gives_distinct_valid_ids() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        assert!(is_valid_id(&a.id()));
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), a.identity_public_hex());
        assert_eq!(a.messaging_public_hex().len(), 64);
        assert_eq!(hex::encode(a.identity_public()), a.id());
        assert_eq!(hex::encode(a.messaging_public()), a.messaging_public_hex());
        assert_ne!(a.messaging_public_hex(), a.id());
    }

    #[test]
    fn from_secrets_round_trips() {
        let a = Identity::generate().unwrap();
        let b = Identity::from_secrets(&a.identity_secret(), &a.messaging_secret());
        assert_eq!(a.id(), b.id());
        assert_eq!(a.messaging_public_hex(), b.messaging_public_hex());
        assert_eq!(*a.identity_secret(), *b.identity_secret());
        assert_eq!(*a.messaging_secret(), *b.messaging_secret());
    }

    #[test]
    fn signatures_verify_with_the_id() {
        let a = Identity::generate().unwrap();
        let sig = Signature::from_bytes(&a.sign(b"hello"));
        let vk = a.signing_key().verifying_key();
        assert_eq!(hex::encode(vk.as_bytes()), a.id());
        assert!(vk.verify(b"hello", &sig).is_ok());
        assert!(vk.verify(b"hellO", &sig).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let a = Identity::from_secrets(&[7u8; 32], &[9u8; 32]);
        let shown = format!("{a:?}");
        assert!(shown.contains(&a.id()));
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(!shown.contains(&hex::encode([9u8; 32])));
        assert!(!shown.contains("[7, 7"));
        assert!(!shown.contains("[9, 9"));
    }

    #[test]
    fn id_validation() {
        assert!(is_valid_id(&"ab".repeat(32)));
        assert!(!is_valid_id(&"AB".repeat(32)));
        assert!(!is_valid_id(&"ab".repeat(31)));
        assert!(!is_valid_id(&format!("../{}", "a".repeat(61))));
        assert!(!is_valid_id(""));
    }
}
