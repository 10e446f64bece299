//! Restore: verify a candidate database file, then put it in place of the
//! live one, keeping the previous database beside it.
//!
//! Nothing here knows whether the daemon is running: the live restore
//! (`service::database`) closes the daemon's connection first, the offline
//! one (`crate::restore_offline`) holds the state lock. Only the database
//! file and its `-wal`/`-shm` change; the keystore, the node key and any
//! record a validator keeps of what it signed live elsewhere in the state
//! directory and are never rewound by a restore.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::backup::parent_dir;
use super::meta::{META_CREATED_AT, META_DATABASE_ID};
use super::{migrations, SCHEMA_VERSION};
use crate::chain::{META_CHAIN_ID, META_GENESIS_HASH};

/// What a verified candidate holds.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub bytes: u64,
    pub schema_version: u32,
    pub database_id: String,
    /// The chain the database was bound to (meta `chain_id` and
    /// `genesis_hash`, written when the chain first opened it): its network.
    pub chain_id: Option<String>,
    pub genesis_hash: Option<String>,
    pub created_at: String,
    pub tables: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not a usable dchat database; nothing was replaced.
    #[error("{0}")]
    Invalid(String),
    #[error("the file's schema version {found} is newer than this dchatd supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("the file belongs to network {found}, this node to {expected}")]
    WrongNetwork { expected: String, found: String },
    /// Putting the file in place failed; the message says what is live.
    #[error("{0}")]
    Failed(String),
}

const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// At most this many problems of integrity_check are reported.
const MAX_PROBLEMS: u32 = 10;

/// Checks `path` without changing it: the SQLite header, a size that
/// matches the header, `integrity_check`, `foreign_key_check`, a schema
/// version this build supports, and the `meta` rows every dchat database
/// has. Returns what it holds.
pub fn verify(path: &Path) -> Result<Candidate, RestoreError> {
    let io_err = |e: std::io::Error| RestoreError::Failed(format!("{}: {e}", path.display()));
    let bytes = std::fs::metadata(path).map_err(io_err)?.len();
    let mut header = [0u8; 100];
    let mut file = File::open(path).map_err(io_err)?;
    if bytes < header.len() as u64 {
        return Err(RestoreError::Invalid(format!(
            "not a SQLite database: only {bytes} bytes"
        )));
    }
    file.read_exact(&mut header).map_err(io_err)?;
    drop(file);
    check_header(&header, bytes)?;

    let conn = open_candidate(path)?;
    let result = inspect(&conn);
    // Closing the last connection removes the -wal/-shm it made.
    if let Err((_, e)) = conn.close() {
        tracing::warn!(path = %path.display(), error = %e, "closing the candidate database failed");
    }
    result.map(|mut c| {
        c.bytes = bytes;
        c
    })
}

/// The SQLite header, and a file size that agrees with it.
fn check_header(header: &[u8; 100], bytes: u64) -> Result<(), RestoreError> {
    if &header[..16] != HEADER_MAGIC {
        return Err(RestoreError::Invalid(
            "not a SQLite database (the file does not start with the SQLite header)".into(),
        ));
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Err(RestoreError::Invalid(format!("damaged SQLite header: page size {n}"))),
    };
    if !bytes.is_multiple_of(page_size) {
        return Err(RestoreError::Invalid(format!(
            "truncated: {bytes} bytes is not a whole number of {page_size}-byte pages"
        )));
    }
    // The page count in the header is valid only when the change counter
    // matches the version-valid-for field (SQLite file format, 1.3.7).
    let pages = u64::from(be32(28));
    if pages > 0 && be32(24) == be32(92) && pages * page_size > bytes {
        return Err(RestoreError::Invalid(format!(
            "truncated: the header says {pages} pages ({} bytes) but the file has {bytes} bytes",
            pages * page_size
        )));
    }
    Ok(())
}

fn open_candidate(path: &Path) -> Result<Connection, RestoreError> {
    let invalid = |e: rusqlite::Error| RestoreError::Invalid(format!("SQLite cannot open it: {e}"));
    // Read-write without create: a WAL-mode file needs its -shm, which a
    // read-only connection could not make. query_only keeps us from
    // changing anything.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(invalid)?;
    conn.pragma_update(None, "query_only", true).map_err(invalid)?;
    Ok(conn)
}

