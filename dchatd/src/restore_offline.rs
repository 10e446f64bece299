//! `dchatd --restore FILE`: restore a backup into the state directory of a
//! stopped node (`dchatctl db restore FILE --offline` runs this).
//!
//! The same checks and the same swap as a live restore (storage/restore.rs),
//! under the state lock, so it refuses while a daemon runs on the directory.
//! FILE is read with the permissions of whoever runs this; when that is
//! root, the restored file is given to the owner of the database it
//! replaces.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use dchat_control::api;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::chain::{META_CHAIN_ID, META_GENESIS_HASH};
use crate::config::Config;
use crate::error::DaemonError;
use crate::service::database::{ensure_space, report, DbOpError};
use crate::storage::backup::{remove_stale_temp_files, TempFile};
use crate::storage::restore::{self, RestoreError};
use crate::storage::{Database, StorageOptions};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    #[error("{0}; nothing was changed")]
    Refused(RestoreError),
    #[error("{0}")]
    Failed(String),
}

impl From<RestoreError> for OfflineError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Failed(why) => OfflineError::Failed(why),
            refused => OfflineError::Refused(refused),
        }
    }
}

impl From<DbOpError> for OfflineError {
    fn from(e: DbOpError) -> Self {
        match e {
            DbOpError::Restore(r) => r.into(),
            other => OfflineError::Failed(other.to_string()),
        }
    }
}

/// Runs the restore and prints its report (JSON with `json`); the exit
/// status for `main`.
pub fn main(config: &Config, file: &Path, force: bool, json: bool) -> ExitCode {
    match restore(config, file, force) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("dchatd: cannot encode the report: {e}"),
                }
            } else {
                print_report(&report, file);
            }
            ExitCode::SUCCESS
        }
        Err(OfflineError::Daemon(DaemonError::StateDirInUse { path, holder })) => {
            eprintln!(
                "dchatd: a dchatd (pid {holder}) is running on {}; stop it first, or restore through it with `dchatctl db restore FILE`",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(OfflineError::Daemon(e)) => {
            eprintln!("dchatd: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("dchatd: restore of {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

pub fn restore(config: &Config, file: &Path, force: bool) -> Result<api::RestoreReport, OfflineError> {
    let started = Instant::now();
    let state_dir = &config.storage.state_dir;
    prepare_state_dir(state_dir)?;
    let _lock = crate::state_lock::acquire(state_dir)?;
    let db_path = config.storage.database_path();
    remove_stale_temp_files(&db_path);

    let read_err = |e: std::io::Error| OfflineError::Failed(format!("cannot read {}: {e}", file.display()));
    let mut input = File::open(file).map_err(read_err)?;
    let bytes = input.metadata().map_err(read_err)?.len();
    ensure_space(&db_path, bytes)?;
    let (temp, mut out) = TempFile::create(&db_path, "restore")
        .map_err(|e| OfflineError::Failed(format!("cannot make a file in {}: {e}", state_dir.display())))?;
    let sha256 = copy_hashed(&mut input, &mut out, file, temp.path())?;
    drop(out);

    let candidate = restore::verify(temp.path())?;
    let (live_chain, live_genesis) = live_network(&db_path)?;
    restore::check_network(&candidate, live_chain.as_deref(), live_genesis.as_deref(), force)?;
    let previous = restore::install(temp.path(), &db_path)?;
    temp.keep();
    let opts = StorageOptions {
        synchronous: config.storage.synchronous,
    };
    // Opening migrates the restored file, as the daemon's start would; a
    // file that will not open is taken out again.
    let opened = Database::open(&db_path, &opts).and_then(Database::close);
    if let Err(e) = opened {
        restore::undo_install(&db_path, previous.as_deref())?;
        return Err(OfflineError::Failed(format!(
            "the restored database does not open ({e}); the previous database is back in place"
        )));
    }
    Ok(report(candidate, sha256, previous, started))
}

/// Copies `input` into the temporary file, fsyncs it, returns its SHA-256.
fn copy_hashed(input: &mut File, out: &mut File, from: &Path, to: &Path) -> Result<String, OfflineError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| OfflineError::Failed(format!("cannot read {}: {e}", from.display())))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        out.write_all(chunk)
            .map_err(|e| OfflineError::Failed(format!("cannot write {}: {e}", to.display())))?;
    }
    out.sync_all()
        .map_err(|e| OfflineError::Failed(format!("cannot write {}: {e}", to.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The network of the database in place, if there is one. Opening and
/// closing it also folds back a WAL that a crashed daemon left.
fn live_network(db_path: &Path) -> Result<(Option<String>, Option<String>), OfflineError> {
    if std::fs::symlink_metadata(db_path).is_err() {
        return Ok((None, None));
    }
    let fail = |e: rusqlite::Error| {
        OfflineError::Failed(format!(
            "cannot read the current database {} ({e}); move it away to restore in its place",
            db_path.display()
        ))
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db_path, flags).map_err(fail)?;
    let meta = |key: &str| -> Result<Option<String>, OfflineError> {
        let has_meta: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if has_meta == 0 {
            return Ok(None);
        }
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(fail)
    };
    let found = (meta(META_CHAIN_ID)?, meta(META_GENESIS_HASH)?);
    conn.close().map_err(|(_, e)| fail(e))?;
    Ok(found)
}

/// As the daemon does at start: the state directory exists and is private.
fn prepare_state_dir(dir: &Path) -> Result<(), OfflineError> {
    let err = |source| {
        OfflineError::Daemon(DaemonError::StateDir {
            path: dir.to_path_buf(),
            source,
        })
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn print_report(r: &api::RestoreReport, file: &Path) {
    println!("restored {} into a stopped node", file.display());
    println!("  size:              {} bytes", r.bytes);
    println!("  sha256:            {}", r.sha256);
    println!("  schema version:    {}", r.schema_version);
    println!("  database id:       {}", r.database_id);
    println!(
        "  network:           {}",
        restore::describe_network(r.chain_id.as_deref(), r.genesis_hash.as_deref())
    );
    println!("  previous database: {}", r.previous.as_deref().unwrap_or("none"));
    for t in &r.tables {
        println!("  table {}: {} rows", t.name, t.rows);
    }
}
