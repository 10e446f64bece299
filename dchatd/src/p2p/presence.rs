//! Where an account can be reached: each node announces, signed by the
//! account's own identity key, "this account is hosted by peer P" on a
//! gossip topic, and keeps the freshest announcement per mailbox. A sender
//! delivers straight to that peer; without a fresh one it leaves the
//! envelope with relays. A forged announcement cannot be made without the
//! account's key; a stale one only costs a failed attempt.

use std::collections::HashMap;

use dchat_keyfile::Identity;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use libp2p::PeerId;

use crate::ledger::codec::{Reader, Writer};
use crate::ledger::DecodeError;
use crate::messaging::mailbox_id;

pub const TOPIC: &str = "dchat/presence/1";
const MAGIC: &[u8] = b"dchat-presence/1";
const SIGN_DOMAIN: &[u8] = b"dchat-presence-sign/1";
/// Announcements older than this (or this far in the future) are ignored.
pub const MAX_AGE_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub identity_key: [u8; 32],
    pub peer: PeerId,
    pub timestamp_ms: u64,
    pub signature: [u8; 64],
}

fn signing_message(key: &[u8; 32], peer: &PeerId, timestamp_ms: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(SIGN_DOMAIN);
    w.raw(key);
    w.bytes(&peer.to_bytes());
    w.u64(timestamp_ms);
    w.into_bytes()
}

impl Presence {
    pub fn new(account: &Identity, peer: PeerId, timestamp_ms: u64) -> Presence {
        let key = account.signing_key().verifying_key().to_bytes();
        let signature = account
            .signing_key()
            .sign(&signing_message(&key, &peer, timestamp_ms))
            .to_bytes();
        Presence {
            identity_key: key,
            peer,
            timestamp_ms,
            signature,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.raw(&self.identity_key);
        w.bytes(&self.peer.to_bytes());
        w.u64(self.timestamp_ms);
        w.raw(&self.signature);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Presence, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let identity_key = r.array()?;
        let peer = PeerId::from_bytes(r.bytes("peer", 64)?).map_err(|_| DecodeError::BadMagic)?;
        let timestamp_ms = r.u64()?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Presence {
            identity_key,
            peer,
            timestamp_ms,
            signature,
        })
    }

    /// Signature valid and timestamp within [`MAX_AGE_MS`] of `now_ms`.
    pub fn verify(&self, now_ms: u64) -> bool {
        self.check(now_ms) == Check::Valid
    }

    pub fn check(&self, now_ms: u64) -> Check {
        let signed = VerifyingKey::from_bytes(&self.identity_key).is_ok_and(|key| {
            let msg = signing_message(&self.identity_key, &self.peer, self.timestamp_ms);
            key.verify_strict(&msg, &Signature::from_bytes(&self.signature)).is_ok()
        });
        if !signed {
            Check::BadSignature
        } else if self.timestamp_ms.abs_diff(now_ms) > MAX_AGE_MS {
            Check::Stale
        } else {
            Check::Valid
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Valid,
    /// Signed, but too old or too far in the future.
    Stale,
    BadSignature,
}

/// The freshest verified announcement per mailbox.
#[derive(Debug, Default)]
pub struct PresenceTable {
    by_mailbox: HashMap<[u8; 32], (PeerId, u64)>,
}

impl PresenceTable {
    /// Records a verified announcement; false when an as-new one is known.
    pub fn record(&mut self, p: &Presence) -> bool {
        let mailbox = mailbox_id(&p.identity_key);
        match self.by_mailbox.get(&mailbox) {
            Some((_, ts)) if *ts >= p.timestamp_ms => false,
            _ => {
                self.by_mailbox.insert(mailbox, (p.peer, p.timestamp_ms));
                true
            }
        }
    }

    /// The peer hosting `mailbox`, if announced within [`MAX_AGE_MS`].
    pub fn host(&self, mailbox: &[u8; 32], now_ms: u64) -> Option<PeerId> {
        self.by_mailbox
            .get(mailbox)
            .filter(|(_, ts)| now_ms.saturating_sub(*ts) <= MAX_AGE_MS)
            .map(|(peer, _)| *peer)
    }

    /// Forgets what a disconnected peer announced.
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.by_mailbox.retain(|_, (p, _)| p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_verify_round_trip_and_resist_forgery() {
        let alice = Identity::from_secrets(&[1; 32], &[2; 32]);
        let peer = PeerId::random();
        let p = Presence::new(&alice, peer, 1_000_000);
        let back = Presence::decode(&p.encode()).unwrap();
        assert_eq!(back, p);
        assert!(back.verify(1_000_500));
        assert!(!back.verify(1_000_000 + MAX_AGE_MS + 1), "stale");

        let mut forged = p.clone();
        forged.peer = PeerId::random();
        assert!(!forged.verify(1_000_000), "moved to another peer without the key");

        let mut table = PresenceTable::default();
        assert!(table.record(&p));
        assert!(!table.record(&p), "not newer");
        let mailbox = mailbox_id(&p.identity_key);
        assert_eq!(table.host(&mailbox, 1_000_100), Some(peer));
        assert_eq!(table.host(&mailbox, 1_000_000 + MAX_AGE_MS + 1), None);
        table.forget_peer(&peer);
        assert_eq!(table.host(&mailbox, 1_000_100), None);
        assert!(Presence::decode(&[1, 2, 3]).is_err());
    }
}
