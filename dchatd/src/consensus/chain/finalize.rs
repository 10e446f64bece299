//! Applying finalized blocks: walk down from the certified block to our
//! tip, then hand each block, oldest first, to the store.

use std::sync::Arc;

use tracing::{error, info, warn};

use super::{Chain, Effect, Tip};
use crate::consensus::store::Finalized;
use crate::consensus::ConsensusEvent;
use crate::ledger::Block;

impl Chain {
    /// Applies the finalized chain up to the target, fetching what is
    /// missing, then adopts the next target.
    pub(super) fn apply_target(&mut self, now_ms: u64, fx: &mut Vec<Effect>) {
        while !self.halted {
            if self.target.is_none() {
                self.target = self.next_target.take();
                self.walk.clear();
                if self.target.is_some_and(|t| self.is_finalized(&t.hash)) {
                    self.target = None;
                    continue;
                }
            }
            let Some(target) = self.target else { return };
            // Walk down from the target until the chain meets our tip.
            loop {
                let cur = self.walk.last().map_or(target.hash, |&(_, parent, _)| parent);
                if cur == self.tip.hash {
                    break;
                }
                match self.block(&cur) {
                    None => {
                        self.fetch(cur, None, now_ms, fx);
                        return;
                    }
                    Some(b) if b.height <= self.tip.block.height => {
                        let reason = format!(
                            "a finalization certificate names block {} whose ancestor at height {} is not on our finalized chain",
                            hex::encode(target.hash),
                            b.height
                        );
                        self.halt(reason, fx);
                        return;
                    }
                    Some(b) => self.walk.push((cur, b.parent, b.height)),
                }
            }
            // Apply from the bottom; a failure leaves the rest of the walk.
            while let Some(&(hash, _, _)) = self.walk.last() {
                let Some(block) = self.block(&hash) else {
                    self.walk.clear();
                    return;
                };
                if !self.finalize_next(hash, block, now_ms, fx) {
                    return;
                }
                self.walk.pop();
            }
            self.target = None;
        }
    }

    /// Finalizes `block`, the child of the tip. False if it must wait.
    pub(super) fn finalize_next(&mut self, hash: [u8; 32], block: Block, now_ms: u64, fx: &mut Vec<Effect>) -> bool {
        let spec = match self.specs.get(&hash) {
            Some(spec) => spec.clone(),
            None => match self.extend(&self.tip.spec, &block) {
                Some(spec) => Arc::new(spec),
                None => {
                    let reason = format!(
                        "finalized block {} at height {} is invalid under our ledger rules",
                        hex::encode(hash),
                        block.height
                    );
                    self.halt(reason, fx);
                    return false;
                }
            },
        };
        let proof = self.proofs.get(&hash).map(|p| p.as_slice());
        let done = self.store.finalize(Finalized {
            block: &block,
            hash,
            proof,
            state: &spec.state,
            applied: &spec.applied,
        });
        if let Err(e) = done {
            warn!(height = block.height, error = %e, "could not persist finalized block; will retry");
            return false;
        }
        let proof = self.proofs.remove(&hash);
        info!(height = block.height, hash = %hex::encode(hash), txs = block.txs.len(), "finalized");
        fx.push(Effect::Event(ConsensusEvent::Finalized {
            height: block.height,
            hash,
        }));
        self.tip = Tip {
            block,
            hash,
            spec,
            proof,
        };
        self.last_finalized_ms = now_ms;
        self.prune();
        true
    }

    pub(super) fn halt(&mut self, reason: String, fx: &mut Vec<Effect>) {
        error!(%reason, "consensus halted: refusing to apply further blocks");
        self.halted = true;
        fx.push(Effect::Event(ConsensusEvent::Halted {
            height: self.tip.block.height,
            reason,
        }));
    }

    /// Forgets what the finalized tip made irrelevant.
    pub(super) fn prune(&mut self) {
        let h = self.tip.block.height;
        self.blocks.retain(|_, b| b.height > h);
        self.relayed.retain(|_, b| b.height > h);
        self.specs.retain(|_, s| s.height > h);
        self.invalid.retain(|_, height| *height > h);
        let keep: Vec<[u8; 32]> = self.target.iter().chain(&self.next_target).map(|t| t.hash).collect();
        let (blocks, relayed) = (&self.blocks, &self.relayed);
        self.proofs
            .retain(|k, _| blocks.contains_key(k) || relayed.contains_key(k) || keep.contains(k));
    }
}
