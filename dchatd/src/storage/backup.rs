//! Online backup: a consistent snapshot of the live database, taken while
//! the daemon keeps reading and writing, and copied either by SQLite's
//! backup API (into a private temporary file in the state directory, or
//! through [`super::fd_vfs`] into a client's descriptor) or, when the
//! checkpointed database file alone is the snapshot, as a plain file copy
//! ([`SnapshotOpener::pin_file_alone`], [`super::backup_write`]).
//!
//! The snapshot is read from a connection of its own inside one read
//! transaction. In WAL mode a reader never blocks the writer, and holding
//! the transaction across the backup's steps pins the snapshot: without it
//! every commit by the daemon's own connection would restart the backup,
//! and a busy node would never finish one.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::meta::META_DATABASE_ID;
use super::{fd_vfs, migrations, StorageError};
use crate::chain::{META_CHAIN_ID, META_GENESIS_HASH};

/// Pages copied per backup step (4 MiB at the default page size); progress
/// is reported and cancellation checked between steps.
const STEP_PAGES: i32 = 1024;

/// How much of the live database the snapshot's connection maps.
const MMAP_BYTES: i64 = 1 << 40;

/// Temporary files of backups and restores start with this, followed by
/// the database's file name; whatever is left of them after a crash is
/// removed at the next start.
const TEMP_PREFIX: &str = ".tmp-";

/// The size of the live database as the snapshot will see it.
pub struct SnapshotSource {
    /// Declared first: dropped before `live` (see [`SnapshotOpener`]).
    conn: Connection,
    path: PathBuf,
    pub page_size: u64,
    pub pages: u64,
    pub schema_version: u32,
    pub database_id: String,
    pub chain_id: Option<String>,
    pub genesis_hash: Option<String>,
    /// The daemon's descriptor on the database file, when one was lent.
    live: Option<Arc<File>>,
    /// How the database file looked when the snapshot was pinned, when the
    /// file alone is the snapshot.
    alone: Option<FileStamp>,
}

/// A finished snapshot in a temporary file, removed when dropped.
#[derive(Debug)]
pub struct Snapshot {
    pub file: TempFile,
    pub bytes: u64,
    pub page_size: u64,
    pub pages: u64,
    pub schema_version: u32,
    pub database_id: String,
    pub chain_id: Option<String>,
    pub genesis_hash: Option<String>,
    pub elapsed: Duration,
}

/// A private file in the state directory that is deleted on drop unless
/// [`TempFile::keep`] is called.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Creates `<dir>/.tmp-<purpose>-<pid>-<n>-<db name>` with mode 0600.
    pub fn create(db_path: &Path, purpose: &str) -> Result<(TempFile, File), std::io::Error> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(db_path);
        let name = db_path
            .file_name()
            .map_or("db".into(), |n| n.to_string_lossy().into_owned());
        loop {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{purpose}-{}-{n}-{name}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => return Ok((TempFile { path, keep: false }, file)),
                // Left by an earlier process with our pid: take the next number.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed into place: do not delete it.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            remove_with_sidecars(&self.path);
        }
    }
}

/// Removes `path` and any `-wal`/`-shm`/`-journal` SQLite left beside it.
fn remove_with_sidecars(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %Path::new(&p).display(), error = %e, "cannot remove a temporary file"),
        }
    }
}

pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes the temporary files of backups and restores that a crash left
/// in the database's directory. Call only while holding the state lock.
pub fn remove_stale_temp_files(db_path: &Path) {
    let Ok(entries) = std::fs::read_dir(parent_dir(db_path)) else {
        return;
    };
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = file.starts_with(TEMP_PREFIX)
            && ["", "-wal", "-shm", "-journal"]
                .iter()
                .any(|s| file.ends_with(&format!("-{name}{s}")));
        if ours {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a temporary file left by an interrupted backup or restore")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale temporary file")
                }
            }
        }
    }
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
pub fn available_bytes(dir: &Path) -> Result<u64, std::io::Error> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// A connection of its own on the live database, before the snapshot is
/// pinned.
///
/// It and the [`SnapshotSource`] it becomes keep the daemon's descriptor
/// on the database file, lent before the connection is opened
/// ([`open_source`]), until after their connection is closed: closing a descriptor on the
/// file drops the process's POSIX locks on it, SQLite's included (see the
/// `file` field of [`super::Database`]). `conn` is declared before `live`
/// so that it is dropped first, and nothing moves either out alone.
pub struct SnapshotOpener {
    conn: Connection,
    path: PathBuf,
    live: Option<Arc<File>>,
}

