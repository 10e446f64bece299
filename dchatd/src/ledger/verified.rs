//! Signatures already found valid, so that a transaction is verified once
//! per process and not again each time the pool is rebased on a new block,
//! a proposal is built, a block is checked and then applied as final.
//!
//! The key is the SHA-256 of the exact signed message (domain, chain id,
//! every field of the transaction, signer included) followed by the
//! signature: a hit means this very signature over this very message by
//! this very key passed `verify_strict` before. Only successes are kept,
//! so the cache can never turn a bad signature into a good one, and it
//! changes no result, only how often the work is done.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

/// Entries per generation; two generations are kept, so between this and
/// twice this many recent signatures are remembered (64 bytes each).
const GENERATION: usize = 65_536;

struct Generations {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

static VERIFIED: LazyLock<Mutex<Generations>> = LazyLock::new(|| {
    Mutex::new(Generations {
        current: HashSet::new(),
        previous: HashSet::new(),
    })
});

/// The cache key of `signature` over `message`.
pub(super) fn key(message: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(message);
    h.update(signature);
    h.finalize().into()
}

pub(super) fn contains(key: &[u8; 32]) -> bool {
    let g = VERIFIED.lock().unwrap_or_else(|p| p.into_inner());
    g.current.contains(key) || g.previous.contains(key)
}

pub(super) fn insert(key: [u8; 32]) {
    let mut g = VERIFIED.lock().unwrap_or_else(|p| p.into_inner());
    if g.current.len() >= GENERATION {
        g.previous = std::mem::take(&mut g.current);
    }
    g.current.insert(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_keys_across_one_rotation_and_forgets_older_ones() {
        let k = |i: u32| key(&i.to_be_bytes(), &[7; 64]);
        let n = u32::try_from(GENERATION).unwrap_or(u32::MAX);
        assert!(!contains(&k(u32::MAX)));
        // Other tests insert too; this one's keys are its own.
        let base = 0x4000_0000;
        insert(k(base));
        assert!(contains(&k(base)));
        for i in 1..=n {
            insert(k(base + i));
        }
        // One rotation happened at most: the first key may be in `previous`.
        assert!(contains(&k(base + n)));
        for i in n + 1..=3 * n {
            insert(k(base + i));
        }
        assert!(!contains(&k(base)), "two rotations later it is forgotten");
        assert!(contains(&k(base + 3 * n)));
    }
}
