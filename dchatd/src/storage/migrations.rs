//! Versioned schema migrations on `PRAGMA user_version`.
//!
//! The version lives in the database header, so it moves in the same
//! transaction as the schema change it describes: a crash mid-migration
//! leaves the previous version and the previous schema, never a mix.
//! Migrations are append-only; never edit one that has shipped.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::StorageError;

/// One step of the schema history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `user_version` the database has once this step is applied.
    pub version: u32,
    /// Short name for logs and `dchatctl db migrate`.
    pub name: &'static str,
    /// Statements run inside the migration's transaction.
    pub sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3… without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "meta and accounts",
        // STRICT makes SQLite reject values of the wrong type instead of
        // silently storing them. Names are unique without regard to ASCII case
        // (COLLATE NOCASE), so "Alice" and "alice" cannot both be hosted; lookups
        // still compare exactly (see accounts.rs). The meta rows are written
        // here, not from Rust, so that they exist exactly when the schema does:
        // randomblob() draws from SQLite's PRNG, seeded from the OS (/dev/urandom).
        sql: "
        CREATE TABLE meta (
            key   TEXT NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;

        CREATE TABLE accounts (
            name               TEXT NOT NULL PRIMARY KEY COLLATE NOCASE CHECK (name <> ''),
            id                 TEXT NOT NULL UNIQUE CHECK (id <> ''),
            identity_key       TEXT NOT NULL,
            messaging_key      TEXT NOT NULL,
            burner             INTEGER NOT NULL CHECK (burner IN (0, 1)),
            local              INTEGER NOT NULL CHECK (local IN (0, 1)),
            created_at         TEXT NOT NULL,
            registration_block INTEGER CHECK (registration_block >= 0)
        ) STRICT;

        INSERT INTO meta (key, value) VALUES
            ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            ('database_id', lower(hex(randomblob(16))));
    ",
    },
    Migration {
        version: 2,
        name: "chain: blocks, transactions, unfinalized blocks, evidence",
        // Finalized blocks and their transactions, stored in their canonical
        // encoding (the ledger's) beside the columns queries need. Blocks that
        // consensus proposed or verified but has not finalized are kept apart:
        // they must be durable before a vote, yet never count as chain history.
        sql: "
        CREATE TABLE blocks (
            height       INTEGER NOT NULL PRIMARY KEY CHECK (height >= 0),
            hash         BLOB NOT NULL UNIQUE,
            parent       BLOB NOT NULL,
            timestamp_ms INTEGER NOT NULL,
            encoded      BLOB NOT NULL,
            proof        BLOB,
            finalized_at TEXT NOT NULL
        ) STRICT;

        CREATE TABLE txs (
            id     BLOB NOT NULL PRIMARY KEY,
            height INTEGER NOT NULL REFERENCES blocks (height),
            idx    INTEGER NOT NULL,
            signer BLOB NOT NULL,
            nonce  INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX txs_by_height ON txs (height, idx);

        CREATE TABLE unfinalized_blocks (
            hash      BLOB NOT NULL PRIMARY KEY,
            height    INTEGER NOT NULL,
            encoded   BLOB NOT NULL,
            stored_at TEXT NOT NULL
        ) STRICT;

        CREATE TABLE evidence (
            id          INTEGER PRIMARY KEY,
            kind        TEXT NOT NULL,
            view        INTEGER NOT NULL,
            signer      BLOB NOT NULL,
            bytes       BLOB NOT NULL,
            recorded_at TEXT NOT NULL
        ) STRICT;
    ",
    },
    Migration {
        version: 3,
        name: "messaging: direct messages, outbox, relay mailboxes, channel posts",
        // Times are integer milliseconds since the Unix epoch (UTC): sent_at
        // comes signed inside the message and decides the reading order,
        // and an integer compares and indexes exactly; rows render them as
        // RFC 3339 for people. Message ids are chosen by senders, so the key
        // of `messages` includes the local account: when both ends of a
        // conversation are hosted here, each keeps its own copy.
        // No foreign key to `accounts`: history outlives a removed account
        // until someone deletes it on purpose.
        sql: "
        CREATE TABLE messages (
            account      TEXT NOT NULL,
            id           BLOB NOT NULL CHECK (length(id) = 16),
            peer         TEXT NOT NULL,
            direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            seq          INTEGER NOT NULL CHECK (seq >= 0),
            text         TEXT NOT NULL,
            content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
            sent_at      INTEGER NOT NULL CHECK (sent_at >= 0),
            received_at  INTEGER NOT NULL CHECK (received_at >= 0),
            state        TEXT NOT NULL CHECK (state IN ('sent', 'relayed', 'delivered')),
            PRIMARY KEY (account, id)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX messages_by_conversation ON messages (account, peer, sent_at, seq);

        CREATE TABLE outbox (
            envelope_id  BLOB NOT NULL PRIMARY KEY CHECK (length(envelope_id) = 32),
            account      TEXT NOT NULL,
            message_id   BLOB NOT NULL CHECK (length(message_id) = 16),
            mailbox      BLOB NOT NULL CHECK (length(mailbox) = 32),
            envelope     BLOB NOT NULL,
            expires_at   INTEGER NOT NULL CHECK (expires_at >= 0),
            attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt INTEGER NOT NULL CHECK (next_attempt >= 0)
        ) STRICT;
        CREATE INDEX outbox_due ON outbox (next_attempt);
        CREATE INDEX outbox_by_message ON outbox (account, message_id);

        CREATE TABLE relay_envelopes (
            id         BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 32),
            mailbox    BLOB NOT NULL CHECK (length(mailbox) = 32),
            expires_at INTEGER NOT NULL CHECK (expires_at >= 0),
            stored_at  INTEGER NOT NULL CHECK (stored_at >= 0),
            ciphertext BLOB NOT NULL
        ) STRICT;
        CREATE INDEX relay_envelopes_by_mailbox ON relay_envelopes (mailbox, stored_at);
        CREATE INDEX relay_envelopes_by_expiry ON relay_envelopes (expires_at);

        CREATE TABLE channel_posts (
            id          BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
            channel     TEXT NOT NULL,
            author      TEXT NOT NULL,
            author_key  BLOB NOT NULL CHECK (length(author_key) = 32),
            text        TEXT NOT NULL,
            sent_at     INTEGER NOT NULL CHECK (sent_at >= 0),
            received_at INTEGER NOT NULL CHECK (received_at >= 0),
            signature   BLOB NOT NULL CHECK (length(signature) = 64)
        ) STRICT;
        CREATE INDEX channel_posts_by_time ON channel_posts (channel, sent_at, id);
    ",
    },
    Migration {
        version: 4,
        name: "messaging: direct messages in a rowid table",
        // Version 3 kept messages WITHOUT ROWID, keyed by (account, id). A
        // row of a 1 KB text is larger than such a table keeps inside its
        // page (about 1000 bytes at 4 KiB pages), so every message also took
        // an overflow page of its own (~5 KiB on disk for 1 KB of text), and
        // the random ids scattered inserts over the whole tree. In a rowid
        // table rows are appended in arrival order, up to ~4 KB stay in the
        // page, and the (account, id) key is a small unique index.
        sql: "
        CREATE TABLE messages_v4 (
            account      TEXT NOT NULL,
            id           BLOB NOT NULL CHECK (length(id) = 16),
            peer         TEXT NOT NULL,
            direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            seq          INTEGER NOT NULL CHECK (seq >= 0),
            text         TEXT NOT NULL,
            content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
            sent_at      INTEGER NOT NULL CHECK (sent_at >= 0),
            received_at  INTEGER NOT NULL CHECK (received_at >= 0),
            state        TEXT NOT NULL CHECK (state IN ('sent', 'relayed', 'delivered')),
            UNIQUE (account, id)
        ) STRICT;
        INSERT INTO messages_v4
            (account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state)
            SELECT account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state
            FROM messages ORDER BY account, peer, sent_at, seq;
        DROP TABLE messages;
        ALTER TABLE messages_v4 RENAME TO messages;
        CREATE INDEX messages_by_conversation ON messages (account, peer, sent_at, seq);
    ",
    },
    Migration {
        version: 5,
        name: "messaging: outbox indexed by expiry",
        // No query looks outbox rows up by message, but every insert and
        // delete kept that index (random keys, a page each). The expiry
        // sweep, which runs before every delivery round, scanned the whole
        // table; expiries are now + TTL, so their index only grows at its
        // end.
        sql: "
        DROP INDEX outbox_by_message;
        CREATE INDEX outbox_by_expiry ON outbox (expires_at);
    ",
    },
    Migration {
        version: 6,
        name: "messaging: a direct message can be expired",
        // A DM whose envelope expired in the sender's outbox (nobody took
        // it in 7 days) stayed `sent`, as if still on its way. SQLite cannot
        // change a CHECK in place, so the table is copied as it stands,
        // rowid order (the conversation order of migration 4) included.
        sql: "
        CREATE TABLE messages_v6 (
            account      TEXT NOT NULL,
            id           BLOB NOT NULL CHECK (length(id) = 16),
            peer         TEXT NOT NULL,
            direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            seq          INTEGER NOT NULL CHECK (seq >= 0),
            text         TEXT NOT NULL,
            content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
            sent_at      INTEGER NOT NULL CHECK (sent_at >= 0),
            received_at  INTEGER NOT NULL CHECK (received_at >= 0),
            state        TEXT NOT NULL CHECK (state IN ('sent', 'relayed', 'expired', 'delivered')),
            UNIQUE (account, id)
        ) STRICT;
        INSERT INTO messages_v6
            (rowid, account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state)
            SELECT rowid, account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state
            FROM messages ORDER BY rowid;
        DROP TABLE messages;
        ALTER TABLE messages_v6 RENAME TO messages;
        CREATE INDEX messages_by_conversation ON messages (account, peer, sent_at, seq);
    ",
    },
    Migration {
        version: 7,
        name: "messaging: an outbox envelope may carry several messages",
        // Messages of one conversation sent together share an envelope
        // (ADR 0017). `message_id` stays the first one's; the others' ids
        // follow in `more_ids`, 16 bytes each, in the envelope's order.
        sql: "
        ALTER TABLE outbox ADD COLUMN more_ids BLOB NOT NULL DEFAULT x''
            CHECK (length(more_ids) % 16 = 0);
    ",
    },
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = match MIGRATIONS.last() {
    Some(m) => m.version,
    None => 0,
};

/// The database's `user_version` as stored.
pub fn current_version(conn: &Connection) -> Result<u32, StorageError> {
    let raw: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // user_version is a signed 32-bit header field. dchatd never writes a
    // negative one, so reinterpreting it makes a foreign value compare as
    // "too new" and be refused rather than migrated.
    Ok(raw as u32)
}

/// Migrations not yet applied. Errors if the database is newer than us.
pub fn pending(conn: &Connection) -> Result<Vec<&'static Migration>, StorageError> {
    let current = supported_version(conn, SCHEMA_VERSION)?;
    Ok(MIGRATIONS.iter().filter(|m| m.version > current).collect())
}

