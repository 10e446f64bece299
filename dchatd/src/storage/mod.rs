//! The daemon's SQLite database: one file in the state directory.
//!
//! Opening sets the pragmas every connection needs and runs pending
//! migrations, so a `Database` in hand is always at [`SCHEMA_VERSION`].
//! Each table group has its own module with its SQL beside its methods.

mod accounts;
pub mod backup;
pub mod backup_write;
mod chain;
mod channel_posts;
pub mod check;
mod error;
mod fd_vfs;
mod file_copy;
mod mailbox;
mod messages;
mod meta;
pub mod migrations;
mod outbox;
pub mod restore;
mod writeback;

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use accounts::AccountRow;
pub use chain::{EvidenceRow, FinalizedBlock, StoredBlock, TxEntry, TxLocation};
pub use channel_posts::ChannelPostRow;
pub use error::StorageError;
pub use mailbox::{MailboxQuota, MailboxUsage, RelayEnvelope};
pub use messages::{rfc3339_ms, DeliveryState, Direction, MessageRow};
pub use meta::{META_CREATED_AT, META_DATABASE_ID};
pub use migrations::{Migration, MIGRATIONS, SCHEMA_VERSION};
pub use outbox::{Delivery, DmWrite, OutboxEntry, RetryPolicy};

/// How long a statement waits for another connection's lock (a backup, a
/// `dchatctl db check`) before it fails with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Page cache per connection, in KiB (a negative `cache_size` means KiB).
const CACHE_SIZE_KIB: i64 = 16 * 1024;

/// How hard SQLite syncs to disk on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Commits survive a daemon crash but the last ones may be lost on power
    /// loss. Only for tests and throwaway dev networks.
    Normal,
    /// Every commit is on disk before it returns: a write acknowledged to a
    /// caller survives kill -9 and power loss.
    #[default]
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> i64 {
        match self {
            Synchronous::Normal => 1,
            Synchronous::Full => 2,
        }
    }
}

/// Knobs for [`Database::open`]; the default is the durable choice.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    pub synchronous: Synchronous,
}

/// An open, migrated database. One connection; not `Sync`.
#[derive(Debug)]
pub struct Database {
    conn: Connection,
    path: PathBuf,
    /// A descriptor of the daemon's own on the database file, lent to
    /// backups that copy the file as it is. Never closed while SQLite has
    /// the file open: closing any descriptor on a file drops every POSIX
    /// lock the process holds on it, SQLite's included (SQLite's "How To
    /// Corrupt An SQLite Database File", 2.2). It is therefore opened once,
    /// dropped only after the connection is closed (see [`Database::close`];
    /// fields drop in declaration order), and every borrower keeps its
    /// clone until its own connection on the file is closed.
    file: Option<Arc<File>>,
    /// Descriptors on the database's own files that clients handed over
    /// (a backup's destination, by mistake or malice): never closed, for
    /// the same reason (see [`Database::keep_open`]).
    kept: Vec<std::mem::ManuallyDrop<File>>,
}