/// What changes when anything writes to a file.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    fn of(file: &File) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(FileStamp {
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Opens a connection of its own on the live database. It only reads,
/// but it is opened read-write so that it can checkpoint the WAL. `live`
/// is the daemon's own descriptor on the database file
/// ([`super::Database`]), kept until after this connection is closed, so
/// that the daemon closing its database meanwhile cannot drop this
/// connection's locks; a snapshot of the file alone copies it.
pub fn open_source(db_path: &Path, live: Option<Arc<File>>) -> Result<SnapshotOpener, StorageError> {
    let open_err = |source| StorageError::Open {
        path: db_path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db_path, flags).map_err(open_err)?;
    conn.busy_timeout(super::BUSY_TIMEOUT).map_err(open_err)?;
    // The backup API reads every page once: mapping the file spares a
    // read call per page (SQLite caps the size at its SQLITE_MAX_MMAP_SIZE;
    // pages beyond it, and those in the WAL, are read as usual).
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(SnapshotOpener {
        conn,
        path: db_path.to_owned(),
        live,
    })
}

/// Opens a connection on the live database and begins the read
/// transaction that fixes what the snapshot will contain.
pub fn begin_snapshot(db_path: &Path, live: Option<Arc<File>>) -> Result<SnapshotSource, StorageError> {
    open_source(db_path, live)?.pin(None)
}

impl SnapshotOpener {
    /// Copies what it can of the WAL into the database file without
    /// waiting for anyone (a passive checkpoint). True when the file now
    /// holds every committed transaction.
    pub fn checkpoint(&self) -> Result<bool, StorageError> {
        let (busy, log, done): (i64, i64, i64) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(busy == 0 && log == done)
    }

    /// Pins a snapshot that is the database file alone, if the WAL is all
    /// in the file; gives the opener back otherwise, and also when it was
    /// opened without the daemon's descriptor on the file: the copy reads
    /// that one, and no descriptor is opened (and closed) here.
    ///
    /// Call it while no transaction can commit (the daemon holds its
    /// connection's lock). Then a reader that begins on a WAL whose every
    /// frame is in the database file reads the file alone (WAL read mark
    /// 0), and while it does, no checkpoint may write into the file: the
    /// commits that follow go to the WAL only, and the file stays exactly
    /// this snapshot until the read transaction ends. Copying the file is
    /// then a consistent backup. [`SnapshotSource::file_unchanged`] checks
    /// after the copy that nothing wrote to it as far as the file's size
    /// and time stamps tell, which catches a broken promise of SQLite's
    /// most of the time but not always (a write of the same size within
    /// the filesystem's time stamp granularity goes unseen).
    pub fn pin_file_alone(self) -> Result<Result<SnapshotSource, SnapshotOpener>, StorageError> {
        let Some(live) = self.live.as_deref() else {
            return Ok(Err(self));
        };
        let file_err = |source| StorageError::File {
            path: self.path.clone(),
            source,
        };
        let lent = live.metadata().map_err(file_err)?;
        let named = std::fs::metadata(&self.path).map_err(file_err)?;
        if !super::same_file(&lent, &named) {
            tracing::warn!(path = %self.path.display(), "the descriptor lent for the backup is not the database file's");
            return Ok(Err(self));
        }
        if !self.checkpoint()? {
            return Ok(Err(self));
        }
        let stamp = FileStamp::of(live).map_err(file_err)?;
        self.pin(Some(stamp)).map(Ok)
    }

    /// Pins a snapshot that reads the WAL as well as the file; SQLite's
    /// backup API copies it.
    pub fn pin_with_wal(self) -> Result<SnapshotSource, StorageError> {
        self.pin(None)
    }

    /// Begins the read transaction; its first read pins the snapshot.
    fn pin(self, alone: Option<FileStamp>) -> Result<SnapshotSource, StorageError> {
        // Nothing is moved out of `self` before the last `?`: on an error
        // it is dropped whole, its connection first.
        let conn = &self.conn;
        conn.execute_batch("BEGIN DEFERRED")?;
        // The first read starts the transaction; everything below, and
        // every backup step, sees the database as of this moment.
        let schema_version = migrations::current_version(conn)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let meta = |key: &str| -> Result<Option<String>, StorageError> {
            use rusqlite::OptionalExtension;
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        };
        let database_id = meta(META_DATABASE_ID)?.unwrap_or_default();
        let chain_id = meta(META_CHAIN_ID)?;
        let genesis_hash = meta(META_GENESIS_HASH)?;
        let SnapshotOpener { conn, path, live } = self;
        Ok(SnapshotSource {
            conn,
            path,
            page_size: u64::try_from(page_size).unwrap_or(0),
            pages: u64::try_from(pages).unwrap_or(0),
            schema_version,
            database_id,
            chain_id,
            genesis_hash,
            live,
            alone,
        })
    }
}

impl SnapshotSource {
    pub fn bytes(&self) -> u64 {
        self.page_size.saturating_mul(self.pages)
    }

