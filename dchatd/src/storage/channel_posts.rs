//! The `channel_posts` table: signed posts of the channels this node
//! follows, verified before they get here. Gossip delivers a post more than
//! once, so the insert reports whether it was new. Reading is by time: the
//! latest posts of a channel, or everything since a moment to catch up.

use rusqlite::{params, Row};

use super::{row_u64, sql_i64, Database, StorageError};

/// One stored post. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPostRow {
    pub id: [u8; 16],
    pub channel: String,
    pub author: String,
    pub author_key: [u8; 32],
    pub text: String,
    /// Signed by the author; decides the order.
    pub sent_at_ms: u64,
    /// When this node stored it.
    pub received_at_ms: u64,
    /// Kept so a post can be passed on and re-verified later.
    pub signature: [u8; 64],
}

const COLUMNS: &str = "id, channel, author, author_key, text, sent_at, received_at, signature";

impl ChannelPostRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<ChannelPostRow> {
        Ok(ChannelPostRow {
            id: row.get(0)?,
            channel: row.get(1)?,
            author: row.get(2)?,
            author_key: row.get(3)?,
            text: row.get(4)?,
            sent_at_ms: row_u64(row, 5)?,
            received_at_ms: row_u64(row, 6)?,
            signature: row.get(7)?,
        })
    }
}

impl Database {
    /// Stores a post unless one with its id is stored; true when new.
    pub fn insert_channel_post(&self, post: &ChannelPostRow) -> Result<bool, StorageError> {
        let n = self
            .conn()
            .prepare_cached(&format!(
                "INSERT INTO channel_posts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO NOTHING"
            ))?
            .execute(params![
                &post.id[..],
                post.channel,
                post.author,
                &post.author_key[..],
                post.text,
                sql_i64(post.sent_at_ms)?,
                sql_i64(post.received_at_ms)?,
                &post.signature[..],
            ])?;
        Ok(n == 1)
    }

    /// The latest `limit` posts of a channel, oldest first (as shown).
    pub fn channel_posts(&self, channel: &str, limit: u32) -> Result<Vec<ChannelPostRow>, StorageError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM (
                 SELECT {COLUMNS} FROM channel_posts WHERE channel = ?1 ORDER BY sent_at DESC, id DESC LIMIT ?2
             ) ORDER BY sent_at, id"
        ))?;
        let rows = stmt.query_map(params![channel, limit], ChannelPostRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` posts of a channel sent at or after `since_ms`, oldest
    /// first: for catching up after being away. Page on with the last
    /// post's `sent_at_ms`; posts seen twice are harmless.
    pub fn channel_posts_since(
        &self,
        channel: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<ChannelPostRow>, StorageError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM channel_posts WHERE channel = ?1 AND sent_at >= ?2
             ORDER BY sent_at, id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![channel, sql_i64(since_ms)?, limit], ChannelPostRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: u8, channel: &str, sent_at_ms: u64) -> ChannelPostRow {
        ChannelPostRow {
            id: [id; 16],
            channel: channel.into(),
            author: "alice".into(),
            author_key: [1; 32],
            text: format!("post {id}"),
            sent_at_ms,
            received_at_ms: sent_at_ms + 1,
            signature: [id; 64],
        }
    }

    #[test]
    fn insert_if_new() {
        let db = Database::in_memory().unwrap();
        assert!(db.insert_channel_post(&post(1, "general", 10)).unwrap());
        assert!(!db.insert_channel_post(&post(1, "general", 10)).unwrap());
        assert_eq!(db.channel_posts("general", 10).unwrap(), vec![post(1, "general", 10)]);
    }

    #[test]
    fn latest_and_since_in_time_order() {
        let db = Database::in_memory().unwrap();
        for (id, at) in [(1, 30), (2, 10), (3, 20), (4, 40), (5, 20)] {
            db.insert_channel_post(&post(id, "general", at)).unwrap();
        }
        db.insert_channel_post(&post(9, "random", 25)).unwrap();
        let ids = |v: Vec<ChannelPostRow>| v.iter().map(|p| p.id[0]).collect::<Vec<_>>();
        assert_eq!(ids(db.channel_posts("general", 10).unwrap()), vec![2, 3, 5, 1, 4]);
        assert_eq!(ids(db.channel_posts("general", 2).unwrap()), vec![1, 4]);
        assert_eq!(
            ids(db.channel_posts_since("general", 20, 10).unwrap()),
            vec![3, 5, 1, 4]
        );
        assert_eq!(ids(db.channel_posts_since("general", 20, 2).unwrap()), vec![3, 5]);
        assert_eq!(
            ids(db.channel_posts_since("general", 41, 10).unwrap()),
            Vec::<u8>::new()
        );
        assert_eq!(ids(db.channel_posts("random", 10).unwrap()), vec![9]);
    }
}
