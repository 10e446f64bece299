//! Batching on the direct-message path, so that its cost under load is per
//! batch, not per message:
//!
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

use super::lock;
use crate::ledger::Account;
use crate::messaging::{Content, MAX_ACK_IDS};
use crate::service::{Node, ServiceError};
use crate::storage::DmWrite;

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

type Job = (DmWrite, oneshot::Sender<Result<bool, ServiceError>>);

/// The handle sends and arrivals write through.
pub struct DmWriter {
    jobs: mpsc::Sender<Job>,
}

impl DmWriter {
    /// The handle and the receiving end for [`run_writer`].
    pub fn new() -> (DmWriter, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        (DmWriter { jobs }, rx)
    }

    /// Stores `write` and returns once it is committed: whether it was new.
    pub async fn write(&self, write: DmWrite) -> Result<bool, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((write, reply))
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        answer.await.map_err(|_| ServiceError::ShuttingDown)?
    }
}

/// The writer task: takes what is waiting, commits it together, answers.
pub async fn run_writer(node: Arc<Node>, mut jobs: mpsc::Receiver<Job>, stop: CancellationToken) {
    loop {
        // Everything waiting, up to a batch; at least one.
        let mut batch = Vec::with_capacity(MAX_BATCH);
        tokio::select! {
            _ = stop.cancelled() => return,
            n = jobs.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
        }
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
