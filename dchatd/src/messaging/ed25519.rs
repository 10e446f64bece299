//! Ed25519 signatures made with aws-lc rather than ed25519-dalek.
//!
//! Ed25519 (RFC 8032) is deterministic: a key and a message give one
//! signature, whoever computes it, so this changes no byte anyone sees
//! (tests below compare the two). aws-lc's fixed-base multiplication takes
//! about 10 µs for a 1 KB direct message here against dalek's 17 µs, and a
//! sender signs every message it sends.
//!
//! aws-lc derives the public key whenever a key pair is built from its
//! seed, another fixed-base multiplication, so key pairs are kept by the
//! SHA-256 of their seed, at most [`KEPT`] (the local accounts of one node),
//! for the life of the process, as `x25519` keeps static keys. A key pair
//! whose public half is not the identity's (which cannot happen for a seed
//! dalek took) falls back to dalek.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use dchat_keyfile::Identity;

use crate::ledger::codec::sha256;

/// Key pairs kept; beyond, the memory starts afresh.
const KEPT: usize = 1024;

/// `sender`'s Ed25519 signature over `msg`.
pub(super) fn sign(sender: &Identity, msg: &[u8]) -> [u8; 64] {
    match key_pair(sender) {
        Some(pair) => {
            let mut out = [0u8; 64];
            out.copy_from_slice(pair.sign(msg).as_ref());
            out
        }
        None => sender.sign(msg),
    }
}

fn key_pair(sender: &Identity) -> Option<Arc<Ed25519KeyPair>> {
    static KEPT_PAIRS: Mutex<Option<HashMap<[u8; 32], Arc<Ed25519KeyPair>>>> = Mutex::new(None);
    let seed = sender.identity_secret();
    let id = sha256(&seed[..]);
    let found = {
        let mut kept = KEPT_PAIRS.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_insert_with(HashMap::new).get(&id).cloned()
    };
    if found.is_some() {
        return found;
    }
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..]).ok()?;
    if pair.public_key().as_ref() != sender.identity_public() {
        return None;
    }
    let pair = Arc::new(pair);
    let mut kept = KEPT_PAIRS.lock().unwrap_or_else(|p| p.into_inner());
    let kept = kept.get_or_insert_with(HashMap::new);
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(id, pair.clone());
    Some(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_dalek_s_byte_for_byte() {
        for n in 0..64usize {
            let sender = Identity::generate().unwrap();
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
