//! Finding blocks: in memory, in the store, or from a peer over sync.

use tracing::{debug, warn};

use super::{Chain, Effect, Fetch, Net, To, MAX_CACHED_BLOCKS};
use crate::consensus::wire::{blocks_within, SyncMessage, MAX_ANCESTORS};
use crate::ledger::Block;

impl Chain {
    /// A block by hash: cached, else saved in the store.
    pub(super) fn block(&mut self, hash: &[u8; 32]) -> Option<Block> {
        if *hash == self.tip.hash {
            return Some(self.tip.block.clone());
        }
        if let Some(b) = self.blocks.get(hash).or_else(|| self.relayed.get(hash)) {
            return Some(b.clone());
        }
        let b = self.store.block_by_hash(hash)?;
        if b.height > self.tip.block.height && self.blocks.len() < MAX_CACHED_BLOCKS {
            self.blocks.insert(*hash, b.clone());
        }
        Some(b)
    }

    pub(super) fn is_finalized(&self, hash: &[u8; 32]) -> bool {
        if *hash == self.tip.hash {
            return true;
        }
        if self.blocks.contains_key(hash) || self.relayed.contains_key(hash) {
            return false;
        }
        match self.store.block_by_hash(hash) {
            Some(b) if b.height <= self.tip.block.height => {
                self.store.finalized_block(b.height).is_some_and(|f| f.hash() == *hash)
            }
            _ => false,
        }
    }

    /// Asks a peer for `hash` and its ancestors, unless a request is
    /// outstanding; the next request goes to the next peer.
    pub(super) fn fetch(&mut self, hash: [u8; 32], hint: Option<[u8; 32]>, now_ms: u64, fx: &mut Vec<Effect>) {
        let attempts = match self.fetching.get(&hash) {
            Some(f) if now_ms.saturating_sub(f.sent_ms) < self.cfg.fetch_timeout_ms => return,
            Some(f) => f.attempts + 1,
            None => 0,
        };
        let peer = match hint {
            Some(h) if attempts == 0 && h != self.cfg.me => Some(h),
            _ if self.cfg.peers.is_empty() => None,
            _ => {
                self.next_peer = (self.next_peer + 1) % self.cfg.peers.len();
                Some(self.cfg.peers[self.next_peer])
            }
        };
        let Some(peer) = peer else { return };
        debug!(hash = %hex::encode(hash), peer = %hex::encode(peer), attempts, "fetching block");
        self.fetching.insert(
            hash,
            Fetch {
                sent_ms: now_ms,
                attempts,
            },
        );
        let msg = SyncMessage::GetAncestors {
            digest: hash,
            max: MAX_ANCESTORS,
        };
        fx.push(Effect::Send {
            net: Net::Sync,
            to: To::One(peer),
            bytes: msg.encode(),
        });
    }

    /// Answers `GetAncestors`: the block and its ancestors we hold, newest
    /// first, down to height 1, within the message size limit.
    pub(super) fn ancestors(&mut self, hash: [u8; 32], max: u16) -> SyncMessage {
        let mut out = Vec::new();
        let mut next = self.block(&hash);
        while let Some(b) = next {
            if out.len() >= usize::from(max) || b.height == 0 {
                break;
            }
            let (height, parent) = (b.height, b.parent);
            out.push(b);
            next = if height - 1 <= self.tip.block.height {
                // On the finalized chain: read it by height.
                self.store.finalized_block(height - 1)
            } else {
                self.block(&parent)
            };
            if height - 1 == 0 {
                break;
            }
        }
        blocks_within(out, self.cfg.max_message_bytes)
    }

    /// Takes the blocks of a `Blocks` answer that form a hash chain down
    /// from a block we asked for.
    pub(super) fn fetched(&mut self, list: Vec<Vec<u8>>) {
        let mut expect: Option<[u8; 32]> = None;
        for bytes in list {
            let Ok(block) = Block::decode(&bytes) else { return };
            let hash = block.hash();
            match expect {
                None if !self.fetching.contains_key(&hash) => return,
                Some(e) if e != hash => return,
                _ => {}
            }
            self.fetching.remove(&hash);
            expect = Some(block.parent);
            if block.height <= self.tip.block.height {
                return;
            }
            if self.blocks.len() < MAX_CACHED_BLOCKS {
                self.blocks.insert(hash, block);
            } else if let Err(e) = self.store.store_unfinalized(&block) {
                // A long catch-up: park the rest in the store, not in memory.
                warn!(height = block.height, error = %e, "could not save fetched block");
                return;
            }
        }
    }
}
