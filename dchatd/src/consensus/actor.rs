//! Runs [`Chain`] against the engine and the network: the engine's calls
//! arrive through [`Mailbox`], peers' messages through the relay and sync
//! receivers, and the effects `Chain` returns are carried out here (send,
//! answer, sleep). Signatures are checked here too (finalization
//! certificates from peers, equivocation evidence), so `Chain` sees only
//! verified facts.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commonware_actor::Feedback;
use commonware_codec::{Decode, Encode};
use commonware_consensus::simplex::types::Attributable;
use commonware_consensus::simplex::Plan;
use commonware_consensus::{Automaton, CertifiableAutomaton, Relay, Reporter, Viewable};
use commonware_cryptography::certificate::{Scheme as _, Verifier as _};
use commonware_cryptography::ed25519::PublicKey;
use commonware_cryptography::sha256::Digest;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Spawner, Supervisor};
use commonware_utils::channel::{mpsc, oneshot};
use rand_core::CryptoRng;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::chain::{Chain, Effect, Net, To};
use super::params::{key_bytes, Activity, Context, Finalization, Scheme};
use super::store::Evidence;
use super::wire::SyncMessage;
use super::ConsensusEvent;

/// How often pending work is re-examined (fetch retries, stalls).
const TICK: Duration = Duration::from_millis(100);

/// A request from the engine.
pub(crate) enum Message {
    Propose {
        ctx: Context,
        resp: oneshot::Sender<Digest>,
    },
    Verify {
        ctx: Context,
        payload: Digest,
        resp: oneshot::Sender<bool>,
    },
    Broadcast {
        payload: Digest,
        plan: Plan<PublicKey>,
    },
    Finalization(Box<Finalization>),
    Evidence(Box<Activity>),
}

/// The engine's handle on the application: the Automaton (propose,
/// verify), the Relay (send a block) and the Reporter (finalizations and
/// evidence; every other activity is dropped here, unexamined).
#[derive(Clone)]
pub(crate) struct Mailbox(mpsc::UnboundedSender<Message>);

impl Automaton for Mailbox {
    type Context = Context;
    type Digest = Digest;

    async fn propose(&mut self, ctx: Context) -> oneshot::Receiver<Digest> {
        let (resp, rx) = oneshot::channel();
        // If the actor is gone, `resp` drops and the engine sees a decline.
        let _ = self.0.send(Message::Propose { ctx, resp });
        rx
    }

    async fn verify(&mut self, ctx: Context, payload: Digest) -> oneshot::Receiver<bool> {
        let (resp, rx) = oneshot::channel();
        let _ = self.0.send(Message::Verify { ctx, payload, resp });
        rx
    }
}

/// The defaults: no pipelined proposals, and certify whatever we verified.
impl CertifiableAutomaton for Mailbox {}

impl Relay for Mailbox {
    type Digest = Digest;
    type PublicKey = PublicKey;
    type Plan = Plan<PublicKey>;