impl Database {
    /// Opens (creating if missing, in an existing directory) and migrates the
    /// database at `path`. A database from a newer dchatd is refused with
    /// [`StorageError::SchemaTooNew`] before anything is written to it.
    pub fn open(path: &Path, opts: &StorageOptions) -> Result<Database, StorageError> {
        create_private(path)?;
        let open_err = |source| StorageError::Open {
            path: path.to_owned(),
            source,
        };
        // Without SQLITE_OPEN_URI: the path is a file name, never a URI.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;

        // Check the version before switching to WAL, which rewrites the
        // header: a newer database must be left byte-for-byte as found. This
        // first read is also where a file that is not a database fails.
        match migrations::current_version(&conn) {
            Ok(found) if found > SCHEMA_VERSION => {
                return Err(StorageError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
            Ok(_) => {}
            Err(StorageError::Sqlite(source)) => return Err(open_err(source)),
            Err(other) => return Err(other),
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::WalUnavailable {
                path: path.to_owned(),
                mode,
            });
        }
        set_connection_pragmas(&conn, opts).map_err(open_err)?;
        migrations::migrate(&conn)?;
        // Opened last: nothing below can fail and drop it before `conn`.
        let file = File::open(path).map_err(|source| StorageError::File {
            path: path.to_owned(),
            source,
        })?;
        Ok(Database {
            conn,
            path: path.to_owned(),
            file: Some(Arc::new(file)),
            kept: Vec::new(),
        })
    }

    /// A private, migrated in-memory database for tests. Not WAL (memory
    /// databases have no journal file), otherwise configured like `open`.
    pub fn in_memory() -> Result<Database, StorageError> {
        let conn = Connection::open_in_memory()?;
        set_connection_pragmas(&conn, &StorageOptions::default())?;
        migrations::migrate(&conn)?;
        Ok(Database {
            conn,
            path: PathBuf::from(":memory:"),
            file: None,
            kept: Vec::new(),
        })
    }

    /// The schema version stored in the file (equal to [`SCHEMA_VERSION`]
    /// unless another process changed it since open).
    pub fn schema_version(&self) -> Result<u32, StorageError> {
        migrations::current_version(&self.conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The daemon's descriptor on the database file (none in memory).
    /// Whoever clones it must drop the clone only after closing every
    /// connection of its own on the file (see the field's comment).
    pub(crate) fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    /// The name of this database's own file that `file` is a descriptor
    /// on (the database, its WAL or its shared-memory file), if any. The
    /// names are SQLite's, which resolves a symbolic link to the database
    /// and keeps the WAL and shared-memory files beside its target.
    pub fn owns(&self, file: &File) -> Option<PathBuf> {
        let given = file.metadata().ok()?;
        let main = self
            .conn
            .path()
            .filter(|p| !p.is_empty())
            .map_or(self.path.clone(), PathBuf::from);
        if self
            .file
            .as_deref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| same_file(&m, &given))
        {
            return Some(main);
        }
        ["-wal", "-shm"].into_iter().find_map(|suffix| {
            let mut name = main.as_os_str().to_owned();
            name.push(suffix);
            let own = std::fs::metadata(&name).ok()?;
            same_file(&own, &given).then(|| PathBuf::from(name))
        })
    }

    /// Keeps `file`, a descriptor on one of this database's own files
    /// ([`Database::owns`]), open for the rest of the process: closing it
    /// while any connection on the database is open, the daemon's or a
    /// backup's, would drop SQLite's locks (see the `file` field). Only a
    /// client that can open the database's files itself can hand one over.
    pub fn keep_open(&mut self, file: File) {
        self.kept.push(std::mem::ManuallyDrop::new(file));
    }

    /// Folds the WAL back into the main file and truncates it, so the file
    /// alone is a complete copy, then closes the connection.
    pub fn close(self) -> Result<(), StorageError> {
        let Database { conn, path, file, .. } = self;
        let closed = checkpoint_and_close(conn, path);
        if closed.is_ok() {
            // Only now that SQLite has let go of the file (see the field).
            drop(file);
        } else {
            // The connection may still be open: its locks must stay.
            std::mem::forget(file);
        }
        closed
    }
}

fn checkpoint_and_close(conn: Connection, path: PathBuf) -> Result<(), StorageError> {
    // Returns (busy, wal pages, checkpointed pages); busy=1 only means a
    // reader held on. Nothing is lost then: the WAL stays and is replayed
    // on the next open.
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(|source| StorageError::Close {
            path: path.clone(),
            source,
        })?;
    if busy != 0 {
        tracing::warn!(path = %path.display(), "database checkpoint incomplete: another connection is reading");
    }
    conn.close()
        .map_err(|(_conn, source)| StorageError::Close { path, source })
}

/// Whether two metadata describe the same file (device and inode).
pub(crate) fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Creates a missing database file with mode 0600 before SQLite sees it:
/// SQLite would create it world-readable, and the -wal/-shm files copy the
/// main file's mode. An existing file is left alone.
fn create_private(path: &Path) -> Result<(), StorageError> {
    let created = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StorageError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A `u64` as an SQLite integer; values past `i64::MAX` are refused, never
/// wrapped.
pub(crate) fn sql_i64(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Sqlite(rusqlite::Error::IntegralValueOutOfRange(0, i64::MAX)))
}

/// Column `idx` of `row` as a `u64` (the schema's CHECKs keep it >= 0).
pub(crate) fn row_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// Per-connection settings (not stored in the file, so set on every open).
fn set_connection_pragmas(conn: &Connection, opts: &StorageOptions) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", opts.synchronous.pragma_value())?;
    // SQLite leaves foreign keys off by default for backwards compatibility.
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)?;
    Ok(())
}

#[cfg(test)]
mod tests;
