//! The consensus application's logic, without network or timers (STYLE.md
//! habit 6): one method per input (the engine asks to propose or verify, a
//! certificate finalizes a block, a peer sends a block or a sync message,
//! the clock ticks), each returning the effects to carry out (send these
//! bytes, answer that request, wake me at t). Only the [`ChainStore`] is
//! called directly, because it is synchronous. `actor.rs` drives it.
//!
//! What it keeps:
//! - the finalized tip and the ledger state after it;
//! - unfinalized blocks (proposals, and ancestors fetched by sync) and the
//!   speculative ledger state after each one that passed validation, so a
//!   proposal can build on a parent that is certified but not final;
//! - requests the engine is waiting on, answered once their blocks arrive.
//!
//! Validity of a block, the same on every honest node: it extends its
//! parent by one height, its timestamp is at least `parent + interval`, it
//! applies under the ledger rules to the parent's state with the state root
//! it claims, and (for a proposal) its proposer is the view's leader.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use commonware_cryptography::sha256::Digest;
use commonware_utils::channel::oneshot;
use tracing::{debug, error, info, warn};

use super::store::{ChainStore, Evidence, Finalized, FinalizedTip};
use super::wire::{blocks_within, SyncMessage, MAX_ANCESTORS};
use super::ConsensusEvent;
use crate::ledger::{Applied, Block, LedgerState, MAX_BLOCK_TXS};

/// Relayed blocks further than this above the finalized height are
/// dropped (sync fetches them if they matter).
const RELAY_WINDOW: u64 = 256;
/// Most unfinalized blocks held in memory.
const MAX_CACHED_BLOCKS: usize = 4096;
/// How long a proposal may be missing before we fetch it instead of
/// waiting for the relay.
const RELAY_GRACE_MS: u64 = 100;
/// A long speculative path keeps the states of only its newest blocks.
const KEEP_STATES: usize = 32;

/// Who a message goes to (validator keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    All,
    One([u8; 32]),
    Some(Vec<[u8; 32]>),
}

/// Which of our p2p channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Relay,
    Sync,
}

/// What the driver must do after an input.
#[derive(Debug)]
pub enum Effect {
    Send {
        net: Net,
        to: To,
        bytes: Vec<u8>,
    },
    AnswerVerify {
        resp: oneshot::Sender<bool>,
        valid: bool,
    },
    /// Answer with the proposal's digest at `at_ms` (its timestamp), not
    /// before: that is what spaces blocks one interval apart.
    AnswerPropose {
        resp: oneshot::Sender<Digest>,
        digest: [u8; 32],
        at_ms: u64,
    },
    /// Call [`Chain::tick`] at this time (a proposal from the future).
    WakeAt(u64),
    Event(ConsensusEvent),
}

/// Settings of the logic (all derived from the genesis and the timing).
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub me: [u8; 32],
    /// The other validators, asked for blocks in turn.
    pub peers: Vec<[u8; 32]>,
    pub interval_ms: u64,
    pub max_drift_ms: u64,
    pub fetch_timeout_ms: u64,
    /// Largest message we may send.
    pub max_message_bytes: usize,
    /// Ask peers for their finalized tip when nothing was finalized for
    /// this long.
    pub stall_ms: u64,
}

/// The ledger state after a block, and what its transactions did.
#[derive(Debug)]
struct Spec {
    height: u64,
    state: LedgerState,
    applied: Vec<Applied>,
}

struct Tip {
    block: Block,
    hash: [u8; 32],
    spec: Arc<Spec>,
    proof: Option<Vec<u8>>,
}

struct PendingVerify {
    parent: [u8; 32],
    leader: [u8; 32],
    payload: [u8; 32],
    resp: oneshot::Sender<bool>,
}

struct PendingPropose {
    parent: [u8; 32],
    resp: oneshot::Sender<Digest>,
}

