//! Batching on the direct-message path, so that its cost under load is per
//! batch, not per message:
//!
//! - shared envelopes: a send hands its draft to one sealer task, which
//!   takes every draft waiting, seals those of one conversation together
//!   into one envelope (one Noise handshake, so one set of X25519
//!   operations at each end, for up to [`MAX_DMS_PER_ENVELOPE`] messages;
//!   ADR 0017) on the blocking pool, and hands each envelope to the
//!   writer. Alone, a draft is sealed at once; under load, those that
//!   queued while the last ones were sealed share envelopes.
//! - group commit: sends and arrivals hand their writes to one writer task,
//!   which stores everything waiting in one transaction (one fsync) and
//!   answers each caller once it is durable; a write that fails is rolled
//!   back alone (`Database::write_dms`). Alone, a write is committed at
//!   once; under load, the writes that queued during one commit share the
//!   next.
//! - coalesced acknowledgements: a received message's `Delivered` is not
//!   sealed and sent on its own; the ids one request brought in from one
//!   sender go back in one acknowledgement, queued before that request is
//!   answered ([`Acks`]).

use std::collections::HashMap;
use std::sync::Arc;

use dchat_keyfile::Identity;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::dm::{self, Draft, Sealed};
use super::{lock, wire, Shared};
use crate::ledger::Account;
use crate::messaging::{Content, MAX_ACK_IDS, MAX_DMS_PER_ENVELOPE, MAX_MESSAGE_BYTES_PER_ENVELOPE};
use crate::service::{Node, ServiceError};
use crate::storage::{DmWrite, MessageRow};

/// Most writes in one transaction, and most drafts one sealing round takes.
const MAX_BATCH: usize = 512;

/// What a [`Batched`] task answers one request with.
type Reply<R> = oneshot::Sender<Result<R, ServiceError>>;
/// Where a [`Batched`] task takes its requests from.
pub type Requests<T, R> = mpsc::Receiver<(T, Reply<R>)>;

/// The handle to a task that takes requests in batches and answers each
/// ([`run_sealer`], [`run_writer`]).
pub struct Batched<T, R> {
    jobs: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Batched<T, R> {
    /// The handle and the receiving end for the task.
    pub fn new() -> (Batched<T, R>, Requests<T, R>) {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        (Batched { jobs }, rx)
    }

    /// Hands `request` to the task and waits for its answer.
    pub async fn submit(&self, request: T) -> Result<R, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((request, reply))
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        answer.await.map_err(|_| ServiceError::ShuttingDown)?
    }
}

/// Where sends hand their drafts ([`run_sealer`]): the answer is the
/// message's copy once its envelope is committed to the outbox.
pub type DmSealer = Batched<Draft, MessageRow>;
type SealJob = (Draft, Reply<MessageRow>);

/// Where sends and arrivals hand their writes ([`run_writer`]): the answer
/// is whether the write was new, once it is committed.
pub type DmWriter = Batched<DmWrite, bool>;

/// The sealer task: takes the drafts waiting, seals each conversation's
/// into as few envelopes as fit ([`pack`]), the envelopes split over one
/// blocking task per core; then hands each envelope to the writer and
/// answers its drafts once it is committed, while the next drafts are
/// sealed.
pub async fn run_sealer(shared: Arc<Shared>, mut jobs: Requests<Draft, MessageRow>, stop: CancellationToken) {
    while let Some(batch) = next_batch(&mut jobs, &stop).await {
        // A pack whose task panics gives no result: its replies are
        // dropped, so those sends fail (as ShuttingDown) rather than hang.
        let sealed = on_cores("sealing direct messages", pack(batch), |packs| {
            packs
                .into_iter()
                .map(|jobs| {
                    let (drafts, replies): (Vec<Draft>, Vec<_>) = jobs.into_iter().unzip();
                    (dm::seal_together(drafts), replies)
                })
                .collect()
        })
        .await;
        for (sealed, replies) in sealed {
            match sealed {
                Ok(sealed) => {
                    tokio::spawn(commit_and_answer(Arc::clone(&shared), sealed, replies));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot seal direct messages");
                    for reply in replies {
                        let _ = reply.send(Err(ServiceError::Internal(e.to_string())));
                    }
                }
            }
        }
    }
}

