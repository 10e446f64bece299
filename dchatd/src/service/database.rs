//! io.dchat.Database in the service layer: migrate, check, online backup
//! and live restore (ADR 0006).
//!
//! Backups and checks read through connections of their own and run side
//! by side; a restore runs alone. The restore swaps the file while holding
//! the database lock, so requests that arrive meanwhile wait for the swap
//! (a close, two renames and an open) and then see the restored database.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use dchat_control::api;
use tokio::sync::{watch, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::{Node, ServiceError, SharedDb};
use crate::chain::{META_CHAIN_ID, META_GENESIS_HASH};
use crate::storage::backup::{self, Snapshot, SnapshotSource, TempFile};
use crate::storage::backup_write::{self, Written};
use crate::storage::restore::{self, Candidate, RestoreError};
use crate::storage::{check, migrations, Database, StorageError, StorageOptions};

/// Free space a backup or restore leaves in the state directory beyond the
/// file itself, so the live database can still grow meanwhile.
const SPACE_MARGIN: u64 = 64 * 1024 * 1024;

/// Tries at a snapshot that is the database file alone before one that
/// reads the WAL too.
const FILE_ALONE_ATTEMPTS: u32 = 3;

/// Pins a snapshot for a backup into a descriptor: if it can, one that is
/// the database file alone, which the backup then copies as it is (ADR
/// 0006). That takes a moment with commits held: the checkpoint of what
/// was committed since the one just before. When readers on older
/// snapshots keep the WAL from going into the file, the snapshot reads the
/// WAL too and SQLite's backup API copies it.
fn pin_file_alone(db: &SharedDb, live: Arc<File>, path: &Path) -> Result<SnapshotSource, StorageError> {
    let mut opener = backup::open_source(path, Some(live))?;
    for attempt in 1..=FILE_ALONE_ATTEMPTS {
        // The bulk of the WAL goes into the file while the node writes on.
        opener.checkpoint()?;
        let held = db.lock();
        match opener.pin_file_alone()? {
            Ok(source) => return Ok(source),
            Err(back) => opener = back,
        }
        drop(held);
        tracing::debug!(
            attempt,
            "the WAL is not all in the database file yet: readers on older snapshots"
        );
        if attempt < FILE_ALONE_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    tracing::warn!(
        "readers on older snapshots keep the WAL out of the database file; \
         SQLite's backup API copies this backup instead (slower)"
    );
    opener.pin_with_wal()
}

/// Refuses a destination that is one of the live database's own files
/// (its WAL or shared-memory file included): emptying it would destroy
/// what the backup is of.
fn refuse_own_file(db: &SharedDb, dest: File) -> Result<File, DbOpError> {
    match keep_if_own(db, dest) {
        Ok(dest) => Ok(dest),
        Err(name) => Err(DbOpError::BackupFailed(format!(
            "the backup file cannot be used: it is the live database's own file {}",
            name.display()
        ))),
    }
}

/// Gives `file` back unless it is a descriptor on one of the live
/// database's own files: closing that would drop SQLite's locks, so the
/// database keeps it open ([`crate::storage::Database::keep_open`]) and
/// its name is returned instead. While the database is taken out
/// (shutdown), nothing is compared and the file is given back.
fn keep_if_own(db: &SharedDb, file: File) -> Result<File, PathBuf> {
    let mut guard = db.lock();
    let Some(open) = guard.as_mut() else {
        return Ok(file);
    };
    match open.owns(&file) {
        None => Ok(file),
        Some(name) => {
            open.keep_open(file);
            Err(name)
        }
    }
}

/// The daemon's descriptor on the database file, for a connection of
/// another's to keep until it is closed (see [`backup::open_source`]).
/// None while the database is taken out (shutdown, or a restore that
/// could not reopen it): then there are no locks to keep, and a backup or
/// check still runs on the file. Blocks on the database lock.
fn lend_file(db: &SharedDb) -> Option<Arc<File>> {
    db.lock().as_ref().and_then(|open| open.file().cloned())
}

/// Coordination of the database operations of one node.
pub struct DbOps {
    /// Backups and checks share it; a restore holds it alone.
    gate: Arc<RwLock<()>>,
    /// Counts the restores. Anything that keeps state read from the
    /// database in memory watches it and reloads when it changes.
    generation: watch::Sender<u64>,
}

impl Default for DbOps {
    fn default() -> Self {
        DbOps {
            gate: Arc::new(RwLock::new(())),
            generation: watch::channel(0).0,
        }
    }
}

/// Why a database operation failed; `control::handlers::database` maps it
/// onto the interface's errors.
#[derive(Debug, thiserror::Error)]
pub enum DbOpError {
    #[error("another backup, check or restore is running ({0})")]
    Busy(&'static str),
    #[error("{path} has {available} bytes free; {needed} are needed")]
    NoSpace { path: PathBuf, needed: u64, available: u64 },
    #[error("backup failed: {0}")]
    BackupFailed(String),
    #[error("{0}")]
    Restore(#[from] RestoreError),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

impl From<StorageError> for DbOpError {
    fn from(e: StorageError) -> Self {
        DbOpError::Service(e.into())
    }
}

/// A backup under way: the snapshot is pinned, its size known.
pub struct BackupJob {
    _gate: OwnedRwLockReadGuard<()>,
    source: SnapshotSource,
    file: TempFile,
    db: SharedDb,
}

impl BackupJob {
    pub fn start_reply(&self) -> api::BackupStart {
        api::BackupStart {
            page_size: self.source.page_size,
            pages: self.source.pages,
            bytes: self.source.bytes(),
        }
    }

    /// Copies the snapshot on a blocking thread; `progress(done, total)` in
    /// pages after every step. Stops early once `cancel` is set.
    pub async fn run(
        self,
        cancel: Arc<AtomicBool>,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<(Snapshot, OwnedRwLockReadGuard<()>), DbOpError> {
        let BackupJob {
            _gate, source, file, ..
        } = self;
        let snapshot = tokio::task::spawn_blocking(move || source.copy_to(file, &cancel, progress))
            .await
            .map_err(|e| DbOpError::BackupFailed(format!("backup task failed: {e}")))?
            .map_err(|e| DbOpError::BackupFailed(e.to_string()))?;
        Ok((snapshot, _gate))
    }
}

impl BackupJob {
    /// Takes the snapshot straight into `dest`, a file the client opened
    /// and handed over; `progress(done, total)` in bytes.
    /// Stops early once `cancel` is set.
    pub async fn run_into(
        self,
        dest: std::fs::File,
        cancel: Arc<AtomicBool>,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<(Written, OwnedRwLockReadGuard<()>), DbOpError> {
        let BackupJob {
            _gate,
            source,
            file,
            db,
        } = self;
        let written = tokio::task::spawn_blocking(move || -> Result<_, DbOpError> {
            let dest = refuse_own_file(&db, dest)?;
            backup_write::backup_into(source, file, &dest, &cancel, progress)
                .map_err(|e| DbOpError::BackupFailed(e.to_string()))
        })
        .await
        .map_err(|e| DbOpError::BackupFailed(format!("backup task failed: {e}")))??;
        Ok((written, _gate))
    }
}

/// A restore under way: the file is being received into `file`.
pub struct RestoreJob {
    _gate: OwnedRwLockWriteGuard<()>,
    pub file: TempFile,
    pub started: Instant,
}

impl Node {
    /// Closes `files`, descriptors a client handed over, except those on
    /// the live database's own files, which the database keeps open.
    pub async fn keep_if_own(&self, files: Vec<File>) {
        let db = self.db.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for file in files {
                if let Err(name) = keep_if_own(&db, file) {
                    tracing::warn!(file = %name.display(), "a client handed over the live database's own file");
                }
            }
        })
        .await;
    }

    pub(crate) fn db_ops(&self) -> &DbOps {
        &self.db_ops
    }

    /// Changes after every restore (see [`DbOps`]).
    pub fn watch_database(&self) -> watch::Receiver<u64> {
        self.db_ops().generation.subscribe()
    }

    fn database_path(&self) -> PathBuf {
        self.config().storage.database_path()
    }

    fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            synchronous: self.config().storage.synchronous,
        }
    }

    /// Lists applied and pending migrations, then applies the pending ones.
    pub async fn db_migrate(self: &Arc<Self>) -> Result<api::MigrateReply, ServiceError> {
        let info = |m: &&migrations::Migration| api::MigrationInfo {
            version: m.version,
            name: m.name.to_string(),
        };
        self.with_db(move |db, _| {
            let pending: Vec<_> = migrations::pending(db.conn())?.iter().map(info).collect();
            let migrated: Vec<_> = migrations::migrate(db.conn())?.iter().map(info).collect();
            let applied: Vec<_> = migrations::applied(db.conn())?.iter().map(info).collect();
            Ok(api::MigrateReply {
                schema_version: db.schema_version()?,
                supported: migrations::SCHEMA_VERSION,
                applied,
                pending,
                migrated,
            })
        })
        .await
    }

    pub async fn db_check(self: &Arc<Self>) -> Result<api::CheckReply, DbOpError> {
        let _gate = Arc::clone(&self.db_ops().gate)
            .try_read_owned()
            .map_err(|_| DbOpError::Busy("restore"))?;
        let path = self.database_path();
        let db = self.db.clone();
        let r = tokio::task::spawn_blocking(move || {
            let live = lend_file(&db);
            let report = check::check(&path);
            // Only after the check's connection is closed.
            drop(live);
            report
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("check task failed: {e}")))??;
        let ok = r.integrity_problems.is_empty() && r.foreign_key_violations.is_empty();
        Ok(api::CheckReply {
            ok,
            integrity: if r.integrity_problems.is_empty() {
                vec!["ok".into()]
            } else {
                r.integrity_problems
            },
            foreign_key_violations: r
                .foreign_key_violations
                .into_iter()
                .map(|(table, rowid, parent)| api::ForeignKeyViolation { table, rowid, parent })
                .collect(),
            schema_version: r.schema_version,
            database_id: r.database_id,
            chain_id: r.chain_id,
            genesis_hash: r.genesis_hash,
            created_at: r.created_at,
            page_size: r.page_size,
            page_count: r.page_count,
            freelist_count: r.freelist_count,
            file_bytes: r.file_bytes,
            wal_bytes: r.wal_bytes,
            tables: tables(r.tables),
            kept: r
                .kept
                .into_iter()
                .map(|(path, bytes)| api::KeptFile {
                    path: path.display().to_string(),
                    bytes,
                })
                .collect(),
        })
    }

    /// Pins a snapshot; [`BackupJob::run`] or [`BackupJob::run_into`]
    /// copies it. Only a snapshot that goes through the scratch file
    /// (`into_descriptor` false) needs room in the state directory.
    pub async fn begin_backup(self: &Arc<Self>, into_descriptor: bool) -> Result<BackupJob, DbOpError> {
        let gate = Arc::clone(&self.db_ops().gate)
            .try_read_owned()
            .map_err(|_| DbOpError::Busy("restore"))?;
        let path = self.database_path();
        let db = self.db.clone();
        let (source, file) = tokio::task::spawn_blocking(move || -> Result<_, DbOpError> {
            let source = match (into_descriptor, lend_file(&db)) {
                (true, Some(live)) => pin_file_alone(&db, live, &path)?,
                (_, live) => {
                    let source = backup::begin_snapshot(&path, live)?;
                    if !into_descriptor {
                        ensure_space(&path, source.bytes())?;
                    }
                    source
                }
            };
            let (file, _) = TempFile::create(&path, "backup").map_err(|e| DbOpError::BackupFailed(e.to_string()))?;
            Ok((source, file))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("backup task failed: {e}")))??;
        Ok(BackupJob {
            _gate: gate,
            source,
            file,
            db: self.db.clone(),
        })
    }

    /// Makes room for a restore of `bytes` and the file to receive it in.
    pub async fn begin_restore(self: &Arc<Self>, bytes: u64) -> Result<RestoreJob, DbOpError> {
        let gate = Arc::clone(&self.db_ops().gate)
            .try_write_owned()
            .map_err(|_| DbOpError::Busy("backup or check"))?;
        let path = self.database_path();
        let file = tokio::task::spawn_blocking(move || -> Result<_, DbOpError> {
            ensure_space(&path, bytes)?;
            let (file, _) = TempFile::create(&path, "restore")
                .map_err(|e| RestoreError::Failed(format!("cannot create a file to receive the backup: {e}")))?;
            Ok(file)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("restore task failed: {e}")))??;
        Ok(RestoreJob {
            _gate: gate,
            file,
            started: Instant::now(),
        })
    }

    /// Verifies the received file and, if it passes, swaps it in.
    pub async fn finish_restore(
        self: &Arc<Self>,
        job: RestoreJob,
        sha256: String,
        force: bool,
    ) -> Result<api::RestoreReport, DbOpError> {
        let node = Arc::clone(self);
        let RestoreJob {
            _gate: gate,
            file,
            started,
        } = job;
        let report = tokio::task::spawn_blocking(move || -> Result<api::RestoreReport, DbOpError> {
            let candidate = restore::verify(file.path())?;
            let previous = node.swap_in(&candidate, file, force)?;
            Ok(report(candidate, sha256, previous, started))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("restore task failed: {e}")))??;
        drop(gate);
        self.db_ops().generation.send_modify(|g| *g += 1);
        tracing::info!(
            schema = report.schema_version,
            bytes = report.bytes,
            previous = report.previous.as_deref().unwrap_or("none"),
            "database restored"
        );
        Ok(report)
    }

    /// Replaces the live database with the verified `candidate`, holding
    /// the database lock throughout. On any failure the previous database
    /// is live again.
    fn swap_in(&self, candidate: &Candidate, file: TempFile, force: bool) -> Result<Option<PathBuf>, DbOpError> {
        let mut slot = self.lock_db();
        let Some(live) = slot.take() else {
            return Err(ServiceError::ShuttingDown.into());
        };
        let checked = live.get_meta(META_CHAIN_ID).and_then(|chain_id| {
            let genesis = live.get_meta(META_GENESIS_HASH)?;
            Ok(restore::check_network(
                candidate,
                chain_id.as_deref(),
                genesis.as_deref(),
                force,
            ))
        });
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                *slot = Some(live);
                return Err(e.into());
            }
            Err(e) => {
                *slot = Some(live);
                return Err(e.into());
            }
        }
        let db_path = live.path().to_owned();
        let opts = self.storage_options();
        if let Err(e) = live.close() {
            return Err(reopen_previous(
                &mut slot,
                &db_path,
                &opts,
                format!("cannot close the live database: {e}"),
            ));
        }
        let previous = match restore::install(file.path(), &db_path) {
            Ok(previous) => previous,
            Err(e) => return Err(reopen_previous(&mut slot, &db_path, &opts, e.to_string())),
        };
        file.keep();
        match Database::open(&db_path, &opts) {
            Ok(db) => {
                self.forget_local_accounts();
                if let Ok(n) = db.count_accounts() {
                    self.update_accounts(n);
                }
                *slot = Some(db);
                Ok(previous)
            }
            Err(e) => {
                let why = format!("the restored database does not open: {e}");
                if let Err(undo) = restore::undo_install(&db_path, previous.as_deref()) {
                    tracing::error!(error = %undo, "cannot put the previous database back");
                    return Err(RestoreError::Failed(format!(
                        "{why}; putting the previous database back failed: {undo}"
                    ))
                    .into());
                }
                Err(reopen_previous(&mut slot, &db_path, &opts, why))
            }
        }
    }
}

/// Reopens the database that was live before a failed swap and says so.
fn reopen_previous(
    slot: &mut Option<Database>,
    path: &std::path::Path,
    opts: &StorageOptions,
    why: String,
) -> DbOpError {
    match Database::open(path, opts) {
        Ok(db) => {
            *slot = Some(db);
            tracing::warn!(reason = %why, "restore failed; the previous database is live again");
            RestoreError::Failed(format!("{why}; the previous database is live again")).into()
        }
        Err(e) => {
            tracing::error!(reason = %why, error = %e, "restore failed and the previous database does not open");
            RestoreError::Failed(format!("{why}; reopening the previous database failed too: {e}")).into()
        }
    }
}

/// Refuses to start what would fill the state directory's filesystem.
pub(crate) fn ensure_space(db_path: &std::path::Path, bytes: u64) -> Result<(), DbOpError> {
    let dir = db_path.parent().unwrap_or(std::path::Path::new("."));
    let available = backup::available_bytes(dir)
        .map_err(|e| ServiceError::Internal(format!("cannot tell the free space of {}: {e}", dir.display())))?;
    let needed = bytes.saturating_add(SPACE_MARGIN);
    if available < needed {
        return Err(DbOpError::NoSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

pub(crate) fn tables(rows: Vec<(String, u64)>) -> Vec<api::TableRows> {
    rows.into_iter()
        .map(|(name, rows)| api::TableRows { name, rows })
        .collect()
}

pub(crate) fn report(c: Candidate, sha256: String, previous: Option<PathBuf>, started: Instant) -> api::RestoreReport {
    api::RestoreReport {
        bytes: c.bytes,
        sha256,
        schema_version: c.schema_version,
        database_id: c.database_id,
        chain_id: c.chain_id,
        genesis_hash: c.genesis_hash,
        created_at: c.created_at,
        tables: tables(c.tables),
        previous: previous.map(|p| p.display().to_string()),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