/// The highest finalization certificate heard of and not applied yet.
#[derive(Debug, Clone, Copy)]
struct Target {
    view: u64,
    hash: [u8; 32],
}

/// The speculative state after a block, if it can be had now.
enum Need {
    Ready(Arc<Spec>),
    /// This ancestor is missing: fetch it.
    Missing([u8; 32]),
    /// The block or an ancestor breaks the rules or forks the finalized chain.
    Invalid,
    /// Could not persist; try again later.
    Retry,
}

enum Verdict {
    Valid,
    Invalid,
    Wait,
}

struct Fetch {
    sent_ms: u64,
    attempts: usize,
}

/// The logic. See the module documentation.
pub struct Chain {
    cfg: ChainConfig,
    store: Arc<dyn ChainStore>,
    tip: Tip,
    blocks: HashMap<[u8; 32], Block>,
    specs: HashMap<[u8; 32], Arc<Spec>>,
    /// Known-invalid blocks and their heights.
    invalid: HashMap<[u8; 32], u64>,
    verifies: Vec<PendingVerify>,
    proposes: Vec<PendingPropose>,
    /// The finalization being applied, and the chain from it down to the
    /// tip as far as known: (hash, parent, height), newest first. Only
    /// hashes are held; the blocks are in the cache or the store.
    target: Option<Target>,
    walk: Vec<([u8; 32], [u8; 32], u64)>,
    /// The highest finalization heard of while `target` is being applied.
    next_target: Option<Target>,
    proofs: HashMap<[u8; 32], Vec<u8>>,
    fetching: HashMap<[u8; 32], Fetch>,
    /// Proposals asked about and not received yet: since when.
    missing_since: HashMap<[u8; 32], u64>,
    next_peer: usize,
    evidence_seen: HashSet<(&'static str, u64, [u8; 32])>,
    last_finalized_ms: u64,
    tip_asked_ms: u64,
    halted: bool,
}

impl Chain {
    /// Resumes from the store's finalized tip, or from genesis.
    pub fn new(
        cfg: ChainConfig,
        store: Arc<dyn ChainStore>,
        genesis: (LedgerState, Block),
        now_ms: u64,
    ) -> Result<Chain, String> {
        let tip = match store.finalized_tip() {
            Some(FinalizedTip { block, state, proof }) => {
                let hash = block.hash();
                if state.height() != block.height || state.last_hash() != hash {
                    return Err(format!(
                        "the store's finalized state (height {}) does not belong to its tip block (height {})",
                        state.height(),
                        block.height
                    ));
                }
                if state.chain_id() != genesis.0.chain_id() {
                    return Err(format!(
                        "the store holds chain {:?}, the genesis says {:?}",
                        state.chain_id(),
                        genesis.0.chain_id()
                    ));
                }
                let spec = Arc::new(Spec {
                    height: block.height,
                    state,
                    applied: Vec::new(),
                });
                Tip {
                    block,
                    hash,
                    spec,
                    proof,
                }
            }
            None => {
                let (state, block) = genesis;
                let hash = block.hash();
                let spec = Arc::new(Spec {
                    height: 0,
                    state,
                    applied: Vec::new(),
                });
                Tip {
                    block,
                    hash,
                    spec,
                    proof: None,
                }
            }
        };
        info!(height = tip.block.height, hash = %hex::encode(tip.hash), "consensus resumes from finalized tip");
        Ok(Chain {
            cfg,
            store,
            tip,
            blocks: HashMap::new(),
            specs: HashMap::new(),
            invalid: HashMap::new(),
            verifies: Vec::new(),
            proposes: Vec::new(),
            target: None,
            walk: Vec::new(),
            next_target: None,
            proofs: HashMap::new(),
            fetching: HashMap::new(),
            missing_since: HashMap::new(),
            next_peer: 0,
            evidence_seen: HashSet::new(),
            last_finalized_ms: now_ms,
            tip_asked_ms: 0,
            halted: false,
        })
    }

