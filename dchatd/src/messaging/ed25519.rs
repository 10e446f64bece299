//! Ed25519 signatures made with aws-lc rather than ed25519-dalek.
//!
//! Ed25519 (RFC 8032) is deterministic: a key and a message give one
//! signature, whoever computes it, so this changes no byte anyone sees
//! (tests below compare the two). aws-lc's fixed-base multiplication takes
//! about 10 µs for a 1 KB direct message here against dalek's 17 µs, and a
//! sender signs every envelope it seals.
//!
//! aws-lc derives the public key whenever a key pair is built from its
//! seed, another fixed-base multiplication, so key pairs are kept by the
//! SHA-256 of their seed, at most [`KEPT`] (the local accounts of one node),
//! while the node holds the identity: [`forget`] drops one when the node
//! forgets an account's key. A key pair whose public half is not the
//! identity's (which cannot happen for a seed dalek took), or a signing
//! that fails inside aws-lc, falls back to dalek.

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use dchat_keyfile::Identity;

use super::kept::KeptBySecret;

/// Key pairs kept; beyond, the memory starts afresh.
const KEPT: usize = 1024;

/// `sender`'s Ed25519 signature over `msg`.
pub(super) fn sign(sender: &Identity, msg: &[u8]) -> [u8; 64] {
    let signed = key_pair(sender).and_then(|pair| {
        let signature = pair.try_sign(msg).ok()?;
        <[u8; 64]>::try_from(signature.as_ref()).ok()
    });
    signed.unwrap_or_else(|| sender.sign(msg))
}

/// Drops the key pair kept for `identity`, if any.
pub fn forget(identity: &Identity) {
    KEPT_PAIRS.forget(&identity.identity_secret()[..]);
}

static KEPT_PAIRS: KeptBySecret<Arc<Ed25519KeyPair>> = KeptBySecret::new(KEPT);

fn key_pair(sender: &Identity) -> Option<Arc<Ed25519KeyPair>> {
    let seed = sender.identity_secret();
    KEPT_PAIRS.get_or_make(&seed[..], || {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..]).ok()?;
        (pair.public_key().as_ref() == sender.identity_public()).then(|| Arc::new(pair))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, tests 1 and 2: (secret key, message,
    /// signature), in hex.
    const RFC8032: [(&str, &str, &str); 2] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];

    #[test]
    fn the_rfc_8032_vectors_come_out_of_aws_lc() {
        for (secret, msg, signature) in RFC8032 {
            let secret: [u8; 32] = hex::decode(secret).unwrap().try_into().unwrap();
            let sender = Identity::from_secrets(&secret, &[1; 32]);
            assert!(key_pair(&sender).is_some(), "aws-lc took the key");
            assert_eq!(hex::encode(sign(&sender, &hex::decode(msg).unwrap())), signature);
        }
    }

    #[test]
    fn a_forgotten_identity_s_key_pair_is_dropped() {
        let sender = Identity::generate().unwrap();
        let held = || KEPT_PAIRS.holds(&sender.identity_secret()[..]);
        sign(&sender, b"hello");
        assert!(held());
        forget(&sender);
        assert!(!held());
        // Signing again builds it again.
        assert_eq!(sign(&sender, b"hello"), sender.sign(b"hello"));
        assert!(held());
    }

    #[test]
    fn signatures_are_dalek_s_byte_for_byte() {
        for n in 0..64usize {
            let sender = Identity::generate().unwrap();
            assert!(key_pair(&sender).is_some(), "aws-lc took the key");
            let msg: Vec<u8> = (0..n * 37).map(|i| (i * 7 + n) as u8).collect();
            assert_eq!(sign(&sender, &msg), sender.sign(&msg), "message of {} bytes", msg.len());
            // Again, from the kept key pair.
            assert_eq!(sign(&sender, &msg), sender.sign(&msg));
        }
    }

    #[test]
    fn each_identity_signs_with_its_own_key() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let msg = b"one message, two signers";
        let (sa, sb) = (sign(&a, msg), sign(&b, msg));
        assert_ne!(sa, sb);
        assert_eq!(sa, a.sign(msg));
        assert_eq!(sb, b.sign(msg));
    }
}