    /// Copies the snapshot into `file`, reporting `(pages done, pages
    /// total)` after every step; stops early when `cancel` is set.
    pub fn copy_to(
        self,
        file: TempFile,
        cancel: &AtomicBool,
        progress: impl FnMut(u64, u64),
    ) -> Result<Snapshot, StorageError> {
        let started = Instant::now();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let dest = Connection::open_with_flags(file.path(), flags).map_err(|source| StorageError::Open {
            path: file.path().to_owned(),
            source,
        })?;
        self.run(dest, cancel, progress)?;
        let bytes = std::fs::metadata(file.path())
            .map_err(|source| StorageError::File {
                path: file.path().to_owned(),
                source,
            })?
            .len();
        Ok(self.finished(file, bytes, started))
    }

    /// Copies the snapshot into `dest`, a descriptor handed over by a
    /// client, through the [`super::fd_vfs`] VFS: SQLite writes the final
    /// file itself. The caller fsyncs it. `file` is the scratch file
    /// [`Snapshot`] carries, unused (and removed) here.
    pub fn copy_into_fd(
        self,
        file: TempFile,
        dest: &File,
        cancel: &AtomicBool,
        progress: impl FnMut(u64, u64),
    ) -> Result<Snapshot, StorageError> {
        use std::os::fd::AsFd;
        let started = Instant::now();
        let name = fd_vfs::name_for(dest.as_fd());
        let open_err = |source| StorageError::Open {
            path: PathBuf::from(&name),
            source,
        };
        fd_vfs::register().map_err(|e| StorageError::File {
            path: PathBuf::from(&name),
            source: std::io::Error::other(e),
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags_and_vfs(&name, flags, fd_vfs::VFS_NAME).map_err(open_err)?;
        // Nothing else opens the file: no locks to take.
        conn.pragma_update(None, "locking_mode", "exclusive")?;
        self.run(conn, cancel, progress)?;
        let bytes = dest
            .metadata()
            .map_err(|source| StorageError::File {
                path: PathBuf::from(&name),
                source,
            })?
            .len();
        Ok(self.finished(file, bytes, started))
    }

    /// The database file, when it alone is the snapshot: copying it as it
    /// is makes the backup.
    pub fn file_alone(&self) -> Option<&File> {
        self.alone.as_ref().and(self.live.as_deref())
    }

    /// Whether the database file looks as it did when the snapshot was
    /// pinned (best effort: see [`SnapshotOpener::pin_file_alone`]); false
    /// unless the file alone is the snapshot.
    pub fn file_unchanged(&self) -> bool {
        match (&self.alone, self.live.as_deref()) {
            (Some(pinned), Some(file)) => FileStamp::of(file).is_ok_and(|now| now == *pinned),
            _ => false,
        }
    }

    /// Ends the read transaction and pins a new snapshot that reads the
    /// WAL as well as the file.
    pub fn repin_with_wal(self) -> Result<SnapshotSource, StorageError> {
        self.conn.execute_batch("COMMIT")?;
        let SnapshotSource { conn, path, live, .. } = self;
        SnapshotOpener { conn, path, live }.pin_with_wal()
    }

    /// Ends the read transaction after the database file alone was copied
    /// (`bytes` of it, since `started`).
    pub fn file_alone_copied(self, file: TempFile, bytes: u64, started: Instant) -> Result<Snapshot, StorageError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(self.finished(file, bytes, started))
    }

    fn finished(self, file: TempFile, bytes: u64, started: Instant) -> Snapshot {
        let SnapshotSource {
            conn,
            live,
            page_size,
            pages,
            schema_version,
            database_id,
            chain_id,
            genesis_hash,
            ..
        } = self;
        // In this order (see [`SnapshotOpener`]).
        drop(conn);
        drop(live);
        Snapshot {
            file,
            bytes,
            page_size,
            pages,
            schema_version,
            database_id,
            chain_id,
            genesis_hash,
            elapsed: started.elapsed(),
        }
    }

    /// Runs the backup API from the pinned snapshot into `dest`, then ends
    /// the read transaction.
    fn run(
        &self,
        mut dest: Connection,
        cancel: &AtomicBool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), StorageError> {
        // A scratch file or a file handed over: no journal, no syncs.
        // Durability is the job of whoever fsyncs the final copy.
        dest.pragma_update(None, "journal_mode", "off")?;
        dest.pragma_update(None, "synchronous", "off")?;
        {
            let backup = Backup::new(&self.conn, &mut dest)?;
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StorageError::Cancelled);
                }
                let step = backup.step(STEP_PAGES)?;
                let p = backup.progress();
                let total = u64::try_from(p.pagecount).unwrap_or(0);
                let left = u64::try_from(p.remaining).unwrap_or(0);
                progress(total.saturating_sub(left), total);
                match step {
                    StepResult::Done => break,
                    StepResult::More => {}
                    // Only the destination could be locked, and nothing
                    // else opens it; still, wait rather than fail.
                    StepResult::Busy | StepResult::Locked => std::thread::sleep(Duration::from_millis(5)),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        dest.close().map_err(|(_, e)| StorageError::Sqlite(e))?;
        // Ends the read transaction; the snapshot is complete.
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }
}