    /// Height and hash of the finalized tip.
    #[cfg(test)]
    pub fn finalized(&self) -> (u64, [u8; 32]) {
        (self.tip.block.height, self.tip.hash)
    }

    /// First thing after starting: ask the peers how far the chain is.
    pub fn start(&mut self, now_ms: u64) -> Vec<Effect> {
        self.tip_asked_ms = now_ms;
        vec![Effect::Send {
            net: Net::Sync,
            to: To::All,
            bytes: SyncMessage::GetTip.encode(),
        }]
    }

    // ----- inputs from the engine -----

    /// The engine asks for a block on `parent` (we are the leader).
    pub fn propose(&mut self, parent: [u8; 32], resp: oneshot::Sender<Digest>, now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let p = PendingPropose { parent, resp };
        if let Some(p) = self.try_propose(p, now_ms, &mut fx) {
            self.proposes.push(p);
        }
        fx
    }

    /// The engine asks whether `payload`, proposed by `leader` on `parent`,
    /// is valid.
    pub fn verify(
        &mut self,
        parent: [u8; 32],
        leader: [u8; 32],
        payload: [u8; 32],
        resp: oneshot::Sender<bool>,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let v = PendingVerify {
            parent,
            leader,
            payload,
            resp,
        };
        if let Some(v) = self.try_verify(v, now_ms, &mut fx) {
            self.verifies.push(v);
        }
        fx
    }

    /// The engine asks to send the block with this hash to `to`.
    pub fn broadcast(&mut self, hash: [u8; 32], to: To) -> Vec<Effect> {
        match self.block(&hash) {
            Some(b) => vec![Effect::Send {
                net: Net::Relay,
                to,
                bytes: b.encode(),
            }],
            None => {
                warn!(hash = %hex::encode(hash), "asked to relay a block we do not have");
                Vec::new()
            }
        }
    }

    /// A finalization certificate (verified by the caller) names `hash`.
    pub fn finalization(&mut self, view: u64, hash: [u8; 32], proof: Vec<u8>, now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.is_finalized(&hash) {
            return fx;
        }
        let highest = self.target.iter().chain(&self.next_target).map(|t| t.view).max();
        if highest.is_none_or(|h| view > h) {
            self.next_target = Some(Target { view, hash });
        }
        self.proofs.insert(hash, proof);
        self.progress(now_ms, &mut fx);
        fx
    }

    /// Verified evidence of equivocation.
    pub fn evidence(&mut self, evidence: Evidence) -> Vec<Effect> {
        if self.evidence_seen.len() > 4096 {
            self.evidence_seen.clear();
        }
        if !self
            .evidence_seen
            .insert((evidence.kind, evidence.view, evidence.signer))
        {
            return Vec::new();
        }
        warn!(kind = evidence.kind, view = evidence.view, signer = %hex::encode(evidence.signer), "validator equivocated");
        self.store.record_evidence(&evidence);
        vec![Effect::Event(ConsensusEvent::Evidence(evidence))]
    }

    // ----- inputs from peers -----

    /// A block on the relay channel.
    pub fn relayed(&mut self, bytes: &[u8], now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Ok(block) = Block::decode(bytes) else {
            debug!("dropping undecodable relayed block");
            return fx;
        };
        let height = block.height;
        if height <= self.tip.block.height || height > self.tip.block.height + RELAY_WINDOW {
            return fx;
        }
        if self.blocks.len() >= MAX_CACHED_BLOCKS {
            debug!(height, "block cache full, dropping relayed block");
            return fx;
        }
        let hash = block.hash();
        if self.blocks.insert(hash, block).is_none() {
            self.fetching.remove(&hash);
            self.progress(now_ms, &mut fx);
        }
        fx
    }

