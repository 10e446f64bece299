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
use tracing::{debug, info, warn};

use super::store::{ChainStore, Evidence, FinalizedTip};
use super::wire::{SyncMessage, MAX_ANCESTORS};
use super::ConsensusEvent;
use crate::ledger::{Applied, Block, LedgerState};

/// Relayed blocks further than this above the finalized height are
/// dropped (sync fetches them if they matter).
const RELAY_WINDOW: u64 = 256;
/// Most unfinalized blocks held in memory (more are parked in the store).
const MAX_CACHED_BLOCKS: usize = 4096;
/// Most relayed blocks held: anyone may relay one, so they are kept apart
/// from the blocks we fetched along certified hash chains.
const MAX_RELAYED_BLOCKS: usize = 64;
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
    /// Shared with the chain store once final: no copy of the whole state.
    state: Arc<LedgerState>,
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
    /// The wake-up asked for to build it, so that it is asked for once.
    wake_at_ms: Option<u64>,
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
    /// Unfinalized blocks we built or fetched by hash.
    blocks: HashMap<[u8; 32], Block>,
    /// Unfinalized blocks peers sent on the relay channel.
    relayed: HashMap<[u8; 32], Block>,
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
                    state: Arc::new(state),
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
                    state: Arc::new(state),
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
            relayed: HashMap::new(),
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
        let p = PendingPropose {
            parent,
            resp,
            wake_at_ms: None,
        };
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
        let hash = block.hash();
        if self.blocks.contains_key(&hash) || self.relayed.contains_key(&hash) {
            return fx;
        }
        if self.relayed.len() >= MAX_RELAYED_BLOCKS {
            // Full (of junk, since honest relays are a few unfinalized
            // blocks): drop the highest one if this one is lower.
            let highest = self
                .relayed
                .iter()
                .max_by_key(|(_, b)| b.height)
                .map(|(h, b)| (*h, b.height));
            match highest {
                Some((victim, h)) if h > height => {
                    self.relayed.remove(&victim);
                }
                _ => {
                    debug!(height, "relay cache full, dropping relayed block");
                    return fx;
                }
            }
        }
        self.relayed.insert(hash, block);
        self.fetching.remove(&hash);
        self.progress(now_ms, &mut fx);
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

    // ----- the work (also in validate.rs, finalize.rs, fetch.rs) -----

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
}

mod fetch;
mod finalize;
#[cfg(test)]
mod tests;
mod validate;
