//! The `outbox` table: sealed envelopes waiting to reach the recipient or
//! one of its relays. A row leaves when the network reports it delivered
//! ([`Database::outbox_done`]) or when its envelope expires.
//!
//! [`Database::take_due_outbox`] leases what is due: it counts the attempt
//! and schedules the next one before returning, so a crash mid-send means a
//! retry later, never a row lost or sent in a tight loop.

use rusqlite::{params, Row, Transaction, TransactionBehavior};

use super::messages::{self, MessageRow};
use super::{row_u64, sql_i64, Database, StorageError};

/// One sealed envelope in the outbox. Times are ms since the epoch.
///
/// `message_ids` is never empty: an envelope carries one message or
/// several of one conversation. The first id is stored in `message_id`,
/// the others in `more_ids` (migration 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// `Envelope::id()`: SHA-256 of `envelope`.
    pub envelope_id: [u8; 32],
    /// The local account that sent it.
    pub account: String,
    /// The messages it carries, in order (for an acknowledgement, the
    /// ack's own id).
    pub message_ids: Vec<[u8; 16]>,
    /// The recipient's mailbox, to find its relays.
    pub mailbox: [u8; 32],
    /// The encoded envelope, sent as is.
    pub envelope: Vec<u8>,
    pub expires_at_ms: u64,
    /// Attempts made so far, counting the one a `take_due_outbox` hands out.
    pub attempts: u32,
    pub next_attempt_ms: u64,
}

/// One write of the direct-message path, for [`Database::write_dms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmWrite {
    /// Outgoing messages (none for acknowledgements, which have no row)
    /// and the envelope that carries them, as [`Database::insert_outgoing`]
    /// stores them.
    Outgoing(Vec<MessageRow>, OutboxEntry),
    /// A received message, as [`Database::insert_message`] stores it.
    Incoming(MessageRow),
}

/// What became of one outbox envelope in a delivery round, for
/// [`Database::finish_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub envelope_id: [u8; 32],
    pub account: String,
    /// The messages the envelope carries.
    pub message_ids: Vec<[u8; 16]>,
    pub state: super::DeliveryState,
}

/// When to try again: `base_ms` after the first attempt, doubling per
/// attempt up to `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    /// 5 s, 10 s, 20 s… at most 10 minutes apart.
    fn default() -> RetryPolicy {
        RetryPolicy {
            base_ms: 5_000,
            max_ms: 600_000,
        }
    }
}

impl RetryPolicy {
    /// The wait after attempt number `attempts` (1 = the first).
    pub fn delay_ms(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(63);
        self.base_ms.saturating_mul(1u64 << doublings).min(self.max_ms)
    }
}

const COLUMNS: &str =
    "envelope_id, account, message_id, mailbox, envelope, expires_at, attempts, next_attempt, more_ids";

/// The ids of an outbox row: `message_id`, then those packed in `more_ids`.
fn message_ids(first: [u8; 16], more: &[u8]) -> Vec<[u8; 16]> {
    let mut ids = Vec::with_capacity(1 + more.len() / 16);
    ids.push(first);
    // The schema keeps more_ids a multiple of 16 bytes long.
    ids.extend(more.chunks_exact(16).filter_map(|id| <[u8; 16]>::try_from(id).ok()));
    ids
}

impl OutboxEntry {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
        let attempts = row_u64(row, 6)?;
        let more: Vec<u8> = row.get(8)?;
        Ok(OutboxEntry {
            envelope_id: row.get(0)?,
            account: row.get(1)?,
            message_ids: message_ids(row.get(2)?, &more),
            mailbox: row.get(3)?,
            envelope: row.get(4)?,
            expires_at_ms: row_u64(row, 5)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt_ms: row_u64(row, 7)?,
        })
    }
}

fn enqueue(conn: &rusqlite::Connection, e: &OutboxEntry) -> Result<bool, StorageError> {
    let Some((first, more)) = e.message_ids.split_first() else {
        return Err(StorageError::Invalid("an outbox envelope without a message"));
    };
    let n = conn
        .prepare_cached(&format!(
            "INSERT INTO outbox ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (envelope_id) DO NOTHING"
        ))?
        .execute(params![
            &e.envelope_id[..],
            e.account,
            &first[..],
            &e.mailbox[..],
            e.envelope,
            sql_i64(e.expires_at_ms)?,
            e.attempts,
            sql_i64(e.next_attempt_ms)?,
            more.concat(),
        ])?;
    Ok(n == 1)
}

/// Stores the messages of an outgoing envelope and, when any of them is
/// new or the envelope carries more than the stored texts (an
/// acknowledgement has no row), queues the envelope; whether it was
/// queued. Each message is stored once whatever happens, so a repeated
/// request changes nothing.
fn store_outgoing(conn: &rusqlite::Connection, rows: &[MessageRow], entry: &OutboxEntry) -> Result<bool, StorageError> {
    let mut new = entry.message_ids.len() > rows.len();
    for row in rows {
        new |= messages::insert(conn, row)?;
    }
    if new {
        enqueue(conn, entry)?;
    }
    Ok(new)
}

/// Takes an envelope out of the outbox; false if it was not there.
fn remove(conn: &rusqlite::Connection, envelope_id: &[u8; 32]) -> Result<bool, StorageError> {
    let n = conn
        .prepare_cached("DELETE FROM outbox WHERE envelope_id = ?1")?
        .execute([&envelope_id[..]])?;
    Ok(n == 1)
}

