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
                DmWrite::Outgoing(rows, entry) if rows.is_empty() => enqueue(&sp, entry),
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
mod tests {
    use super::*;
    use crate::storage::{DeliveryState, Direction};

    fn entry(n: u8, next_attempt_ms: u64, expires_at_ms: u64) -> OutboxEntry {
        OutboxEntry {
            envelope_id: [n; 32],
            account: "alice".into(),
            message_ids: vec![[n; 16]],
            mailbox: [9; 32],
            envelope: vec![n; 100],
            expires_at_ms,
            attempts: 0,
            next_attempt_ms,
        }
    }

    #[test]
    fn due_entries_are_leased_with_backoff() {
        let db = Database::in_memory().unwrap();
        let retry = RetryPolicy {
            base_ms: 100,
            max_ms: 350,
        };
        assert!(db.enqueue_outbox(&entry(1, 0, 10_000)).unwrap());
        assert!(!db.enqueue_outbox(&entry(1, 0, 10_000)).unwrap());
        db.enqueue_outbox(&entry(2, 500, 10_000)).unwrap();

        let first = db.take_due_outbox(0, 10, &retry).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempts, 1);
        assert_eq!(first[0].next_attempt_ms, 100);
        assert_eq!(first[0].envelope, vec![1; 100]);
        // Leased: not due again until its next attempt.
        assert!(db.take_due_outbox(50, 10, &retry).unwrap().is_empty());

        let at_100 = db.take_due_outbox(100, 10, &retry).unwrap();
        assert_eq!(at_100.len(), 1);
        assert_eq!((at_100[0].attempts, at_100[0].next_attempt_ms), (2, 300));
        let at_500 = db.take_due_outbox(500, 10, &retry).unwrap();
        assert_eq!(at_500.len(), 2);
        assert_eq!(
            (at_500[0].attempts, at_500[0].next_attempt_ms),
            (3, 850),
            "capped at max_ms"
        );
        assert_eq!(at_500[1].envelope_id, [2; 32]);