    /// A message on the sync channel from validator `from`, except `Tip`,
    /// whose certificate the driver checks first (see [`Chain::tip_block`]).
    pub fn sync(&mut self, from: [u8; 32], msg: SyncMessage, now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        match msg {
            SyncMessage::GetAncestors { digest, max } => {
                let reply = self.ancestors(digest, max.min(MAX_ANCESTORS));
                fx.push(Effect::Send {
                    net: Net::Sync,
                    to: To::One(from),
                    bytes: reply.encode(),
                });
            }
            SyncMessage::Blocks(list) => {
                self.fetched(list);
                self.progress(now_ms, &mut fx);
            }
            SyncMessage::GetTip => {
                if let Some(proof) = &self.tip.proof {
                    let reply = SyncMessage::Tip {
                        finalization: proof.clone(),
                        block: self.tip.block.encode(),
                    };
                    fx.push(Effect::Send {
                        net: Net::Sync,
                        to: To::One(from),
                        bytes: reply.encode(),
                    });
                }
            }
            SyncMessage::Tip { .. } => {}
        }
        fx
    }

    /// The block of a peer's `Tip` whose certificate names `hash` (checked
    /// by the caller); the certificate itself goes to [`Chain::finalization`].
    pub fn tip_block(&mut self, hash: [u8; 32], bytes: &[u8]) {
        if let Ok(block) = Block::decode(bytes) {
            if block.hash() == hash && block.height > self.tip.block.height && self.blocks.len() < MAX_CACHED_BLOCKS {
                self.blocks.insert(hash, block);
            }
        }
    }

    /// Periodic: retries fetches, forgets abandoned requests, asks for the
    /// tip when stalled.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.progress(now_ms, &mut fx);
        let stale = self.cfg.fetch_timeout_ms.saturating_mul(10);
        self.fetching.retain(|_, f| now_ms.saturating_sub(f.sent_ms) < stale);
        self.missing_since
            .retain(|_, since| now_ms.saturating_sub(*since) < stale);
        let stall = self.cfg.stall_ms;
        if now_ms.saturating_sub(self.last_finalized_ms) >= stall && now_ms.saturating_sub(self.tip_asked_ms) >= stall {
            self.tip_asked_ms = now_ms;
            debug!(
                height = self.tip.block.height,
                "no finalization for a while, asking peers for their tip"
            );
            fx.push(Effect::Send {
                net: Net::Sync,
                to: To::All,
                bytes: SyncMessage::GetTip.encode(),
            });
        }
        fx
    }

    // ----- the work -----

    /// Re-examines everything waiting: the finalization target, then the
    /// engine's pending requests.
    fn progress(&mut self, now_ms: u64, fx: &mut Vec<Effect>) {
        self.apply_target(now_ms, fx);
        for p in std::mem::take(&mut self.proposes) {
            if let Some(p) = self.try_propose(p, now_ms, fx) {
                self.proposes.push(p);
            }
        }
        for v in std::mem::take(&mut self.verifies) {
            if let Some(v) = self.try_verify(v, now_ms, fx) {
                self.verifies.push(v);
            }
        }
    }

    /// Returns the request if it must wait.
    fn try_propose(&mut self, p: PendingPropose, now_ms: u64, fx: &mut Vec<Effect>) -> Option<PendingPropose> {
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
        let timestamp = now_ms.max(parent.state.last_timestamp_ms().saturating_add(self.cfg.interval_ms));
        let candidates = self.store.mempool(MAX_BLOCK_TXS, super::params::MAX_PROPOSAL_TX_BYTES);
        let proposal = parent.state.propose_block(candidates, timestamp, self.cfg.me);
        let block = proposal.block;
        let hash = block.hash();
        let (height, txs) = (block.height, block.txs.len());
        self.blocks.insert(hash, block);
        match self.spec_after(hash, true) {
            Need::Ready(_) => {
                debug!(height, txs, hash = %hex::encode(hash), "proposing");
                fx.push(Effect::AnswerPropose {
                    resp: p.resp,
                    digest: hash,
                    at_ms: timestamp,
                });
                None
            }
            Need::Retry => {
                // Not durable, so not proposable; the engine times the view out.
                None
            }
            Need::Missing(_) | Need::Invalid => {
                error!(height, "our own proposal does not validate; declining");
                None
            }
        }
    }