    fn broadcast(&mut self, payload: Digest, plan: Plan<PublicKey>) -> Feedback {
        match self.0.send(Message::Broadcast { payload, plan }) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

impl Reporter for Mailbox {
    type Activity = Activity;

    fn report(&mut self, activity: Activity) -> Feedback {
        let msg = match activity {
            Activity::Finalization(f) => Message::Finalization(Box::new(f)),
            a
            @ (Activity::ConflictingNotarize(_) | Activity::ConflictingFinalize(_) | Activity::NullifyFinalize(_)) => {
                Message::Evidence(Box::new(a))
            }
            _ => return Feedback::Ok,
        };
        match self.0.send(msg) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

pub(crate) struct Actor<E> {
    ctx: E,
    rng: E,
    chain: Chain,
    inbox: mpsc::UnboundedReceiver<Message>,
    wake_tx: mpsc::UnboundedSender<()>,
    wake_rx: mpsc::UnboundedReceiver<()>,
    /// Checks certificates and evidence.
    verifier: Scheme,
    keys: HashMap<[u8; 32], PublicKey>,
    events: broadcast::Sender<ConsensusEvent>,
    max_message_bytes: usize,
}

impl<E: Clock + Spawner + Supervisor + CryptoRng> Actor<E> {
    /// Spawns the actor as a task of `ctx`; the timers it starts are its
    /// children, so aborting the returned handle stops them all.
    pub(crate) fn start<S, R>(
        ctx: E,
        chain: Chain,
        verifier: Scheme,
        events: broadcast::Sender<ConsensusEvent>,
        max_message_bytes: usize,
        relay: (S, R),
        sync: (S, R),
    ) -> (Handle<()>, Mailbox)
    where
        S: Sender<PublicKey = PublicKey>,
        R: Receiver<PublicKey = PublicKey>,
    {
        let (tx, inbox) = mpsc::unbounded_channel();
        let handle = ctx.spawn(move |ctx| {
            let (wake_tx, wake_rx) = mpsc::unbounded_channel();
            let keys = verifier
                .participants()
                .iter()
                .map(|k| (key_bytes(k), k.clone()))
                .collect();
            let rng = ctx.child("rng");
            let actor = Actor {
                ctx,
                rng,
                chain,
                inbox,
                wake_tx,
                wake_rx,
                verifier,
                keys,
                events,
                max_message_bytes,
            };
            actor.run(relay, sync)
        });
        (handle, Mailbox(tx))
    }

    fn now_ms(&self) -> u64 {
        millis(self.ctx.current())
    }

    /// Runs until the engine drops its mailbox or the network closes.
    async fn run<S, R>(mut self, relay: (S, R), sync: (S, R))
    where
        S: Sender<PublicKey = PublicKey>,
        R: Receiver<PublicKey = PublicKey>,
    {
        let (mut relay_tx, mut relay_rx) = relay;
        let (mut sync_tx, mut sync_rx) = sync;
        let now = self.now_ms();
        let fx = self.chain.start(now);
        self.execute(fx, &mut relay_tx, &mut sync_tx);
        let mut next_tick = self.ctx.current() + TICK;
        loop {
            let fx = tokio::select! {
                biased;
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                got = relay_rx.recv() => match got {
                    Ok((_, bytes)) => {
                        let now = self.now_ms();
                        self.chain.relayed(bytes.as_ref(), now)
                    }
                    Err(e) => {
                        debug!(error = %e, "relay channel closed");
                        break;
                    }
                },
                got = sync_rx.recv() => match got {
                    Ok((from, bytes)) => self.sync(from, bytes.as_ref()),
                    Err(e) => {
                        debug!(error = %e, "sync channel closed");
                        break;
                    }
                },
                Some(()) = self.wake_rx.recv() => {
                    let now = self.now_ms();
                    self.chain.tick(now)
                },
                () = self.ctx.sleep_until(next_tick) => {
                    next_tick = self.ctx.current() + TICK;
                    let now = self.now_ms();
                    self.chain.tick(now)
                },
            };
            self.execute(fx, &mut relay_tx, &mut sync_tx);
        }
    }

    fn handle(&mut self, msg: Message) -> Vec<Effect> {
        let now = self.now_ms();
        match msg {
            Message::Propose { ctx, resp } => self.chain.propose(ctx.parent.1 .0, resp, now),
            Message::Verify { ctx, payload, resp } => {
                self.chain
                    .verify(ctx.parent.1 .0, key_bytes(&ctx.leader), payload.0, resp, now)
            }
            Message::Broadcast { payload, plan } => {
                let to = match plan {
                    Plan::Propose { .. } | Plan::Prepare { .. } => To::All,
                    Plan::Forward { recipients, .. } => match recipients {
                        Recipients::All => To::All,
                        Recipients::One(k) => To::One(key_bytes(&k)),
                        Recipients::Some(ks) => To::Some(ks.iter().map(key_bytes).collect()),
                    },
                };
                self.chain.broadcast(payload.0, to)
            }
            Message::Finalization(f) => {
                // The engine reports only certificates it verified.
                let view = f.view().get();
                self.chain
                    .finalization(view, f.proposal.payload.0, f.encode().to_vec(), now)
            }
            Message::Evidence(activity) => match self.evidence(&activity) {
                Some(ev) => self.chain.evidence(ev),
                None => Vec::new(),
            },
        }
    }

    /// Checks both signatures of reported evidence (votes from peers reach
    /// the reporter unverified).
    fn evidence(&mut self, activity: &Activity) -> Option<Evidence> {
        if !activity.verify(&mut self.rng, &self.verifier, &Sequential) {
            warn!("dropping evidence with a bad signature");
            return None;
        }
        let (kind, view, signer, bytes) = match activity {
            Activity::ConflictingNotarize(e) => ("conflicting_notarize", e.view(), e.signer(), e.encode()),
            Activity::ConflictingFinalize(e) => ("conflicting_finalize", e.view(), e.signer(), e.encode()),
            Activity::NullifyFinalize(e) => ("nullify_finalize", e.view(), e.signer(), e.encode()),
            _ => return None,
        };
        let signer = self.verifier.participants().get(usize::from(signer))?;
        Some(Evidence {
            kind,
            view: view.get(),
            signer: key_bytes(signer),
            bytes: bytes.to_vec(),
        })
    }

    fn sync(&mut self, from: PublicKey, bytes: &[u8]) -> Vec<Effect> {
        let now = self.now_ms();
        let Some(msg) = SyncMessage::decode(bytes) else {
            debug!(peer = %from, "dropping malformed sync message");
            return Vec::new();
        };
        if let SyncMessage::Tip { finalization, block } = &msg {
            let cfg = self.verifier.certificate_codec_config();
            let Ok(f) = Finalization::decode_cfg(finalization.clone(), &cfg) else {
                debug!(peer = %from, "dropping undecodable finalization");
                return Vec::new();
            };
            if f.proposal.round.epoch().get() != 0 || !f.verify(&mut self.rng, &self.verifier, &Sequential) {
                warn!(peer = %from, "dropping a tip with an invalid finalization certificate");
                return Vec::new();
            }
            let hash = f.proposal.payload.0;
            self.chain.tip_block(hash, block);
            return self.chain.finalization(f.view().get(), hash, finalization.clone(), now);
        }
        self.chain.sync(key_bytes(&from), msg, now)
    }

    fn execute<S: Sender<PublicKey = PublicKey>>(&mut self, fx: Vec<Effect>, relay: &mut S, sync: &mut S) {
        for effect in fx {
            match effect {
                Effect::Send { net, to, bytes } => {
                    if bytes.len() > self.max_message_bytes {
                        warn!(len = bytes.len(), "message over the size limit not sent");
                        continue;
                    }
                    let Some(recipients) = self.recipients(to) else {
                        continue;
                    };
                    let sender = match net {
                        Net::Relay => &mut *relay,
                        Net::Sync => &mut *sync,
                    };
                    sender.send(recipients, bytes, false);
                }
                Effect::AnswerVerify { resp, valid } => {
                    let _ = resp.send(valid);
                }
                Effect::AnswerPropose { resp, digest, at_ms } => {
                    let now = self.now_ms();
                    if at_ms <= now {
                        let _ = resp.send(Digest(digest));
                    } else {
                        let at = UNIX_EPOCH + Duration::from_millis(at_ms);
                        self.ctx.child("propose_at").spawn(move |ctx| async move {
                            ctx.sleep_until(at).await;
                            let _ = resp.send(Digest(digest));
                        });
                    }
                }
                Effect::WakeAt(at_ms) => {
                    let at = UNIX_EPOCH + Duration::from_millis(at_ms);
                    let wake = self.wake_tx.clone();
                    self.ctx.child("wake_at").spawn(move |ctx| async move {
                        ctx.sleep_until(at).await;
                        let _ = wake.send(());
                    });
                }
                Effect::Event(event) => {
                    // No subscriber is fine.
                    let _ = self.events.send(event);
                }
            }
        }
    }

    fn recipients(&self, to: To) -> Option<Recipients<PublicKey>> {
        Some(match to {
            To::All => Recipients::All,
            To::One(k) => Recipients::One(self.keys.get(&k)?.clone()),
            To::Some(ks) => Recipients::Some(ks.iter().filter_map(|k| self.keys.get(k).cloned()).collect()),
        })
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