fn inspect(conn: &Connection) -> Result<Candidate, RestoreError> {
    let unreadable = |e: rusqlite::Error| RestoreError::Invalid(format!("SQLite cannot read it: {e}"));
    let version = migrations::current_version(conn).map_err(|e| RestoreError::Invalid(e.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(RestoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let problems = integrity_problems(conn).map_err(unreadable)?;
    if !problems.is_empty() {
        return Err(RestoreError::Invalid(format!(
            "integrity_check failed: {}",
            problems.join("; ")
        )));
    }
    if version == 0 {
        return Err(RestoreError::Invalid(
            "not a dchat database: it has no schema version".into(),
        ));
    }
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(unreadable)?
        == 1;
    if !has_meta {
        return Err(RestoreError::Invalid(
            "not a dchat database: it has no meta table".into(),
        ));
    }
    let violations = foreign_key_violations(conn).map_err(unreadable)?;
    if !violations.is_empty() {
        return Err(RestoreError::Invalid(format!(
            "foreign_key_check found {} violations (first in table {})",
            violations.len(),
            violations[0].0
        )));
    }
    let meta = |key: &str| -> Result<Option<String>, RestoreError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(unreadable)
    };
    let Some(database_id) = meta(META_DATABASE_ID)? else {
        return Err(RestoreError::Invalid(
            "not a dchat database: meta has no database_id".into(),
        ));
    };
    Ok(Candidate {
        bytes: 0,
        schema_version: version,
        database_id,
        chain_id: meta(META_CHAIN_ID)?,
        genesis_hash: meta(META_GENESIS_HASH)?,
        created_at: meta(META_CREATED_AT)?.unwrap_or_default(),
        tables: table_counts(conn).map_err(unreadable)?,
    })
}

/// The problems `integrity_check` reports; empty when it says "ok".
pub fn integrity_problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA integrity_check({MAX_PROBLEMS})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let lines = rows.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(if lines == ["ok"] { Vec::new() } else { lines })
}

/// `(table, rowid, parent)` for each row whose foreign key does not resolve.
pub fn foreign_key_violations(conn: &Connection) -> rusqlite::Result<Vec<(String, Option<i64>, String)>> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Every table of the schema (SQLite's own excepted) and its row count.
pub fn table_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    names
        .into_iter()
        .map(|name| {
            let quoted = name.replace('"', "\"\"");
            let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{quoted}\""), [], |r| r.get(0))?;
            Ok((name, u64::try_from(rows).unwrap_or(0)))
        })
        .collect()
}

/// The chain a database is bound to, as people read it.
pub fn describe_network(chain_id: Option<&str>, genesis_hash: Option<&str>) -> String {
    match (chain_id, genesis_hash) {
        (_, None) => "none".into(),
        (Some(id), Some(hash)) => format!("{id} (genesis {})", hash.get(..16).unwrap_or(hash)),
        (None, Some(hash)) => format!("genesis {}", hash.get(..16).unwrap_or(hash)),
    }
}

/// Refuses a candidate of another network unless `force`. The network is
/// the genesis the database was bound to. A live database bound to none
/// (a node without a chain, an empty state directory) accepts any; a
/// candidate bound to none is refused by a bound live database.
pub fn check_network(
    candidate: &Candidate,
    live_chain_id: Option<&str>,
    live_genesis: Option<&str>,
    force: bool,
) -> Result<(), RestoreError> {
    let Some(expected) = live_genesis else { return Ok(()) };
    if candidate.genesis_hash.as_deref() == Some(expected) {
        return Ok(());
    }
    let found = describe_network(candidate.chain_id.as_deref(), candidate.genesis_hash.as_deref());
    let expected = describe_network(live_chain_id, Some(expected));
    if force {
        tracing::warn!(%expected, %found, "restoring a database of another network (forced)");
        return Ok(());
    }
    Err(RestoreError::WrongNetwork { expected, found })
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn remove_if_present(path: &Path) -> Result<(), RestoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RestoreError::Failed(format!("cannot remove {}: {e}", path.display()))),
    }
}

fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != ErrorKind::InvalidInput => Err(RestoreError::Failed(format!(
            "cannot sync directory {}: {e}",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Where the database live before a restore is kept:
/// `<db>.pre-restore-<UTC time>`, numbered if that exists.
fn previous_name(db_path: &Path) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = sidecar(db_path, &format!(".pre-restore-{stamp}"));
    let mut candidate = base.clone();
    let mut n = 1;
    while std::fs::symlink_metadata(&candidate).is_ok() {
        candidate = sidecar(&base, &format!("-{n}"));
        n += 1;
    }
    candidate
}

/// Previous databases kept beside `db_path` by restores, with their sizes.
pub fn kept_files(db_path: &Path) -> Vec<(PathBuf, u64)> {
    let prefix = format!(
        "{}.pre-restore-",
        db_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let Ok(entries) = std::fs::read_dir(parent_dir(db_path)) else {
        return Vec::new();
    };
    let mut kept: Vec<(PathBuf, u64)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    kept.sort();
    kept
}

/// Puts the verified `candidate` in place of `db_path`, which must be
/// closed (no connection open, its WAL folded back in). The previous
/// database stays as a hard link under [`previous_name`], so at every
/// instant one complete database is live: the old one until the rename,
/// the new one after it. Returns where the previous one is kept.
pub fn install(candidate: &Path, db_path: &Path) -> Result<Option<PathBuf>, RestoreError> {
    let dir = parent_dir(db_path);
    let wal = sidecar(db_path, "-wal");
    let previous = if std::fs::symlink_metadata(db_path).is_ok() {
        // A WAL with frames holds commits the main file lacks: keeping only
        // the main file would lose them, and leaving the WAL would replay
        // them into the restored file.
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0 {
            return Err(RestoreError::Failed(format!(
                "{} still has a write-ahead log; nothing was replaced",
                db_path.display()
            )));
        }
        let previous = previous_name(db_path);
        std::fs::hard_link(db_path, &previous).map_err(|e| {
            RestoreError::Failed(format!(
                "cannot keep the previous database as {}: {e}; nothing was replaced",
                previous.display()
            ))
        })?;
        Some(previous)
    } else {
        None
    };
    match_owner(candidate, db_path)?;
    remove_if_present(&wal)?;
    remove_if_present(&sidecar(db_path, "-shm"))?;
    std::fs::rename(candidate, db_path).map_err(|e| {
        RestoreError::Failed(format!(
            "cannot rename {} to {}: {e}; the previous database is still live",
            candidate.display(),
            db_path.display()
        ))
    })?;
    sync_dir(dir)?;
    Ok(previous)
}

/// Undoes [`install`]: the previous database becomes live again (or, when
/// there was none, the restored file is removed).
pub fn undo_install(db_path: &Path, previous: Option<&Path>) -> Result<(), RestoreError> {
    remove_if_present(&sidecar(db_path, "-wal"))?;
    remove_if_present(&sidecar(db_path, "-shm"))?;
    match previous {
        Some(prev) => std::fs::rename(prev, db_path).map_err(|e| {
            RestoreError::Failed(format!(
                "cannot move {} back to {}: {e}",
                prev.display(),
                db_path.display()
            ))
        })?,
        None => remove_if_present(db_path)?,
    }
    sync_dir(parent_dir(db_path))
}

/// When root restores offline, the new file must belong to whoever owns
/// the database (or the state directory), or the daemon's user could not
/// open it.
fn match_owner(candidate: &Path, db_path: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let owner = std::fs::metadata(db_path).or_else(|_| std::fs::metadata(parent_dir(db_path)));
    let (Ok(owner), Ok(current)) = (owner, std::fs::metadata(candidate)) else {
        return Ok(());
    };
    if (owner.uid(), owner.gid()) != (current.uid(), current.gid()) {
        std::os::unix::fs::chown(candidate, Some(owner.uid()), Some(owner.gid())).map_err(|e| {
            RestoreError::Failed(format!(
                "cannot give {} to uid {}: {e}",
                candidate.display(),
                owner.uid()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
