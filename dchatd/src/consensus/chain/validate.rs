//! Answering the engine: building proposals and judging others', on the
//! speculative ledger state of their parent.

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{Chain, Effect, Need, PendingPropose, PendingVerify, Spec, Verdict, KEEP_STATES, RELAY_GRACE_MS};
use crate::consensus::params::MAX_PROPOSAL_TX_BYTES;
use crate::ledger::{Block, MAX_BLOCK_TXS};

impl Chain {
    /// Returns the request if it must wait.
    pub(super) fn try_propose(
        &mut self,
        mut p: PendingPropose,
        now_ms: u64,
        fx: &mut Vec<Effect>,
    ) -> Option<PendingPropose> {
        if p.resp.is_closed() || self.halted {
            return None;
        }
        let parent = match self.spec_after(p.parent, true) {
            Need::Ready(spec) => spec,
            Need::Missing(hash) => {
                self.fetch(hash, None, now_ms, fx);
                return Some(p);
            }
            Need::Retry => return Some(p),
            Need::Invalid => {
                warn!(parent = %hex::encode(p.parent), "asked to build on an invalid parent; declining");
                return None;
            }
        };
        // Built when it may be proposed, one interval after its parent, and
        // not when the engine asks: what reaches the pool meanwhile still
        // makes it in, instead of waiting a whole block more.
        let earliest = parent.state.last_timestamp_ms().saturating_add(self.cfg.interval_ms);
        if now_ms < earliest {
            if p.wake_at_ms != Some(earliest) {
                p.wake_at_ms = Some(earliest);
                fx.push(Effect::WakeAt(earliest));
            }
            return Some(p);
        }
        let timestamp = now_ms;
        let candidates = self.store.mempool(MAX_BLOCK_TXS, MAX_PROPOSAL_TX_BYTES);
        let proposal = parent.state.propose_block(candidates, timestamp, self.cfg.me);
        let block = proposal.block;
        // Hashed once, by the ledger, when it moved the state to the block.
        let hash = proposal.state.last_hash();
        let (height, txs) = (block.height, block.txs.len());
        if let Err(e) = self.store.store_unfinalized(&block) {
            // Not durable, so not proposable; the engine times the view out.
            warn!(height, error = %e, "could not save our own proposal; not proposing it");
            return None;
        }
        // Built by the rules `extend` checks, on a parent that passed them:
        // its state is the one `extend` would compute (the ledger's tests
        // hold `propose_block` and `after_block` to that), so it is not
        // applied a second time.
        self.specs.insert(
            hash,
            Arc::new(Spec {
                height,
                state: Arc::new(proposal.state),
                applied: proposal.applied,
            }),
        );
        self.blocks.insert(hash, block);
        debug!(height, txs, hash = %hex::encode(hash), "proposing");
        fx.push(Effect::AnswerPropose {
            resp: p.resp,
            digest: hash,
            at_ms: timestamp,
        });
        None
    }

    /// Returns the request if it must wait.
    pub(super) fn try_verify(&mut self, v: PendingVerify, now_ms: u64, fx: &mut Vec<Effect>) -> Option<PendingVerify> {
        if v.resp.is_closed() || self.halted {
            return None;
        }
        match self.judge(&v, now_ms, fx) {
            Verdict::Valid => {
                fx.push(Effect::AnswerVerify {
                    resp: v.resp,
                    valid: true,
                });
                None
            }
            Verdict::Invalid => {
                info!(payload = %hex::encode(v.payload), "rejecting invalid proposal");
                fx.push(Effect::AnswerVerify {
                    resp: v.resp,
                    valid: false,
                });
                None
            }
            Verdict::Wait => Some(v),
        }
    }

