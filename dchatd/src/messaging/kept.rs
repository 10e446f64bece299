//! Key objects that cost a scalar multiplication to build (aws-lc derives
//! the public key whenever a private key is loaded), built once per secret
//! and kept by the secret's SHA-256 for the life of the process: `x25519`'s
//! static keys and `ed25519`'s signing key pairs.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ledger::codec::sha256;

/// Values made from secrets, at most `most` of them: one more starts the
/// memory afresh.
pub(super) struct KeptBySecret<V> {
    kept: Mutex<Option<HashMap<[u8; 32], V>>>,
    most: usize,
}

impl<V: Clone> KeptBySecret<V> {
    pub(super) const fn new(most: usize) -> Self {
        KeptBySecret {
            kept: Mutex::new(None),
            most,
        }
    }

    /// What is kept for `secret`, or what `make` makes of it (outside the
    /// lock), then kept; None when `make` fails.
    pub(super) fn get_or_make(&self, secret: &[u8], make: impl FnOnce() -> Option<V>) -> Option<V> {
        let id = sha256(secret);
        if let Some(found) = self.with(|kept| kept.get(&id).cloned()) {
            return Some(found);
        }
        let made = make()?;
        self.with(|kept| {
            if kept.len() >= self.most {
                kept.clear();
            }
            kept.insert(id, made.clone());
        });
        Some(made)
    }

    /// Drops what is kept for `secret`.
    pub(super) fn forget(&self, secret: &[u8]) {
        let id = sha256(secret);
        self.with(|kept| kept.remove(&id));
    }

    #[cfg(test)]
    pub(super) fn holds(&self, secret: &[u8]) -> bool {
        let id = sha256(secret);
        self.with(|kept| kept.contains_key(&id))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<[u8; 32], V>) -> T) -> T {
        let mut guard = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.get_or_insert_with(HashMap::new))
    }
}
