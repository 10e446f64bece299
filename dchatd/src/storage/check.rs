//! `dchatctl db check`: integrity, foreign keys, sizes and row counts of the
//! live database, read on a connection of its own so that the daemon's
//! connection stays free for other requests (WAL: readers never block the
//! writer).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::meta::{META_CREATED_AT, META_DATABASE_ID};
use super::restore::{foreign_key_violations, integrity_problems, kept_files, table_counts};
use super::{migrations, StorageError};
use crate::chain::{META_CHAIN_ID, META_GENESIS_HASH};

#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Empty when integrity_check says "ok".
    pub integrity_problems: Vec<String>,
    pub foreign_key_violations: Vec<(String, Option<i64>, String)>,
    pub schema_version: u32,
    pub database_id: String,
    pub chain_id: Option<String>,
    pub genesis_hash: Option<String>,
    pub created_at: String,
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    pub file_bytes: u64,
    pub wal_bytes: u64,
    pub tables: Vec<(String, u64)>,
    pub kept: Vec<(PathBuf, u64)>,
}

/// Checks the database at `db_path` (read-only; one read transaction, so
/// every figure describes the same moment).
pub fn check(db_path: &Path) -> Result<CheckReport, StorageError> {
    let open_err = |source| StorageError::Open {
        path: db_path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db_path, flags).map_err(open_err)?;
    conn.busy_timeout(super::BUSY_TIMEOUT).map_err(open_err)?;
    conn.execute_batch("BEGIN DEFERRED")?;
    let pragma = |name: &str| -> Result<u64, StorageError> {
        let v: i64 = conn.pragma_query_value(None, name, |r| r.get(0))?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    let meta = |key: &str| -> Result<Option<String>, StorageError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let report = CheckReport {
        integrity_problems: integrity_problems(&conn)?,
        foreign_key_violations: foreign_key_violations(&conn)?,
        schema_version: migrations::current_version(&conn)?,
        database_id: meta(META_DATABASE_ID)?.unwrap_or_default(),
        chain_id: meta(META_CHAIN_ID)?,
        genesis_hash: meta(META_GENESIS_HASH)?,
        created_at: meta(META_CREATED_AT)?.unwrap_or_default(),
        page_size: pragma("page_size")?,
        page_count: pragma("page_count")?,
        freelist_count: pragma("freelist_count")?,
        file_bytes: file_len(db_path),
        wal_bytes: file_len(&wal_path(db_path)),
        tables: table_counts(&conn)?,
        kept: kept_files(db_path),
    };
    conn.execute_batch("COMMIT")?;
    Ok(report)
}

fn wal_path(db_path: &Path) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