impl Database {
    /// Queues an envelope; false if this envelope is queued already.
    pub fn enqueue_outbox(&self, entry: &OutboxEntry) -> Result<bool, StorageError> {
        enqueue(self.conn(), entry)
    }

    /// Stores outgoing messages and queues the envelope that carries them
    /// in one transaction, so neither exists without the other. When every
    /// message was stored before (a repeated request), nothing changes and
    /// the result is false.
    pub fn insert_outgoing(&self, messages: &[MessageRow], entry: &OutboxEntry) -> Result<bool, StorageError> {
        let write = DmWrite::Outgoing(messages.to_vec(), entry.clone());
        self.write_dms(&[write])?.pop().unwrap_or(Ok(false))
    }

    /// Applies `writes` in one transaction, so that many concurrent sends
    /// and arrivals cost one commit: for each, whether it was new (as the
    /// single-write methods say) or why it could not be stored. Each write
    /// is a savepoint of its own, so one that fails (a value out of range
    /// in a peer's message) is rolled back alone and the others are kept.
    /// An error of the transaction itself (its commit) fails them all.
    pub fn write_dms(&self, writes: &[DmWrite]) -> Result<Vec<Result<bool, StorageError>>, StorageError> {
        let mut tx = self.conn().unchecked_transaction()?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let sp = tx.savepoint()?;
            let outcome = match write {
                DmWrite::Outgoing(rows, entry) => store_outgoing(&sp, rows, entry),
                DmWrite::Incoming(message) => messages::insert(&sp, message),
            };
            if outcome.is_ok() {
                sp.commit()?;
            }
            // Dropped uncommitted, the savepoint rolls back.
            outcomes.push(outcome);
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Ends a delivery round in one transaction: each envelope that reached
    /// its recipient or a relay leaves the outbox and its messages move to
    /// the state reached. Returns (account, message id) of each message
    /// whose state changed.
    pub fn finish_deliveries(&self, done: &[Delivery]) -> Result<Vec<(String, [u8; 16])>, StorageError> {
        let tx = self.conn().unchecked_transaction()?;
        let mut moved = Vec::new();
        for d in done {
            remove(&tx, &d.envelope_id)?;
            for id in &d.message_ids {
                if messages::advance(&tx, &d.account, id, d.state)? {
                    moved.push((d.account.clone(), *id));
                }
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// Leases up to `limit` envelopes due at `now_ms` and not expired,
    /// oldest schedule first: each one's attempt is counted and its next
    /// attempt scheduled by `retry` before it is returned.
    pub fn take_due_outbox(
        &self,
        now_ms: u64,
        limit: u32,
        retry: &RetryPolicy,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        let now = sql_i64(now_ms)?;
        let tx = Transaction::new_unchecked(self.conn(), TransactionBehavior::Immediate)?;
        let mut due: Vec<OutboxEntry> = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE next_attempt <= ?1 AND expires_at > ?1
                 ORDER BY next_attempt, envelope_id LIMIT ?2"
            ))?
            .query_map(params![now, limit], OutboxEntry::from_row)?
            .collect::<rusqlite::Result<_>>()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE outbox SET attempts = ?2, next_attempt = ?3 WHERE envelope_id = ?1")?;
            for e in &mut due {
                e.attempts = e.attempts.saturating_add(1);
                e.next_attempt_ms = now_ms
                    .saturating_add(retry.delay_ms(e.attempts))
                    .min(i64::MAX.unsigned_abs());
                update.execute(params![&e.envelope_id[..], e.attempts, sql_i64(e.next_attempt_ms)?])?;
            }
        }
        tx.commit()?;
        Ok(due)
    }

    /// When the earliest envelope in the outbox is next due (its first
    /// attempt, or the retry it was leased until); None when it is empty.
    pub fn next_outbox_attempt(&self) -> Result<Option<u64>, StorageError> {
        let at: Option<i64> = self
            .conn()
            .prepare_cached("SELECT min(next_attempt) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        Ok(at.map(i64::unsigned_abs))
    }

    /// Removes a delivered envelope from the outbox; false if it was gone.
    pub fn outbox_done(&self, envelope_id: &[u8; 32]) -> Result<bool, StorageError> {
        remove(self.conn(), envelope_id)
    }

    /// Drops envelopes that expired undelivered and marks their messages
    /// `expired` (unless a receipt came meanwhile). Returns (account,
    /// message id, whether the message became `expired`) of each; an
    /// acknowledgement's envelope has no message.
    pub fn drop_expired_outbox(&self, now_ms: u64) -> Result<Vec<(String, [u8; 16], bool)>, StorageError> {
        let tx = self.conn().unchecked_transaction()?;
        let dropped: Vec<(String, [u8; 16], Vec<u8>)> = tx
            .prepare_cached("DELETE FROM outbox WHERE expires_at <= ?1 RETURNING account, message_id, more_ids")?
            .query_map([sql_i64(now_ms)?], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(dropped.len());
        for (account, first, more) in dropped {
            for id in message_ids(first, &more) {
                let moved = messages::advance(&tx, &account, &id, super::DeliveryState::Expired)?;
                out.push((account.clone(), id, moved));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub fn count_outbox(&self) -> Result<u64, StorageError> {
        let n: i64 = self.conn().query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        Ok(n.unsigned_abs())
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
