//! The `relay_envelopes` table: what a relay holds for recipients that are
//! offline. A relay sees only the mailbox id, the expiry and ciphertext.
//!
//! Each mailbox has a quota of envelopes and bytes so that one sender
//! cannot fill a relay's disk through one mailbox; only envelopes that have
//! not expired count. Envelopes leave when the recipient's signed receipt
//! names them, or when they expire.

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{row_u64, sql_i64, Database, StorageError};

/// One envelope held for a mailbox. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEnvelope {
    /// `Envelope::id()`.
    pub id: [u8; 32],
    pub mailbox: [u8; 32],
    pub expires_at_ms: u64,
    pub stored_at_ms: u64,
    /// `Envelope::ciphertext`; with the mailbox and expiry it rebuilds the
    /// envelope exactly.
    pub ciphertext: Vec<u8>,
}

/// The most one mailbox may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxQuota {
    pub max_envelopes: u64,
    pub max_bytes: u64,
}

impl Default for MailboxQuota {
    /// 1000 envelopes and 16 MiB: a few days of heavy chat per account.
    fn default() -> MailboxQuota {
        MailboxQuota {
            max_envelopes: 1000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What one mailbox holds now (unexpired envelopes only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxUsage {
    pub envelopes: u64,
    pub bytes: u64,
}

const COLUMNS: &str = "id, mailbox, expires_at, stored_at, ciphertext";

impl RelayEnvelope {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RelayEnvelope> {
        Ok(RelayEnvelope {
            id: row.get(0)?,
            mailbox: row.get(1)?,
            expires_at_ms: row_u64(row, 2)?,
            stored_at_ms: row_u64(row, 3)?,
            ciphertext: row.get(4)?,
        })
    }
}

fn usage(conn: &rusqlite::Connection, mailbox: &[u8; 32], now_ms: u64) -> Result<MailboxUsage, StorageError> {
    let (envelopes, bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(length(ciphertext)), 0) FROM relay_envelopes
             WHERE mailbox = ?1 AND expires_at > ?2",
        )?
        .query_row(params![&mailbox[..], sql_i64(now_ms)?], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(MailboxUsage {
        envelopes: envelopes.unsigned_abs(),
        bytes: bytes.unsigned_abs(),
    })
}

impl Database {
    /// Stores an envelope for its mailbox. False when it is held already (a
    /// sender's retry); [`StorageError::QuotaExceeded`] when it would take
    /// the mailbox past `quota` counting only envelopes unexpired at
    /// `env.stored_at_ms`. Committed before it returns: the relay may then
    /// acknowledge it to the sender.
    pub fn relay_store(&self, env: &RelayEnvelope, quota: &MailboxQuota) -> Result<bool, StorageError> {
        // IMMEDIATE: the quota is read and the row written under one lock.
        let tx = Transaction::new_unchecked(self.conn(), TransactionBehavior::Immediate)?;
        let held = tx
            .prepare_cached("SELECT 1 FROM relay_envelopes WHERE id = ?1")?
            .query_row([&env.id[..]], |_| Ok(()))
            .optional()?;
        if held.is_some() {
            return Ok(false);
        }
        let now = usage(&tx, &env.mailbox, env.stored_at_ms)?;
        let len = u64::try_from(env.ciphertext.len()).unwrap_or(u64::MAX);
        if now.envelopes.saturating_add(1) > quota.max_envelopes || now.bytes.saturating_add(len) > quota.max_bytes {
            return Err(StorageError::QuotaExceeded {
                mailbox: hex::encode(env.mailbox),
                envelopes: now.envelopes,
                bytes: now.bytes,
                max_envelopes: quota.max_envelopes,
                max_bytes: quota.max_bytes,
            });
        }
        tx.prepare_cached(&format!(
            "INSERT INTO relay_envelopes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?
        .execute(params![
            &env.id[..],
            &env.mailbox[..],
            sql_i64(env.expires_at_ms)?,
            sql_i64(env.stored_at_ms)?,
            env.ciphertext,
        ])?;
        tx.commit()?;
        Ok(true)
    }

    /// Up to `limit` unexpired envelopes of a mailbox, oldest first.
    pub fn relay_envelopes(
        &self,
        mailbox: &[u8; 32],
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<RelayEnvelope>, StorageError> {
        self.relay_page(mailbox, now_ms, limit, usize::MAX)
    }

    /// [`Database::relay_envelopes`] with at most `max_bytes` of
    /// ciphertext in all, but always the first envelope: a page a fetch
    /// answer can carry. Rows past the budget are not read.
    pub fn relay_page(
        &self,
        mailbox: &[u8; 32],
        now_ms: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<RelayEnvelope>, StorageError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM relay_envelopes WHERE mailbox = ?1 AND expires_at > ?2
             ORDER BY stored_at, id LIMIT ?3"
        ))?;
        let mut rows = stmt.query_map(params![&mailbox[..], sql_i64(now_ms)?, limit], RelayEnvelope::from_row)?;
        let mut page: Vec<RelayEnvelope> = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().transpose()? {
            bytes = bytes.saturating_add(row.ciphertext.len());
            if bytes > max_bytes && !page.is_empty() {
                break;
            }
            page.push(row);
        }
        Ok(page)
    }

    /// What a mailbox holds at `now_ms`.
    pub fn relay_usage(&self, mailbox: &[u8; 32], now_ms: u64) -> Result<MailboxUsage, StorageError> {
        usage(self.conn(), mailbox, now_ms)
    }

    /// Deletes the named envelopes of one mailbox (a verified receipt);
    /// ids of other mailboxes' envelopes are ignored. Returns how many went.
    pub fn relay_delete(&self, mailbox: &[u8; 32], ids: &[[u8; 32]]) -> Result<usize, StorageError> {
        let tx = self.conn().unchecked_transaction()?;
        let mut deleted = 0;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM relay_envelopes WHERE id = ?1 AND mailbox = ?2")?;
            for id in ids {
                deleted += stmt.execute(params![&id[..], &mailbox[..]])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Everything every mailbox holds (expired or not, until deleted): for
    /// the mailbox gauges.
    pub fn relay_totals(&self) -> Result<MailboxUsage, StorageError> {
        let (envelopes, bytes): (i64, i64) = self.conn().query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(ciphertext)), 0) FROM relay_envelopes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(MailboxUsage {
            envelopes: u64::try_from(envelopes).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    /// Deletes every envelope expired at `now_ms`; returns how many.
    pub fn relay_delete_expired(&self, now_ms: u64) -> Result<usize, StorageError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM relay_envelopes WHERE expires_at <= ?1")?
            .execute([sql_i64(now_ms)?])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: u8, mailbox: u8, len: usize, stored_at_ms: u64, expires_at_ms: u64) -> RelayEnvelope {
        RelayEnvelope {
            id: [id; 32],
            mailbox: [mailbox; 32],
            expires_at_ms,
            stored_at_ms,
            ciphertext: vec![id; len],
        }
    }

    #[test]
    fn store_list_delete() {
        let db = Database::in_memory().unwrap();
        let q = MailboxQuota::default();
        assert!(db.relay_store(&env(2, 1, 10, 20, 1000), &q).unwrap());
        assert!(db.relay_store(&env(1, 1, 10, 10, 1000), &q).unwrap());
        assert!(!db.relay_store(&env(1, 1, 10, 10, 1000), &q).unwrap(), "retry");
        db.relay_store(&env(3, 2, 10, 10, 1000), &q).unwrap();

        let held = db.relay_envelopes(&[1; 32], 30, 10).unwrap();
        assert_eq!(held, vec![env(1, 1, 10, 10, 1000), env(2, 1, 10, 20, 1000)]);
        assert_eq!(db.relay_envelopes(&[1; 32], 30, 1).unwrap().len(), 1);

        // A receipt for mailbox 1 cannot delete mailbox 2's envelope.
        assert_eq!(db.relay_delete(&[1; 32], &[[1; 32], [3; 32], [9; 32]]).unwrap(), 1);
        assert_eq!(
            db.relay_envelopes(&[1; 32], 30, 10).unwrap(),
            vec![env(2, 1, 10, 20, 1000)]
        );
        assert_eq!(db.relay_envelopes(&[2; 32], 30, 10).unwrap().len(), 1);
        let totals = db.relay_totals().unwrap();
        assert_eq!((totals.envelopes, totals.bytes), (2, 20), "what the gauges show");
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_but_holds_at_least_one() {
        let db = Database::in_memory().unwrap();
        let q = MailboxQuota::default();
        for (id, stored) in [(1, 10), (2, 20), (3, 30)] {
            assert!(db.relay_store(&env(id, 1, 100, stored, 1000), &q).unwrap());
        }
        let ids = |page: Vec<RelayEnvelope>| page.iter().map(|e| e.id[0]).collect::<Vec<_>>();
        assert_eq!(ids(db.relay_page(&[1; 32], 0, 10, 300).unwrap()), [1, 2, 3]);
        assert_eq!(ids(db.relay_page(&[1; 32], 0, 10, 299).unwrap()), [1, 2]);
        assert_eq!(ids(db.relay_page(&[1; 32], 0, 10, 200).unwrap()), [1, 2]);
        assert_eq!(
            ids(db.relay_page(&[1; 32], 0, 10, 1).unwrap()),
            [1],
            "one, however large"
        );
        assert_eq!(
            ids(db.relay_page(&[1; 32], 0, 2, 1000).unwrap()),
            [1, 2],
            "the count still holds"
        );
    }

    #[test]
    fn quota_is_enforced_by_count_and_bytes() {
        let db = Database::in_memory().unwrap();
        let q = MailboxQuota {
            max_envelopes: 2,
            max_bytes: 100,
        };
        db.relay_store(&env(1, 1, 40, 0, 1000), &q).unwrap();
        db.relay_store(&env(2, 1, 40, 0, 1000), &q).unwrap();
        let err = db.relay_store(&env(3, 1, 1, 0, 1000), &q).unwrap_err();
        assert!(
            matches!(
                &err,
                StorageError::QuotaExceeded {
                    envelopes: 2,
                    bytes: 80,
                    max_envelopes: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&hex::encode([1u8; 32])), "{err}");
        // A retry of a held envelope is not refused by a full mailbox.
        assert!(!db.relay_store(&env(2, 1, 40, 0, 1000), &q).unwrap());
        // Other mailboxes have their own quota.
        db.relay_store(&env(4, 2, 40, 0, 1000), &q).unwrap();

        db.relay_delete(&[1; 32], &[[1; 32]]).unwrap();
        let err = db.relay_store(&env(5, 1, 61, 0, 1000), &q).unwrap_err();
        assert!(matches!(err, StorageError::QuotaExceeded { bytes: 40, .. }), "{err}");
        assert!(db.relay_store(&env(5, 1, 60, 0, 1000), &q).unwrap());
        assert_eq!(
            db.relay_usage(&[1; 32], 0).unwrap(),
            MailboxUsage {
                envelopes: 2,
                bytes: 100
            }
        );
    }

    #[test]
    fn expired_envelopes_are_hidden_free_the_quota_and_are_removed() {
        let db = Database::in_memory().unwrap();
        let q = MailboxQuota {
            max_envelopes: 1,
            max_bytes: 1000,
        };
        db.relay_store(&env(1, 1, 10, 0, 100), &q).unwrap();
        assert_eq!(db.relay_envelopes(&[1; 32], 99, 10).unwrap().len(), 1);
        assert!(db.relay_envelopes(&[1; 32], 100, 10).unwrap().is_empty());
        // Stored at 100, the expired one no longer counts.
        assert!(db.relay_store(&env(2, 1, 10, 100, 500), &q).unwrap());

        assert_eq!(db.relay_delete_expired(100).unwrap(), 1);
        assert_eq!(db.relay_delete_expired(100).unwrap(), 0);
        let left = db.relay_envelopes(&[1; 32], 0, 10).unwrap();
        assert_eq!(left.iter().map(|e| e.id[0]).collect::<Vec<_>>(), vec![2]);
    }
}