/// Drafts in the order they came, grouped by conversation, each group cut
/// into envelopes' worth.
fn pack(batch: Vec<SealJob>) -> Vec<Vec<SealJob>> {
    let mut conversations: Vec<Vec<SealJob>> = Vec::new();
    for job in batch {
        match conversations.iter_mut().find(|c| c[0].0.same_conversation(&job.0)) {
            Some(c) => c.push(job),
            None => conversations.push(vec![job]),
        }
    }
    conversations
        .into_iter()
        .flat_map(|c| {
            wire::packs(
                c,
                |(draft, _)| draft.encoded_len(),
                MAX_MESSAGE_BYTES_PER_ENVELOPE,
                MAX_DMS_PER_ENVELOPE,
            )
        })
        .collect()
}

/// Commits a sealed envelope with its messages and answers each draft.
async fn commit_and_answer(shared: Arc<Shared>, sealed: Sealed, replies: Vec<Reply<MessageRow>>) {
    let Sealed { rows, entry } = sealed;
    let stored = rows
        .iter()
        .filter(|(_, is_text)| *is_text)
        .map(|(row, _)| row.clone())
        .collect();
    match shared.dm_writer.submit(DmWrite::Outgoing(stored, entry)).await {
        Ok(_) => {
            shared.metrics.dm_envelopes_sealed.inc();
            shared.metrics.dm_messages_sealed.inc_by(rows.len() as u64);
            dm::queued(&shared, &rows);
            for ((row, _), reply) in rows.into_iter().zip(replies) {
                let _ = reply.send(Ok(row));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(ServiceError::Internal(why.clone())));
            }
        }
    }
}

/// The cores this process may run on (work is split in as many parts).
pub(super) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Runs `work` over `items` on the blocking pool, split in as many parts
/// as there are cores: not on the threads the network runs on, and not one
/// thread wake-up per item. The results in order; a part whose task fails
/// (a panic) gives none, and is logged as `what` failing.
pub(super) async fn on_cores<T, R>(what: &str, mut items: Vec<T>, work: fn(Vec<T>) -> Vec<R>) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let per_task = items.len().div_ceil(cores()).max(1);
    let mut tasks = Vec::new();
    while !items.is_empty() {
        let part: Vec<T> = items.drain(..per_task.min(items.len())).collect();
        tasks.push(tokio::task::spawn_blocking(move || work(part)));
    }
    let mut out = Vec::new();
    for task in tasks {
        match task.await {
            Ok(results) => out.extend(results),
            Err(e) => tracing::error!(error = %e, "{what} failed"),
        }
    }
    out
}

/// Everything waiting in `jobs`, up to [`MAX_BATCH`] and at least one;
/// None once stopped or when every handle is gone.
async fn next_batch<T, R>(jobs: &mut Requests<T, R>, stop: &CancellationToken) -> Option<Vec<(T, Reply<R>)>> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    tokio::select! {
        _ = stop.cancelled() => None,
        n = jobs.recv_many(&mut batch, MAX_BATCH) => (n > 0).then_some(batch),
    }
}

/// The writer task: takes what is waiting, commits it together, answers.
pub async fn run_writer(node: Arc<Node>, mut jobs: Requests<DmWrite, bool>, stop: CancellationToken) {
    while let Some(batch) = next_batch(&mut jobs, &stop).await {
        let (writes, replies): (Vec<DmWrite>, Vec<_>) = batch.into_iter().unzip();
        match node.with_db(move |db, _| Ok(db.write_dms(&writes)?)).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome.map_err(ServiceError::from));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "direct messages not stored");
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(ServiceError::Internal(why.clone())));
                }
            }
        }
    }
}

/// Ids waiting to be acknowledged to one sender by one local account.
struct PendingAck {
    identity: Identity,
    sender: Account,
    ids: Vec<[u8; 16]>,
}

/// The acknowledgements owed for what one request (a delivery batch, a
/// mailbox page, a delivery round) brought in, by (local account, sender).
/// [`Acks::queue`] seals one `Delivered` per pair and queues it before the
/// request is answered, so an acknowledgement is durable whenever the
/// message it acknowledges is.
#[derive(Default)]
pub struct Acks {
    pending: std::sync::Mutex<HashMap<(String, String), PendingAck>>,
}