    pub(super) fn judge(&mut self, v: &PendingVerify, now_ms: u64, fx: &mut Vec<Effect>) -> Verdict {
        let block = self.block(&v.payload);
        if let Some(b) = &block {
            if b.height <= self.tip.block.height {
                // Asked again after a restart about a block final by now?
                let ok = b.parent == v.parent && self.is_finalized(&v.payload);
                return if ok { Verdict::Valid } else { Verdict::Invalid };
            }
        }
        let parent_ready = match self.spec_after(v.parent, true) {
            Need::Ready(_) => true,
            Need::Invalid => return Verdict::Invalid,
            Need::Retry => false,
            Need::Missing(hash) => {
                // Without the proposal, fetching it brings its ancestors too.
                if block.is_some() {
                    self.fetch(hash, Some(v.leader), now_ms, fx);
                }
                false
            }
        };
        let Some(block) = block else {
            // The leader's vote often overtakes its block on the relay
            // channel: give the relay a moment before asking for it.
            let since = *self.missing_since.entry(v.payload).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= RELAY_GRACE_MS {
                self.fetch(v.payload, Some(v.leader), now_ms, fx);
            }
            return Verdict::Wait;
        };
        if block.parent != v.parent || block.proposer != v.leader {
            return Verdict::Invalid;
        }
        if !parent_ready {
            return Verdict::Wait;
        }
        let earliest = block.timestamp_ms.saturating_sub(self.cfg.max_drift_ms);
        if earliest > now_ms {
            fx.push(Effect::WakeAt(earliest));
            return Verdict::Wait;
        }
        match self.spec_after(v.payload, true) {
            Need::Ready(_) => Verdict::Valid,
            Need::Invalid => Verdict::Invalid,
            Need::Missing(_) | Need::Retry => Verdict::Wait,
        }
    }

    /// The speculative state after `hash`, computing (and, with `persist`,
    /// saving) the blocks between it and the finalized tip.
    pub(super) fn spec_after(&mut self, hash: [u8; 32], persist: bool) -> Need {
        let mut path = Vec::new();
        let mut cur = hash;
        let base = loop {
            if cur == self.tip.hash {
                break self.tip.spec.clone();
            }
            if let Some(spec) = self.specs.get(&cur) {
                break spec.clone();
            }
            if self.invalid.contains_key(&cur) {
                self.mark_invalid(&path);
                return Need::Invalid;
            }
            match self.block(&cur) {
                None => return Need::Missing(cur),
                Some(b) if b.height <= self.tip.block.height => {
                    // Branches off below the finalized tip: a fork.
                    path.push((cur, b));
                    self.mark_invalid(&path);
                    return Need::Invalid;
                }
                Some(b) => {
                    let parent = b.parent;
                    path.push((cur, b));
                    cur = parent;
                }
            }
        };
        let mut parent = base;
        let total = path.len();
        for (i, (h, b)) in path.iter().rev().enumerate() {
            let Some(spec) = self.extend(&parent, b) else {
                self.mark_invalid(&path[..total - i]);
                return Need::Invalid;
            };
            if persist {
                if let Err(e) = self.store.store_unfinalized(b) {
                    warn!(height = b.height, error = %e, "could not save block; not voting for it yet");
                    return Need::Retry;
                }
            }
            let spec = Arc::new(spec);
            if i + KEEP_STATES >= total {
                self.specs.insert(*h, spec.clone());
            }
            parent = spec;
        }
        Need::Ready(parent)
    }

    /// The state after `block` on top of `parent`, if the block is valid there.
    pub(super) fn extend(&self, parent: &Spec, block: &Block) -> Option<Spec> {
        let earliest = parent.state.last_timestamp_ms().saturating_add(self.cfg.interval_ms);
        if block.timestamp_ms < earliest {
            info!(
                height = block.height,
                "block is less than one interval after its parent"
            );
            return None;
        }
        match parent.state.after_block(block) {
            Ok((state, applied)) => Some(Spec {
                height: block.height,
                state: Arc::new(state),
                applied,
            }),
            Err(e) => {
                info!(height = block.height, error = %e, "block breaks the ledger rules");
                None
            }
        }
    }

    pub(super) fn mark_invalid(&mut self, path: &[([u8; 32], Block)]) {
        for (h, b) in path {
            self.invalid.insert(*h, b.height);
        }
    }
}
