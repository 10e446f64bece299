//! X25519 for the Noise handshakes of direct messages.
//!
//! snow's default X25519 is curve25519-dalek's Montgomery ladder, which on
//! this project's machines costs about twice aws-lc's (already linked for
//! the consensus crates); every envelope needs three of them to seal and two
//! to open. Two things make it cheaper without changing a byte on the wire:
//!
//! - the scalar multiplications are aws-lc's (RFC 7748, constant time; a
//!   peer key of small order, whose result would be all zeros, is refused
//!   instead of giving a predictable key);
//! - results computed with a *static* key (one set from a key file, not
//!   generated for one handshake) are remembered. Noise_X mixes in
//!   `ss` = DH(sender's static key, recipient's static key), the same for
//!   every message between two accounts; a sender computes it once per
//!   recipient and a recipient once per sender. A result is remembered only
//!   the second time its pair of keys is seen: a recipient's static key
//!   also meets each message's ephemeral key (`es`), once, and those must
//!   not push out the pairs that come back. A static key's form in aws-lc
//!   (whose making derives the public key, another multiplication) is
//!   remembered too. A generated (ephemeral) key's results never are.
//!
//! What is remembered is what the process could compute again from the
//! private keys it holds anyway (static keys stay for the life of the
//! process); it is bounded ([`REMEMBERED`] results per generation, two
//! generations, and as many pairs seen once) and wiped from memory when
//! dropped. A peer that replays its own ephemeral keys can make results
//! be computed again, never grow the memory or get a wrong result.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

use super::kept::KeptBySecret;

const KEY_LEN: usize = 32;
/// Results kept per generation; at this many a new generation starts and
/// the one before it is dropped, so a result in use is kept and one not
/// asked for during two generations is forgotten.
const REMEMBERED: usize = 4096;

type Secret = Zeroizing<[u8; KEY_LEN]>;
/// Shared secrets by (own public key, peer public key).
type SharedByPair = HashMap<([u8; KEY_LEN], [u8; KEY_LEN]), Arc<Secret>>;

/// snow's resolver with [`FastX25519`] for the DH.
pub(super) struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(FastX25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// One handshake's key pair, as snow's `Dh` trait wants it.
#[derive(Default)]
pub(super) struct FastX25519 {
    private: Secret,
    public: [u8; KEY_LEN],
    /// aws-lc's form of `private`. Building it costs a scalar
    /// multiplication (it derives the public key), so it is built once: per
    /// handshake for a generated key, per process for a static one.
    key: Option<Arc<PrivateKey>>,
    /// Set from a key file (static), as opposed to generated.
    fixed: bool,
}

impl Dh for FastX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow passes exactly priv_len() bytes; anything else is no key.
        let found = match privkey.get(..KEY_LEN) {
            Some(bytes) => {
                self.private.copy_from_slice(bytes);
                static_key(&self.private)
            }
            None => None,
        };
        self.fixed = true;
        match found {
            Some((key, public)) => {
                self.key = Some(key);
                self.public = public;
            }
            // Not a key aws-lc takes: every dh() with it fails.
            None => {
                self.key = None;
                self.public = [0; KEY_LEN];
            }
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(&mut self.private[..])?;
        self.fixed = false;
        let (key, public) = key_pair(&self.private).ok_or(snow::Error::Dh)?;
        self.key = Some(Arc::new(key));
        self.public = public;
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private[..]
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let peer: [u8; KEY_LEN] = pubkey
            .get(..KEY_LEN)
            .and_then(|k| k.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let key = self.key.as_ref().ok_or(snow::Error::Dh)?;
        let shared = if self.fixed {
            remembered().shared(key, &self.public, &peer)
        } else {
            agree(key, &peer).map(Arc::new)
        }
        .ok_or(snow::Error::Dh)?;
        out.get_mut(..KEY_LEN)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&shared[..]);
        Ok(())
    }
}