impl Acks {
    /// Owes `sender` an acknowledgement of `id` from `account`.
    pub fn push(&self, account: &str, identity: &Identity, sender: &Account, id: [u8; 16]) {
        lock(&self.pending)
            .entry((account.to_string(), sender.name.clone()))
            .or_insert_with(|| PendingAck {
                identity: identity.clone(),
                sender: sender.clone(),
                ids: Vec::new(),
            })
            .ids
            .push(id);
    }

    /// Seals and queues what is owed: one message per (account, sender),
    /// each id once.
    pub async fn queue(self, node: &Arc<Node>) {
        let pending = self.pending.into_inner().unwrap_or_else(|p| p.into_inner());
        for ((account, _), mut ack) in pending {
            ack.ids.sort_unstable();
            ack.ids.dedup();
            for ids in ack.ids.chunks(MAX_ACK_IDS) {
                let content = Content::Delivered(ids.to_vec());
                if let Err(e) = super::dm::queue(node, &account, &ack.identity, &ack.sender, content).await {
                    tracing::warn!(error = %e, "cannot queue a delivery acknowledgement");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::DirectMessage;

    fn ident(seed: u8) -> Identity {
        Identity::from_secrets(&[seed; 32], &[seed.wrapping_add(100); 32])
    }

    /// A job for a draft from `from` to `to`, numbered `n`, of `len` bytes
    /// of text (its reply channel dropped).
    fn job(from: (&str, &Identity), to: (&str, &Identity), n: u16, len: usize) -> SealJob {
        let mut id = [0u8; 16];
        id[..2].copy_from_slice(&n.to_be_bytes());
        let msg = DirectMessage {
            id,
            from: from.0.into(),
            from_key: from.1.identity_public(),
            to: to.0.into(),
            to_key: to.1.identity_public(),
            seq: u64::from(n),
            sent_at_ms: 1,
            content: Content::Text("x".repeat(len)),
        };
        let (reply, _) = oneshot::channel();
        (Draft::of(from.1.clone(), to.1.messaging_public(), msg), reply)
    }

    fn numbers(pack: &[SealJob]) -> Vec<u16> {
        pack.iter()
            .map(|(d, _)| u16::from_be_bytes([d.id()[0], d.id()[1]]))
            .collect()
    }

    #[test]
    fn drafts_are_packed_by_conversation_in_order_and_cut_at_the_caps() {
        let (alice, bob, carol) = (ident(1), ident(2), ident(3));
        let (a, b, c) = (("alice", &alice), ("bob", &bob), ("carol", &carol));
        let mut batch = Vec::new();
        for n in 0..70 {
            // alice -> bob throughout, alice -> carol and bob -> alice
            // between them.
            batch.push(job(a, b, n, 10));
            if n == 3 {
                batch.push(job(a, c, 100, 10));
                batch.push(job(b, a, 200, 10));
            }
        }
        batch.push(job(a, c, 101, 10));
        // Three texts of 30 KB to carol's namesake on another key: another
        // conversation, cut by bytes (two fit an envelope, not three).
        let carol2 = ident(4);
        for n in 300..303 {
            batch.push(job(("alice", &alice), ("carol", &carol2), n, 30_000));
        }
        let packs = pack(batch);
        let got: Vec<Vec<u16>> = packs.iter().map(|p| numbers(p)).collect();
        assert_eq!(
            got,
            vec![
                (0..64).collect::<Vec<u16>>(),
                (64..70).collect(),
                vec![100, 101],
                vec![200],
                vec![300, 301],
                vec![302],
            ]
        );
        // Every pack seals into one envelope.
        for p in &packs {
            let drafts: Vec<&Draft> = p.iter().map(|(d, _)| d).collect();
            assert!(drafts.windows(2).all(|w| w[0].same_conversation(w[1])));
            assert!(drafts.iter().map(|d| d.encoded_len()).sum::<usize>() <= MAX_MESSAGE_BYTES_PER_ENVELOPE);
        }
        let (drafts, _): (Vec<Draft>, Vec<_>) = packs.into_iter().next().unwrap().into_iter().unzip();
        let ids: Vec<[u8; 16]> = drafts.iter().map(Draft::id).collect();
        let sealed = dm::seal_together(drafts).unwrap();
        assert_eq!(sealed.entry.message_ids, ids);
        assert_eq!(sealed.rows.len(), 64);
        let env = crate::messaging::Envelope::decode(&sealed.entry.envelope).unwrap();
        assert_eq!(crate::messaging::open(&bob, &env).unwrap().len(), 64);
    }
}