    /// Returns the request if it must wait.
    fn try_verify(&mut self, v: PendingVerify, now_ms: u64, fx: &mut Vec<Effect>) -> Option<PendingVerify> {
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

    fn judge(&mut self, v: &PendingVerify, now_ms: u64, fx: &mut Vec<Effect>) -> Verdict {
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
    fn spec_after(&mut self, hash: [u8; 32], persist: bool) -> Need {
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
            if persist && std::env::var("NOPERSIST").is_err() {
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
    fn extend(&self, parent: &Spec, block: &Block) -> Option<Spec> {
        let earliest = parent.state.last_timestamp_ms().saturating_add(self.cfg.interval_ms);
        if block.timestamp_ms < earliest {
            info!(
                height = block.height,
                "block is less than one interval after its parent"
            );
            return None;
        }
        let mut state = parent.state.clone();
        match state.apply_block(block) {
            Ok(applied) => Some(Spec {
                height: block.height,
                state,
                applied,
            }),
            Err(e) => {
                info!(height = block.height, error = %e, "block breaks the ledger rules");
                None
            }
        }
    }

    fn mark_invalid(&mut self, path: &[([u8; 32], Block)]) {
        for (h, b) in path {
            self.invalid.insert(*h, b.height);
        }
    }

    /// Applies the finalized chain up to the target, fetching what is
    /// missing, then adopts the next target.
    fn apply_target(&mut self, now_ms: u64, fx: &mut Vec<Effect>) {
        while !self.halted {
            if self.target.is_none() {
                self.target = self.next_target.take();
                self.walk.clear();
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
    fn finalize_next(&mut self, hash: [u8; 32], block: Block, now_ms: u64, fx: &mut Vec<Effect>) -> bool {
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

    fn halt(&mut self, reason: String, fx: &mut Vec<Effect>) {
        error!(%reason, "consensus halted: refusing to apply further blocks");
        self.halted = true;
        fx.push(Effect::Event(ConsensusEvent::Halted {
            height: self.tip.block.height,
            reason,
        }));
    }

    /// Forgets what the finalized tip made irrelevant.
    fn prune(&mut self) {
        let h = self.tip.block.height;
        self.blocks.retain(|_, b| b.height > h);
        self.specs.retain(|_, s| s.height > h);
        self.invalid.retain(|_, height| *height > h);
        let keep: Vec<[u8; 32]> = self.target.iter().chain(&self.next_target).map(|t| t.hash).collect();
        let blocks = &self.blocks;
        self.proofs.retain(|k, _| blocks.contains_key(k) || keep.contains(k));
    }

    /// A block by hash: cached, else saved in the store.
    fn block(&mut self, hash: &[u8; 32]) -> Option<Block> {
        if *hash == self.tip.hash {
            return Some(self.tip.block.clone());
        }
        if let Some(b) = self.blocks.get(hash) {
            return Some(b.clone());
        }
        let b = self.store.block_by_hash(hash)?;
        if b.height > self.tip.block.height && self.blocks.len() < MAX_CACHED_BLOCKS {
            self.blocks.insert(*hash, b.clone());
        }
        Some(b)
    }

    fn is_finalized(&self, hash: &[u8; 32]) -> bool {
        if *hash == self.tip.hash {
            return true;
        }
        if self.blocks.contains_key(hash) {
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
    fn fetch(&mut self, hash: [u8; 32], hint: Option<[u8; 32]>, now_ms: u64, fx: &mut Vec<Effect>) {
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
    fn ancestors(&mut self, hash: [u8; 32], max: u16) -> SyncMessage {
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
    fn fetched(&mut self, list: Vec<Vec<u8>>) {
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

#[cfg(test)]
mod tests;
