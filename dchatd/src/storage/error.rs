//! The one error type of the storage layer.
//!
//! Callers map it once: `SchemaTooNew` and `Open` are startup failures with a
//! clear line for the operator, `NameTaken`/`IdTaken` become typed control
//! socket errors, and everything else is an internal database error.

use std::path::PathBuf;

/// Everything that can go wrong in `crate::storage`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database file could not be created (missing parent directory,
    /// permissions). Raised before SQLite is involved.
    #[error("cannot create database {}: {source}", path.display())]
    Create { path: PathBuf, source: std::io::Error },

    /// SQLite refused to open the file or to apply the open-time pragmas;
    /// this is also what a file that is not a database turns into.
    #[error("cannot open database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },

    /// `journal_mode=WAL` did not take. We refuse to run in another mode
    /// because concurrent backup and crash recovery assume WAL.
    #[error(
        "database {}: journal_mode is {mode:?}, not \"wal\" (does the filesystem support shared memory?)",
        path.display()
    )]
    WalUnavailable { path: PathBuf, mode: String },

    /// The file was written by a newer dchatd. It is left exactly as found.
    #[error(
        "database schema version {found} is newer than this dchatd supports ({supported}); \
         upgrade dchatd or restore a backup made by this version"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    /// A migration failed; its transaction was rolled back, so the database
    /// is still at the previous version.
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },

    /// An account with this name exists already (names are unique without
    /// regard to ASCII case).
    #[error("account name {0:?} is already taken")]
    NameTaken(String),

    /// An account with this id exists already.
    #[error("account id {0} already exists")]
    IdTaken(String),

    /// A relay mailbox is full: storing the envelope would pass its quota
    /// of envelopes or bytes. The sender should try another relay or later.
    #[error(
        "mailbox {mailbox} is full: it holds {envelopes} envelopes of {bytes} bytes \
         (quota {max_envelopes} envelopes, {max_bytes} bytes)"
    )]
    QuotaExceeded {
        /// Lowercase hex of the mailbox id.
        mailbox: String,
        envelopes: u64,
        bytes: u64,
        max_envelopes: u64,
        max_bytes: u64,
    },

    /// The final checkpoint or close failed.
    #[error("cannot close database {}: {source}", path.display())]
    Close { path: PathBuf, source: rusqlite::Error },

    /// A backup or restore was cancelled (client gone, daemon stopping).
    #[error("cancelled")]
    Cancelled,

    /// A file beside the database (backup, restore, previous copy) could
    /// not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },

    /// A value the caller built breaks what the schema holds (a bug of
    /// the caller's, reported instead of stored).
    #[error("not stored: {0}")]
    Invalid(&'static str),

    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