/// Migrations already applied to this database.
pub fn applied(conn: &Connection) -> Result<Vec<&'static Migration>, StorageError> {
    let current = supported_version(conn, SCHEMA_VERSION)?;
    Ok(MIGRATIONS.iter().filter(|m| m.version <= current).collect())
}

/// Brings the database up to [`SCHEMA_VERSION`] and returns the steps that
/// were applied (empty when it was current already).
pub fn migrate(conn: &Connection) -> Result<Vec<&'static Migration>, StorageError> {
    migrate_with(conn, MIGRATIONS)
}

/// Refuses a database written by a newer build before anything touches it.
fn supported_version(conn: &Connection, supported: u32) -> Result<u32, StorageError> {
    let found = current_version(conn)?;
    if found > supported {
        return Err(StorageError::SchemaTooNew { found, supported });
    }
    Ok(found)
}

fn migrate_with(conn: &Connection, list: &'static [Migration]) -> Result<Vec<&'static Migration>, StorageError> {
    let supported = list.last().map_or(0, |m| m.version);
    let mut done = Vec::new();
    for step in list {
        if supported_version(conn, supported)? >= step.version {
            continue;
        }
        // IMMEDIATE takes the write lock up front; the version is then read
        // again under it, because another process may have migrated between
        // our check and the lock.
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        if supported_version(&tx, supported)? >= step.version {
            continue;
        }
        tracing::info!(version = step.version, name = step.name, "applying database migration");
        let fail = |source| StorageError::Migration {
            version: step.version,
            name: step.name,
            source,
        };
        tx.execute_batch(step.sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", step.version).map_err(fail)?;
        tx.commit().map_err(fail)?;
        done.push(step);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_exists(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn versions_are_contiguous_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "migration {:?}", m.name);
            assert!(!m.name.is_empty());
        }
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }

    #[test]
    fn migrate_is_idempotent() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(pending(&conn).unwrap().len(), MIGRATIONS.len());
        assert!(applied(&conn).unwrap().is_empty());

        assert_eq!(migrate(&conn).unwrap().len(), MIGRATIONS.len());
        assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
        assert!(pending(&conn).unwrap().is_empty());
        assert_eq!(applied(&conn).unwrap().len(), MIGRATIONS.len());

        assert!(migrate(&conn).unwrap().is_empty());
        assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn the_outbox_expiry_sweep_uses_an_index() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN DELETE FROM outbox WHERE expires_at <= 5 RETURNING account, message_id")
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("outbox_by_expiry")), "{plan:?}");
        let unused: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'outbox_by_message'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unused, 0);
    }

    #[test]
    fn v3_messages_move_to_a_rowid_table_with_their_key_and_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrate_with(&conn, &MIGRATIONS[..3]).unwrap();
        let insert = |id: u8, seq: i64, sent_at: i64| {
            conn.execute(
                "INSERT INTO messages VALUES ('alice', ?1, 'bob', 'out', ?2, 'hello', zeroblob(32), ?3, ?3, 'sent')",
                rusqlite::params![vec![id; 16], seq, sent_at],
            )
            .unwrap();
        };
        // Ids in another order than the conversation's.
        insert(9, 0, 100);
        insert(1, 1, 200);
        insert(5, 2, 300);

        let applied = migrate_with(&conn, &MIGRATIONS[..4]).unwrap();
        assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), vec![4]);
        let without_rowid: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages' AND sql LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(without_rowid, 0);
        // Rows in conversation order, the rowid following it.
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM messages ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, vec![0, 1, 2]);
        keyed_and_indexed_as_before(&conn, [1; 16]);
        assert!(conn
            .execute(
                "INSERT INTO messages VALUES ('alice', ?1, 'bob', 'out', 7, 'x', zeroblob(32), 1, 1, 'lost')",
                [vec![2u8; 16]],
            )
            .is_err());
    }

    #[test]
    fn v5_messages_are_copied_whole_and_may_then_be_expired() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrate_with(&conn, &MIGRATIONS[..5]).unwrap();
        for (rowid, id, state) in [(3, 9u8, "delivered"), (7, 1, "sent"), (8, 5, "relayed")] {
            conn.execute(
                "INSERT INTO messages (rowid, account, id, peer, direction, seq, text, content_hash, sent_at, received_at, state)
                 VALUES (?1, 'alice', ?2, 'bob', 'out', ?1, 'hello', zeroblob(32), ?1, ?1, ?3)",
                rusqlite::params![rowid, vec![id; 16], state],
            )
            .unwrap();
        }
        let dump = |conn: &Connection| -> Vec<(i64, Vec<u8>, String)> {
            conn.prepare("SELECT rowid, id, state FROM messages ORDER BY rowid")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = dump(&conn);
        assert!(conn
            .execute("UPDATE messages SET state = 'expired' WHERE seq = 7", [])
            .is_err());

        let applied = migrate_with(&conn, &MIGRATIONS[..6]).unwrap();
        assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), vec![6]);
        assert_eq!(dump(&conn), before);
        assert_eq!(
            conn.execute("UPDATE messages SET state = 'expired' WHERE seq = 7", [])
                .unwrap(),
            1
        );
        assert!(conn
            .execute("UPDATE messages SET state = 'lost' WHERE seq = 7", [])
            .is_err());
        keyed_and_indexed_as_before(&conn, [1; 16]);
    }

    #[test]
    fn v6_outbox_rows_carry_their_one_message_after_v7() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_with(&conn, &MIGRATIONS[..6]).unwrap();
        conn.execute(
            "INSERT INTO outbox (envelope_id, account, message_id, mailbox, envelope, expires_at, attempts, next_attempt)
             VALUES (zeroblob(32), 'alice', ?1, zeroblob(32), x'01', 10, 0, 0)",
            [vec![4u8; 16]],
        )
        .unwrap();
        let applied = migrate_with(&conn, &MIGRATIONS[..7]).unwrap();
        assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), vec![7]);
        let (id, more): (Vec<u8>, Vec<u8>) = conn
            .query_row("SELECT message_id, more_ids FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id, more), (vec![4u8; 16], vec![]));
        // Ids are whole: 16 bytes each.
        assert!(conn.execute("UPDATE outbox SET more_ids = zeroblob(17)", []).is_err());
        assert_eq!(
            conn.execute("UPDATE outbox SET more_ids = zeroblob(32)", []).unwrap(),
            1
        );
    }

    /// After a copy of `messages`: (account, id) is still the key, as ON
    /// CONFLICT needs (alice's `id` is stored already), and the
    /// conversation index is there.
    fn keyed_and_indexed_as_before(conn: &Connection, id: [u8; 16]) {
        let again = conn
            .execute(
                "INSERT INTO messages VALUES ('alice', ?1, 'bob', 'out', 99, 'x', zeroblob(32), 1, 1, 'sent')
                 ON CONFLICT (account, id) DO NOTHING",
                [id.to_vec()],
            )
            .unwrap();
        assert_eq!(again, 0);
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_by_conversation'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }

    #[test]
    fn v2_database_migrates_to_v3_keeping_its_data() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        assert_eq!(migrate_with(&conn, &MIGRATIONS[..2]).unwrap().len(), 2);
        assert_eq!(current_version(&conn).unwrap(), 2);
        conn.execute_batch(
            "INSERT INTO accounts VALUES ('alice', 'id-a', 'ik', 'mk', 0, 1, '2025-01-01T00:00:00Z', NULL);
             INSERT INTO blocks VALUES (0, x'01', x'00', 5, x'beef', NULL, '2025-01-01T00:00:00Z');
             INSERT INTO txs VALUES (x'02', 0, 0, x'03', 0);",
        )
        .unwrap();
        for t in ["messages", "outbox", "relay_envelopes", "channel_posts"] {
            assert!(!table_exists(&conn, t), "{t}");
        }

        let applied = migrate_with(&conn, &MIGRATIONS[..3]).unwrap();
        assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), vec![3]);
        assert_eq!(current_version(&conn).unwrap(), 3);
        for t in ["messages", "outbox", "relay_envelopes", "channel_posts"] {
            assert!(table_exists(&conn, t), "{t}");
        }
        let kept: (String, i64, i64) = conn
            .query_row(
                "SELECT (SELECT name FROM accounts), (SELECT count(*) FROM blocks), (SELECT count(*) FROM txs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, ("alice".to_string(), 1, 1));
        let problems: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(problems, "ok");
    }

    #[test]
    fn newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&conn).unwrap_err();
        assert!(matches!(
            err,
            StorageError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ));
        assert!(matches!(pending(&conn), Err(StorageError::SchemaTooNew { .. })));
        assert!(!table_exists(&conn, "accounts"));
    }

    #[test]
    fn negative_user_version_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", -1).unwrap();
        assert!(matches!(migrate(&conn), Err(StorageError::SchemaTooNew { .. })));
    }

    #[test]
    fn failed_migration_rolls_back_with_its_version() {
        static BROKEN: &[Migration] = &[
            Migration {
                version: 1,
                name: "good",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                version: 2,
                name: "bad",
                sql: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);",
            },
        ];
        let conn = Connection::open_in_memory().unwrap();
        let err = migrate_with(&conn, BROKEN).unwrap_err();
        assert!(matches!(
            err,
            StorageError::Migration {
                version: 2,
                name: "bad",
                ..
            }
        ));
        assert_eq!(current_version(&conn).unwrap(), 1);
        assert!(table_exists(&conn, "a"));
        assert!(!table_exists(&conn, "b"));
        assert!(conn.is_autocommit(), "no transaction left open");
    }
}
