//! The `messages` table: direct messages of local accounts, both the ones
//! they sent and the ones they received, with their delivery state.
//!
//! Messages arrive more than once (retries, several relays, replays): the
//! insert reports whether the row is new, so each is shown once. Delivery
//! states only move forward: sent → relayed → delivered, or sent →
//! expired (nothing took it in time) → delivered (a receipt came after all).

use std::time::{Duration, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension, Row};

use super::{row_u64, sql_i64, Database, StorageError};

/// Which way a message went, seen from the local account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// How far a message got. The order of the variants is the only order in
/// which a message may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Stored locally (outgoing: sealed and queued; incoming: received).
    Sent,
    /// Accepted by at least one relay or handed to the recipient's node.
    Relayed,
    /// Outgoing, and its envelope expired in this node's outbox: neither a
    /// relay nor the recipient's node took it in time, and it is no longer
    /// sent. A receipt that comes after all still makes it `Delivered`.
    Expired,
    /// The recipient acknowledged it.
    Delivered,
}

/// One row of `messages`. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// The local account whose conversation this is.
    pub account: String,
    pub id: [u8; 16],
    /// The other account in the conversation.
    pub peer: String,
    pub direction: Direction,
    pub seq: u64,
    pub text: String,
    pub content_hash: [u8; 32],
    /// Signed by the sender; decides the reading order.
    pub sent_at_ms: u64,
    /// When this node stored it.
    pub received_at_ms: u64,
    pub state: DeliveryState,
}

/// The stored state's position in the forward order, as SQL.
const RANK_SQL: &str = "(CASE state WHEN 'sent' THEN 0 WHEN 'relayed' THEN 1 WHEN 'expired' THEN 2 ELSE 3 END)";

const COLUMNS: &str = "account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state";

/// A time in ms since the epoch as RFC 3339 with milliseconds, the form
/// people and the control socket see. Clamped to the last millisecond of
/// year 9999, the last an RFC 3339 year can show.
pub fn rfc3339_ms(ms: u64) -> String {
    const MAX_MS: u64 = 253_402_300_799_999;
    let at = UNIX_EPOCH + Duration::from_millis(ms.min(MAX_MS));
    humantime::format_rfc3339_millis(at).to_string()
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Sent => "sent",
            DeliveryState::Relayed => "relayed",
            DeliveryState::Expired => "expired",
            DeliveryState::Delivered => "delivered",
        }
    }

    fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "sent" => Some(DeliveryState::Sent),
            "relayed" => Some(DeliveryState::Relayed),
            "expired" => Some(DeliveryState::Expired),
            "delivered" => Some(DeliveryState::Delivered),
            _ => None,
        }
    }

    /// Position in the forward order; must agree with `RANK_SQL`.
    fn rank(self) -> i64 {
        match self {
            DeliveryState::Sent => 0,
            DeliveryState::Relayed => 1,
            DeliveryState::Expired => 2,
            DeliveryState::Delivered => 3,
        }
    }
}

/// A text column holding one of our enum names; anything else is reported
/// as a conversion error rather than guessed.
fn parse_column<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unexpected value {text:?}").into(),
        )
    })
}

impl MessageRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
        Ok(MessageRow {
            account: row.get(0)?,
            id: row.get(1)?,
            peer: row.get(2)?,
            direction: parse_column(row, 3, Direction::parse)?,
            seq: row_u64(row, 4)?,
            text: row.get(5)?,
            content_hash: row.get(6)?,
            sent_at_ms: row_u64(row, 7)?,
            received_at_ms: row_u64(row, 8)?,
            state: parse_column(row, 9, DeliveryState::parse)?,
        })
    }

    pub fn sent_at(&self) -> String {
        rfc3339_ms(self.sent_at_ms)
    }

    pub fn received_at(&self) -> String {
        rfc3339_ms(self.received_at_ms)
    }
}

/// Inserts `row` unless the account has a message with its id already;
/// true when it was new. Shared with the outbox's combined insert.
pub(super) fn insert(conn: &rusqlite::Connection, row: &MessageRow) -> Result<bool, StorageError> {
    let n = conn
        .prepare_cached(&format!(
            "INSERT INTO messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (account, id) DO NOTHING"
        ))?
        .execute(params![
            row.account,
            &row.id[..],
            row.peer,
            row.direction.as_str(),
            sql_i64(row.seq)?,
            row.text,
            &row.content_hash[..],
            sql_i64(row.sent_at_ms)?,
            sql_i64(row.received_at_ms)?,
            row.state.as_str(),
        ])?;
    Ok(n == 1)
}