/// aws-lc's key for `private`, and its public half.
fn key_pair(private: &[u8; KEY_LEN]) -> Option<(PrivateKey, [u8; KEY_LEN])> {
    let key = PrivateKey::from_private_key(&X25519, private).ok()?;
    let public = key.compute_public_key().ok()?.as_ref().try_into().ok()?;
    Some((key, public))
}

/// X25519(key, peer); None for a peer key of small order.
fn agree(key: &PrivateKey, peer: &[u8; KEY_LEN]) -> Option<Secret> {
    agreement::agree(key, UnparsedPublicKey::new(&X25519, peer), (), |shared| {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(shared.get(..KEY_LEN).ok_or(())?);
        Ok(out)
    })
    .ok()
}

/// What static keys computed, in two generations.
#[derive(Default)]
struct Remembered {
    /// The current generation, then the one before.
    shared: [SharedByPair; 2],
    /// Pairs seen once and not remembered (yet), by a keyed hash.
    seen_once: HashSet<u64>,
    seen_hasher: RandomState,
}

/// Static keys in aws-lc's form, with their public halves.
static STATIC_KEYS: KeptBySecret<(Arc<PrivateKey>, [u8; KEY_LEN])> = KeptBySecret::new(REMEMBERED);

/// aws-lc's form of a static key and its public half, made once.
fn static_key(private: &Secret) -> Option<(Arc<PrivateKey>, [u8; KEY_LEN])> {
    STATIC_KEYS.get_or_make(&private[..], || {
        let (key, public) = key_pair(private)?;
        Some((Arc::new(key), public))
    })
}

fn remembered() -> RememberedHandle {
    static REMEMBERED_KEYS: Mutex<Option<Remembered>> = Mutex::new(None);
    RememberedHandle(&REMEMBERED_KEYS)
}

struct RememberedHandle(&'static Mutex<Option<Remembered>>);

impl RememberedHandle {
    fn with<T>(&self, f: impl FnOnce(&mut Remembered) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.get_or_insert_with(Remembered::default))
    }

    fn shared(&self, key: &PrivateKey, own: &[u8; KEY_LEN], peer: &[u8; KEY_LEN]) -> Option<Arc<Secret>> {
        let pair = (*own, *peer);
        let found = self.with(|r| {
            if let Some(hit) = r.shared[0].get(&pair) {
                return Some(Arc::clone(hit));
            }
            let hit = r.shared[1].remove(&pair)?;
            r.keep(pair, Arc::clone(&hit));
            Some(hit)
        });
        if found.is_some() {
            return found;
        }
        // Computed outside the lock: other handshakes go on meanwhile.
        let shared = Arc::new(agree(key, peer)?);
        self.with(|r| {
            let seen = r.seen_hasher.hash_one(pair);
            if r.seen_once.remove(&seen) {
                r.keep(pair, Arc::clone(&shared));
            } else {
                if r.seen_once.len() >= REMEMBERED {
                    r.seen_once.clear();
                }
                r.seen_once.insert(seen);
            }
        });
        Some(shared)
    }
}

impl Remembered {
    /// Puts a result in the current generation, starting a new one first
    /// when it is full.
    fn keep(&mut self, pair: ([u8; KEY_LEN], [u8; KEY_LEN]), shared: Arc<Secret>) {
        if self.shared[0].len() >= REMEMBERED {
            self.shared.swap(0, 1);
            self.shared[0].clear();
        }
        self.shared[0].insert(pair, shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_key() -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k).unwrap();
        k
    }

    /// snow's own X25519, the reference.
    fn reference() -> Box<dyn Dh> {
        DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap()
    }

    #[test]
    fn agrees_with_snows_own_x25519_for_static_and_generated_keys() {
        for _ in 0..20 {
            let (a, b) = (random_key(), random_key());
            let mut ours = FastX25519::default();
            ours.set(&a);
            let mut theirs = reference();
            theirs.set(&a);
            assert_eq!(ours.pubkey(), theirs.pubkey());
            let mut peer = reference();
            peer.set(&b);
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            // Twice: the second answer is the remembered one.
            for _ in 0..2 {
                ours.dh(peer.pubkey(), &mut x).unwrap();
                theirs.dh(peer.pubkey(), &mut y).unwrap();
                assert_eq!(x, y);
            }
        }
        let mut generated = FastX25519::default();
        let mut rng = DefaultResolver.resolve_rng().unwrap();
        generated.generate(rng.as_mut()).unwrap();
        assert!(!generated.fixed);
        let mut same = reference();
        same.set(generated.privkey());
        assert_eq!(generated.pubkey(), same.pubkey());
    }