        assert!(db.outbox_done(&[1; 32]).unwrap());
        assert!(!db.outbox_done(&[1; 32]).unwrap());
        assert_eq!(db.count_outbox().unwrap(), 1);
    }

    #[test]
    fn the_next_attempt_is_the_earliest_in_the_outbox() {
        let db = Database::in_memory().unwrap();
        assert_eq!(db.next_outbox_attempt().unwrap(), None);
        db.enqueue_outbox(&entry(1, 700, 10_000)).unwrap();
        db.enqueue_outbox(&entry(2, 300, 10_000)).unwrap();
        assert_eq!(db.next_outbox_attempt().unwrap(), Some(300));
        // Leasing the one due moves it behind the other.
        let retry = RetryPolicy {
            base_ms: 1_000,
            max_ms: 1_000,
        };
        assert_eq!(db.take_due_outbox(300, 10, &retry).unwrap().len(), 1);
        assert_eq!(db.next_outbox_attempt().unwrap(), Some(700));
        assert!(db.outbox_done(&[1; 32]).unwrap());
        assert_eq!(db.next_outbox_attempt().unwrap(), Some(1_300));
    }

    #[test]
    fn limit_is_honoured() {
        let db = Database::in_memory().unwrap();
        for n in 0..5 {
            db.enqueue_outbox(&entry(n, 0, 10_000)).unwrap();
        }
        assert_eq!(db.take_due_outbox(0, 2, &RetryPolicy::default()).unwrap().len(), 2);
        assert_eq!(db.take_due_outbox(0, 10, &RetryPolicy::default()).unwrap().len(), 3);
    }

    #[test]
    fn expired_entries_are_not_sent_and_are_dropped() {
        let db = Database::in_memory().unwrap();
        db.enqueue_outbox(&entry(1, 0, 1_000)).unwrap();
        db.enqueue_outbox(&entry(2, 0, 5_000)).unwrap();
        let due = db.take_due_outbox(1_000, 10, &RetryPolicy::default()).unwrap();
        assert_eq!(due.iter().map(|e| e.envelope_id[0]).collect::<Vec<_>>(), vec![2]);
        // No message goes with these envelopes: nothing became `expired`.
        assert_eq!(
            db.drop_expired_outbox(1_000).unwrap(),
            vec![("alice".to_string(), [1; 16], false)]
        );
        assert_eq!(db.count_outbox().unwrap(), 1);
    }

    #[test]
    fn a_message_whose_envelope_expires_unsent_is_expired_until_a_receipt_comes() {
        let db = Database::in_memory().unwrap();
        for (id, expires) in [(1, 1_000), (2, 1_000), (3, 5_000)] {
            db.insert_outgoing(&[text(id, Direction::Out)], &entry(id, 0, expires))
                .unwrap();
        }
        // Message 2 was acknowledged while its envelope waited (a receipt
        // for a copy that went through after all).
        db.mark_delivered("alice", "bob", &[[2; 16]]).unwrap();
        // Only message 1 becomes `expired`; the same sweep at the same time
        // finds nothing more.
        let mut swept = db.drop_expired_outbox(1_000).unwrap();
        swept.sort();
        assert_eq!(
            swept,
            vec![
                ("alice".to_string(), [1; 16], true),
                ("alice".to_string(), [2; 16], false)
            ]
        );
        assert_eq!(db.drop_expired_outbox(1_000).unwrap(), vec![]);
        let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
        assert_eq!(state(1), DeliveryState::Expired);
        assert_eq!(state(2), DeliveryState::Delivered, "`delivered` stays");
        assert_eq!(state(3), DeliveryState::Sent, "not expired yet");
        assert_eq!(db.list_messages("alice", None).unwrap().len(), 3, "nothing is deleted");
        // Nothing moves an expired message back; a receipt after all does
        // move it on.
        assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Relayed).unwrap());
        assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Sent).unwrap());
        assert_eq!(db.mark_delivered("alice", "bob", &[[1; 16]]).unwrap(), 1);
        assert_eq!(state(1), DeliveryState::Delivered);
    }

    #[test]
    fn outgoing_message_and_envelope_are_stored_together_once() {
        let db = Database::in_memory().unwrap();
        let m = MessageRow {
            account: "alice".into(),
            id: [1; 16],
            peer: "bob".into(),
            direction: Direction::Out,
            seq: 0,
            text: "hi".into(),
            content_hash: [0; 32],
            sent_at_ms: 1,
            received_at_ms: 1,
            state: DeliveryState::Sent,
        };
        assert!(db.insert_outgoing(std::slice::from_ref(&m), &entry(1, 0, 10)).unwrap());
        assert!(!db.insert_outgoing(std::slice::from_ref(&m), &entry(2, 0, 10)).unwrap());
        assert_eq!(db.count_outbox().unwrap(), 1);
        // A failing envelope rolls the message back too.
        let bad = OutboxEntry {
            expires_at_ms: u64::MAX,
            ..entry(3, 0, 0)
        };
        let m2 = MessageRow { id: [2; 16], ..m };
        assert!(db.insert_outgoing(&[m2], &bad).is_err());
        assert_eq!(db.message("alice", &[2; 16]).unwrap(), None);
    }

    fn text(id: u8, direction: Direction) -> MessageRow {
        MessageRow {
            account: "alice".into(),
            id: [id; 16],
            peer: "bob".into(),
            direction,
            seq: u64::from(id),
            text: format!("text {id}"),
            content_hash: [0; 32],
            sent_at_ms: 1,
            received_at_ms: 1,
            state: if direction == Direction::In {
                DeliveryState::Delivered
            } else {
                DeliveryState::Sent
            },
        }
    }

    #[test]
    fn a_batch_of_writes_shares_a_commit_and_a_bad_write_fails_alone() {
        let db = Database::in_memory().unwrap();
        let bad = OutboxEntry {
            expires_at_ms: u64::MAX,
            ..entry(6, 0, 0)
        };
        let mut far_future = text(7, Direction::In);
        far_future.sent_at_ms = u64::MAX;
        let writes = [
            DmWrite::Outgoing(vec![text(1, Direction::Out)], entry(1, 0, 10)),
            DmWrite::Outgoing(vec![], entry(2, 0, 10)),
            DmWrite::Incoming(text(3, Direction::In)),
            // A message whose envelope cannot be stored: neither is kept.
            DmWrite::Outgoing(vec![text(6, Direction::Out)], bad),
            // A peer's message with a value out of range.
            DmWrite::Incoming(far_future),
            // The same message again in the same batch: stored once.
            DmWrite::Outgoing(vec![text(1, Direction::Out)], entry(4, 0, 10)),
            DmWrite::Incoming(text(3, Direction::In)),
        ];
        let outcomes = db.write_dms(&writes).unwrap();
        let news: Vec<Option<bool>> = outcomes.iter().map(|o| o.as_ref().ok().copied()).collect();
        assert_eq!(
            news,
            [Some(true), Some(true), Some(true), None, None, Some(false), Some(false)]
        );
        assert_eq!(
            db.count_outbox().unwrap(),
            2,
            "the message's and the acknowledgement's envelopes"
        );
        assert_eq!(db.list_messages("alice", None).unwrap().len(), 2);
        assert_eq!(
            db.message("alice", &[6; 16]).unwrap(),
            None,
            "rolled back with its envelope"
        );
        assert_eq!(db.message("alice", &[7; 16]).unwrap(), None);
    }

    #[test]
    fn a_delivery_round_is_recorded_together_and_states_never_go_back() {
        let db = Database::in_memory().unwrap();
        for id in [1, 2] {
            db.insert_outgoing(&[text(id, Direction::Out)], &entry(id, 0, 10))
                .unwrap();
        }
        db.set_message_state("alice", &[2; 16], DeliveryState::Delivered)
            .unwrap();
        let done = [1u8, 2].map(|id| Delivery {
            envelope_id: entry(id, 0, 10).envelope_id,
            account: "alice".into(),
            message_ids: vec![[id; 16]],
            state: DeliveryState::Relayed,
        });
        assert_eq!(db.finish_deliveries(&done).unwrap(), [("alice".to_string(), [1; 16])]);
        assert_eq!(db.count_outbox().unwrap(), 0);
        let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
        assert_eq!(state(1), DeliveryState::Relayed);
        assert_eq!(
            state(2),
            DeliveryState::Delivered,
            "a late `relayed` does not undo `delivered`"
        );
    }

    /// An envelope that carries several messages of one conversation.
    fn shared_entry(n: u8, ids: &[u8], expires_at_ms: u64) -> OutboxEntry {
        OutboxEntry {
            message_ids: ids.iter().map(|id| [*id; 16]).collect(),
            ..entry(n, 0, expires_at_ms)
        }
    }

    #[test]
    fn an_envelope_of_several_messages_moves_each_of_them() {
        let db = Database::in_memory().unwrap();
        let rows = |ids: &[u8]| ids.iter().map(|id| text(*id, Direction::Out)).collect::<Vec<_>>();
        assert!(db
            .insert_outgoing(&rows(&[1, 2, 3]), &shared_entry(1, &[1, 2, 3], 10))
            .unwrap());
        assert!(db
            .insert_outgoing(&rows(&[4, 5]), &shared_entry(2, &[4, 5], 1_000))
            .unwrap());
        assert_eq!(db.list_messages("alice", None).unwrap().len(), 5);
        assert_eq!(db.count_outbox().unwrap(), 2);
        // Sent again whole (a repeated request): nothing changes.
        assert!(!db
            .insert_outgoing(&rows(&[1, 2, 3]), &shared_entry(3, &[1, 2, 3], 10))
            .unwrap());
        assert_eq!(db.count_outbox().unwrap(), 2);
        // An acknowledgement (no row) sealed with a text stored before still
        // goes out.
        assert!(db.insert_outgoing(&rows(&[1]), &shared_entry(4, &[1, 8], 10)).unwrap());
        assert_eq!(db.count_outbox().unwrap(), 3);
        assert!(db.outbox_done(&[4; 32]).unwrap());

        // Leased with every id, in order.
        let due = db.take_due_outbox(0, 10, &RetryPolicy::default()).unwrap();
        let ids: Vec<Vec<u8>> = due
            .iter()
            .map(|e| e.message_ids.iter().map(|id| id[0]).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5]]);

        // Relayed: each message of the envelope moves, one already
        // delivered stays so.
        db.mark_delivered("alice", "bob", &[[2; 16]]).unwrap();
        let done = [Delivery {
            envelope_id: [1; 32],
            account: "alice".into(),
            message_ids: due[0].message_ids.clone(),
            state: DeliveryState::Relayed,
        }];
        assert_eq!(
            db.finish_deliveries(&done).unwrap(),
            [("alice".to_string(), [1; 16]), ("alice".to_string(), [3; 16])]
        );
        let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
        assert_eq!(
            [1, 2, 3].map(state),
            [DeliveryState::Relayed, DeliveryState::Delivered, DeliveryState::Relayed]
        );

        // Expired: each message of the envelope becomes `expired`.
        assert_eq!(
            db.drop_expired_outbox(1_000).unwrap(),
            vec![
                ("alice".to_string(), [4; 16], true),
                ("alice".to_string(), [5; 16], true)
            ]
        );
        assert_eq!([4, 5].map(state), [DeliveryState::Expired, DeliveryState::Expired]);
        assert_eq!(db.count_outbox().unwrap(), 0);

        // An envelope must carry a message.
        assert!(matches!(
            db.enqueue_outbox(&shared_entry(9, &[], 10)),
            Err(StorageError::Invalid(_))
        ));
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let r = RetryPolicy::default();
        assert_eq!(r.delay_ms(1), 5_000);
        assert_eq!(r.delay_ms(2), 10_000);
        assert_eq!(r.delay_ms(200), 600_000);
        assert_eq!(r.delay_ms(0), 5_000);
    }
}
