//! Per-peer rate limits: a token bucket for messages and one for bytes, so
//! that one peer flooding us cannot starve the others. Applied to every
//! inbound gossip message and request before anything decodes it.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Sustained rates and bursts, per peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub messages_per_s: f64,
    pub message_burst: f64,
    pub bytes_per_s: f64,
    pub byte_burst: f64,
}

impl Default for RateLimit {
    /// Far above what a person chats, low enough that one peer cannot take
    /// a relay: 2,000 messages/s (burst 4,000), 32 MiB/s (burst 64 MiB).
    /// The bytes leave room for the network's design load between two
    /// nodes, 10,000 DMs of 1 KB a second (~13 MB/s; ADR 0017).
    fn default() -> Self {
        RateLimit {
            messages_per_s: 2_000.0,
            message_burst: 4_000.0,
            bytes_per_s: 32.0 * 1024.0 * 1024.0,
            byte_burst: 64.0 * 1024.0 * 1024.0,
        }
    }
}

impl RateLimit {
    /// Sustained rates per second, bursts of twice that.
    pub fn per_second(messages: u32, bytes: u64) -> RateLimit {
        RateLimit {
            messages_per_s: f64::from(messages),
            message_burst: 2.0 * f64::from(messages),
            bytes_per_s: bytes as f64,
            byte_burst: 2.0 * bytes as f64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    messages: f64,
    bytes: f64,
    at: Instant,
}

/// The buckets of the peers we are connected to.
#[derive(Debug)]
pub struct PeerLimiter {
    limit: RateLimit,
    peers: HashMap<PeerId, Bucket>,
}

impl PeerLimiter {
    pub fn new(limit: RateLimit) -> PeerLimiter {
        PeerLimiter {
            limit,
            peers: HashMap::new(),
        }
    }

    /// Takes one message of `len` bytes from `peer`'s buckets; false when
    /// either is empty (the message is to be dropped).
    pub fn admit(&mut self, peer: PeerId, len: usize, now: Instant) -> bool {
        let limit = self.limit;
        let b = self.peers.entry(peer).or_insert(Bucket {
            messages: limit.message_burst,
            bytes: limit.byte_burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = now;
        b.messages = (b.messages + elapsed * limit.messages_per_s).min(limit.message_burst);
        b.bytes = (b.bytes + elapsed * limit.bytes_per_s).min(limit.byte_burst);
        let len = len as f64;
        if b.messages < 1.0 || b.bytes < len {
            return false;
        }
        b.messages -= 1.0;
        b.bytes -= len;
        true
    }

    /// Forgets a peer that disconnected.
    pub fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn small() -> RateLimit {
        RateLimit {
            messages_per_s: 10.0,
            message_burst: 5.0,
            bytes_per_s: 1000.0,
            byte_burst: 1000.0,
        }
    }

    #[test]
    fn a_flooding_peer_is_cut_off_and_others_are_not() {
        let mut l = PeerLimiter::new(small());
        let (flood, quiet) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        let admitted = (0..100).filter(|_| l.admit(flood, 10, t)).count();
        assert_eq!(admitted, 5, "the burst, then nothing");
        assert!(l.admit(quiet, 10, t), "another peer has its own bucket");
        // Refilled at the sustained rate.
        assert!(l.admit(flood, 10, t + Duration::from_millis(100)));
        assert!(!l.admit(flood, 10, t + Duration::from_millis(100)));
    }

    #[test]
    fn bytes_are_limited_too() {
        let mut l = PeerLimiter::new(small());
        let p = PeerId::random();
        let t = Instant::now();
        assert!(l.admit(p, 900, t));
        assert!(!l.admit(p, 200, t), "only 100 bytes left");
        assert!(l.admit(p, 100, t));
        l.forget(&p);
        assert!(l.admit(p, 1000, t), "a reconnecting peer starts fresh");
    }
}