    /// A Noise_X message sealed with one resolver opens with the other,
    /// both ways: nothing on the wire changed.
    #[test]
    fn handshakes_interoperate_with_snows_default_x25519() {
        let params: snow::params::NoiseParams = super::super::NOISE_PARAMS.parse().unwrap();
        let (sender, recipient) = (random_key(), random_key());
        let mut recipient_dh = reference();
        recipient_dh.set(&recipient);
        let recipient_public = recipient_dh.pubkey().to_vec();
        let ours = || snow::Builder::with_resolver(params.clone(), Box::new(Resolver));
        let default = || snow::Builder::new(params.clone());
        for (seal_ours, open_ours) in [(true, false), (false, true), (true, true)] {
            let (seal_with, open_with) = (
                if seal_ours { ours() } else { default() },
                if open_ours { ours() } else { default() },
            );
            let mut initiator = seal_with
                .local_private_key(&sender)
                .unwrap()
                .remote_public_key(&recipient_public)
                .unwrap()
                .build_initiator()
                .unwrap();
            let mut responder = open_with
                .local_private_key(&recipient)
                .unwrap()
                .build_responder()
                .unwrap();
            let mut wire = [0u8; 256];
            let n = initiator.write_message(b"hello", &mut wire).unwrap();
            let mut plain = [0u8; 256];
            let m = responder.read_message(&wire[..n], &mut plain).unwrap();
            assert_eq!(
                &plain[..m],
                b"hello",
                "sealed by ours: {seal_ours}, opened by ours: {open_ours}"
            );
            let mut sender_dh = reference();
            sender_dh.set(&sender);
            assert_eq!(responder.get_remote_static().unwrap(), sender_dh.pubkey());
        }
    }

    #[test]
    fn a_peer_key_of_small_order_is_refused() {
        let mut ours = FastX25519::default();
        ours.set(&random_key());
        let mut out = [0u8; 32];
        // The point of order 1 (u = 0) and of order 2 (u = 1).
        for bad in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert!(ours.dh(&bad, &mut out).is_err());
        }
    }

    #[test]
    fn pairs_seen_twice_are_kept_pairs_seen_once_are_not_and_memory_stays_bounded() {
        let mut ours = FastX25519::default();
        ours.set(&random_key());
        let own = ours.public;
        let mut out = [0u8; 32];
        let peer_keys = |n: usize| -> Vec<[u8; 32]> {
            (0..n)
                .map(|_| {
                    let mut peer = reference();
                    peer.set(&random_key());
                    peer.pubkey().try_into().unwrap()
                })
                .collect()
        };
        let kept = |peer: &[u8; 32]| remembered().with(|r| r.shared.iter().any(|g| g.contains_key(&(own, *peer))));

        // A few correspondents, each seen once, then again: kept the
        // second time, not the first (as a recipient sees ephemeral keys).
        let few = peer_keys(100);
        for peer in &few {
            ours.dh(peer, &mut out).unwrap();
        }
        assert!(!few.iter().any(&kept));
        for peer in &few {
            ours.dh(peer, &mut out).unwrap();
        }
        assert!(few.iter().all(kept));

        // Many more than a generation, over and over: never more than two
        // generations and a bounded set of pairs seen once.
        let many = peer_keys(2 * REMEMBERED + 10);
        for _ in 0..3 {
            for peer in &many {
                ours.dh(peer, &mut out).unwrap();
                remembered().with(|r| {
                    assert!(r.shared[0].len() <= REMEMBERED && r.shared[1].len() <= REMEMBERED);
                    assert!(r.seen_once.len() <= REMEMBERED);
                });
            }
        }
    }
}