/// Moves a message forward to `state` (see [`Database::set_message_state`]).
pub(super) fn advance(
    conn: &rusqlite::Connection,
    account: &str,
    id: &[u8; 16],
    state: DeliveryState,
) -> Result<bool, StorageError> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE messages SET state = ?3 WHERE account = ?1 AND id = ?2 AND {RANK_SQL} < ?4"
        ))?
        .execute(params![account, &id[..], state.as_str(), state.rank()])?;
    Ok(n == 1)
}

impl Database {
    /// Stores a message unless this account has one with the same id (a
    /// retry or a replay); true when it was new. Only the id decides: a
    /// second message reusing an id is dropped, not merged.
    pub fn insert_message(&self, row: &MessageRow) -> Result<bool, StorageError> {
        insert(self.conn(), row)
    }

    pub fn message(&self, account: &str, id: &[u8; 16]) -> Result<Option<MessageRow>, StorageError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE account = ?1 AND id = ?2"
            ))?
            .query_row(params![account, &id[..]], MessageRow::from_row)
            .optional()?)
    }

    /// An account's messages, with one peer or with all, grouped by peer
    /// and in reading order within each conversation: by the time the
    /// sender signed, then by sequence number, then by id so that the order
    /// is the same on every call.
    pub fn list_messages(&self, account: &str, peer: Option<&str>) -> Result<Vec<MessageRow>, StorageError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account = ?1 AND (?2 IS NULL OR peer = ?2)
             ORDER BY peer, sent_at, seq, id"
        ))?;
        let rows = stmt.query_map(params![account, peer], MessageRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Moves a message forward to `state`. False when there is no such
    /// message or it is already there or further along: states never go
    /// back (a late "relayed" must not undo "delivered").
    pub fn set_message_state(&self, account: &str, id: &[u8; 16], state: DeliveryState) -> Result<bool, StorageError> {
        advance(self.conn(), account, id, state)
    }

    /// Applies `peer`'s acknowledgement: marks the listed outgoing messages
    /// of `account` to `peer` delivered. Ids of messages to anyone else are
    /// ignored, so one peer cannot acknowledge another's messages. Returns
    /// how many moved.
    pub fn mark_delivered(&self, account: &str, peer: &str, ids: &[[u8; 16]]) -> Result<usize, StorageError> {
        let tx = self.conn().unchecked_transaction()?;
        let mut moved = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE messages SET state = 'delivered'
                 WHERE account = ?1 AND id = ?2 AND peer = ?3 AND direction = 'out' AND state <> 'delivered'",
            )?;
            for id in ids {
                moved += stmt.execute(params![account, &id[..], peer])?;
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// The sequence number for `account`'s next message to `peer`.
    pub fn next_seq(&self, account: &str, peer: &str) -> Result<u64, StorageError> {
        let max: Option<i64> = self
            .conn()
            .prepare_cached("SELECT MAX(seq) FROM messages WHERE account = ?1 AND peer = ?2 AND direction = 'out'")?
            .query_row(params![account, peer], |r| r.get(0))?;
        Ok(max.map_or(0, |m| m.unsigned_abs().saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn msg(account: &str, peer: &str, id: u8, sent_at_ms: u64, seq: u64) -> MessageRow {
        MessageRow {
            account: account.into(),
            id: [id; 16],
            peer: peer.into(),
            direction: Direction::Out,
            seq,
            text: format!("message {id}"),
            content_hash: [id; 32],
            sent_at_ms,
            received_at_ms: sent_at_ms + 5,
            state: DeliveryState::Sent,
        }
    }

    #[test]
    fn insert_is_idempotent_and_replays_are_detected() {
        let db = Database::in_memory().unwrap();
        let m = msg("alice", "bob", 1, 1000, 0);
        assert!(db.insert_message(&m).unwrap());
        // The same message again (retry, second relay, replay) is not new.
        assert!(!db.insert_message(&m).unwrap());
        // Nor is a different message reusing the id: the first one stays.
        let reused = MessageRow {
            text: "changed".into(),
            ..m.clone()
        };
        assert!(!db.insert_message(&reused).unwrap());
        assert_eq!(db.list_messages("alice", None).unwrap(), vec![m.clone()]);
        assert_eq!(db.message("alice", &[1; 16]).unwrap(), Some(m.clone()));

        // The other end of the conversation, hosted here too, has its own copy.
        let incoming = MessageRow {
            account: "bob".into(),
            peer: "alice".into(),
            direction: Direction::In,
            ..m.clone()
        };
        assert!(db.insert_message(&incoming).unwrap());
        assert_eq!(db.list_messages("bob", Some("alice")).unwrap(), vec![incoming]);
    }

    #[test]
    fn listed_in_reading_order_by_conversation() {
        let db = Database::in_memory().unwrap();
        let rows = [
            msg("alice", "carol", 1, 500, 0),
            msg("alice", "bob", 2, 2000, 1),
            msg("alice", "bob", 3, 1000, 0),
            msg("alice", "bob", 4, 2000, 2),
            msg("alice", "bob", 6, 2000, 2),
            msg("zed", "bob", 5, 10, 0),
        ];
        for r in rows.iter().rev() {
            db.insert_message(r).unwrap();
        }
        let ids = |v: Vec<MessageRow>| v.iter().map(|m| m.id[0]).collect::<Vec<_>>();
        assert_eq!(ids(db.list_messages("alice", Some("bob")).unwrap()), vec![3, 2, 4, 6]);
        assert_eq!(ids(db.list_messages("alice", None).unwrap()), vec![3, 2, 4, 6, 1]);
        assert_eq!(
            ids(db.list_messages("alice", Some("nobody")).unwrap()),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn states_only_move_forward() {
        let db = Database::in_memory().unwrap();
        db.insert_message(&msg("alice", "bob", 1, 1, 0)).unwrap();
        let state = |db: &Database| db.message("alice", &[1; 16]).unwrap().unwrap().state;
        assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Sent).unwrap());
        assert!(db.set_message_state("alice", &[1; 16], DeliveryState::Relayed).unwrap());
        assert_eq!(state(&db), DeliveryState::Relayed);
        assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Relayed).unwrap());
        assert!(db
            .set_message_state("alice", &[1; 16], DeliveryState::Delivered)
            .unwrap());
        for back in [DeliveryState::Sent, DeliveryState::Relayed, DeliveryState::Delivered] {
            assert!(!db.set_message_state("alice", &[1; 16], back).unwrap());
        }
        assert_eq!(state(&db), DeliveryState::Delivered);
        assert!(!db.set_message_state("alice", &[9; 16], DeliveryState::Relayed).unwrap());
        // Skipping a state is forward too.
        db.insert_message(&msg("alice", "bob", 2, 1, 1)).unwrap();
        assert!(db
            .set_message_state("alice", &[2; 16], DeliveryState::Delivered)
            .unwrap());
    }

    #[test]
    fn acknowledgements_only_count_for_their_peer() {
        let db = Database::in_memory().unwrap();
        db.insert_message(&msg("alice", "bob", 1, 1, 0)).unwrap();
        db.insert_message(&msg("alice", "carol", 2, 1, 0)).unwrap();
        let n = db.mark_delivered("alice", "bob", &[[1; 16], [2; 16], [3; 16]]).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            db.message("alice", &[1; 16]).unwrap().unwrap().state,
            DeliveryState::Delivered
        );
        assert_eq!(
            db.message("alice", &[2; 16]).unwrap().unwrap().state,
            DeliveryState::Sent
        );
        assert_eq!(db.mark_delivered("alice", "bob", &[[1; 16]]).unwrap(), 0);
    }

    #[test]
    fn next_seq_counts_outgoing_per_peer() {
        let db = Database::in_memory().unwrap();
        assert_eq!(db.next_seq("alice", "bob").unwrap(), 0);
        db.insert_message(&msg("alice", "bob", 1, 1, 0)).unwrap();
        db.insert_message(&msg("alice", "bob", 2, 1, 7)).unwrap();
        let incoming = MessageRow {
            direction: Direction::In,
            seq: 50,
            ..msg("alice", "bob", 3, 1, 0)
        };
        db.insert_message(&incoming).unwrap();
        assert_eq!(db.next_seq("alice", "bob").unwrap(), 8);
        assert_eq!(db.next_seq("alice", "carol").unwrap(), 0);
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let db = Database::in_memory().unwrap();
        let m = MessageRow {
            seq: u64::MAX,
            ..msg("alice", "bob", 1, 1, 0)
        };
        assert!(matches!(db.insert_message(&m), Err(StorageError::Sqlite(_))));
    }

    #[test]
    fn times_render_as_rfc3339() {
        let m = msg("alice", "bob", 1, 1_700_000_000_123, 0);
        assert_eq!(m.sent_at(), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
