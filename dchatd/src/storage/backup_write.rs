//! Writes a snapshot into the file a client handed over as a descriptor
//! (ADR 0006): the daemon never opens the caller's path; the caller's own
//! permissions were checked when it opened the file.
//!
//! When the snapshot is the database file alone, that file is copied as it
//! is ([`super::file_copy`]: the hash follows the copy, the fsync overlaps
//! the end of the hash), then checked unchanged. Otherwise SQLite's online
//! backup API writes the file itself, through the [`super::fd_vfs`] VFS;
//! page 1 changes until its last step, so the fsync and the hash run side
//! by side only after it. Either way the hash is read back from the file
//! (from the page cache), which must therefore be open for reading too.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::backup::{Snapshot, SnapshotSource, TempFile};
use super::file_copy::{self, CopyError};
use super::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the backup file cannot be used: {0}")]
    Unusable(String),
    #[error("cannot write the backup file: {0}")]
    Write(std::io::Error),
    #[error("cannot read the backup file back: {0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Snapshot(StorageError),
    #[error("cancelled")]
    Cancelled,
}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Cancelled => WriteError::Cancelled,
            // The VFS reports ENOSPC and EDQUOT as SQLITE_FULL.
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::DiskFull => {
                WriteError::Write(std::io::Error::from_raw_os_error(libc::ENOSPC))
            }
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::SystemIoFailure =>
            {
                WriteError::Write(std::io::Error::other(format!("I/O error ({f})")))
            }
            e => WriteError::Snapshot(e),
        }
    }
}

impl From<CopyError> for WriteError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Source(e) => WriteError::Snapshot(StorageError::File {
                path: "the database file".into(),
                source: e,
            }),
            CopyError::Write(e) => WriteError::Write(e),
            CopyError::Read(e) => WriteError::Read(e),
            CopyError::Cancelled => WriteError::Cancelled,
        }
    }
}

/// A snapshot written into the client's file.
#[derive(Debug)]
pub struct Written {
    pub snapshot: Snapshot,
    pub sha256: String,
    /// The database file alone was the snapshot and was copied as it is;
    /// false when SQLite's backup API copied it.
    pub file_alone: bool,
}

/// Refuses a descriptor that is not a regular file open for reading and
/// writing without `O_APPEND` (a pipe, a socket, a device, a read-only or
/// write-only file).
pub fn check_destination(dest: &File) -> Result<(), WriteError> {
    let meta = dest
        .metadata()
        .map_err(|e| WriteError::Unusable(format!("cannot stat it: {e}")))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a pipe"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(WriteError::Unusable(format!("it is {what}")));
    }
    let flags = fcntl(dest, FcntlArg::F_GETFL).map_err(|e| WriteError::Unusable(format!("F_GETFL: {e}")))?;
    let flags = OFlag::from_bits_truncate(flags);
    if flags & OFlag::O_ACCMODE != OFlag::O_RDWR {
        return Err(WriteError::Unusable("it is not open for reading and writing".into()));
    }
    if flags.contains(OFlag::O_APPEND) {
        return Err(WriteError::Unusable("it is open with O_APPEND".into()));
    }
    Ok(())
}

/// Runs the backup of `source` straight into `dest`, fsyncs it and hashes
/// it. `progress(done, total)` in bytes; stops early once `cancel` is set.
/// `scratch` is the snapshot's unused scratch file (removed with it).
pub fn backup_into(
    mut source: SnapshotSource,
    scratch: TempFile,
    dest: &File,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Written, WriteError> {
    check_destination(dest)?;
    // Whatever the file held before goes: it ends up exactly the snapshot.
    dest.set_len(0).map_err(WriteError::Write)?;
    let started = Instant::now();
    if let Some(database_file) = source.file_alone() {
        let bytes = source.bytes();
        let sha256 = file_copy::copy_and_hash(database_file, dest, bytes, cancel, &mut |done| progress(done, bytes))?;
        if source.file_unchanged() {
            let snapshot = source.file_alone_copied(scratch, bytes, started)?;
            drop_cached(dest);
            return Ok(Written {
                snapshot,
                sha256,
                file_alone: true,
            });
        }
        // SQLite keeps checkpoints out of a file a snapshot reads alone;
        // should anything have written to it all the same, neither the
        // copy nor that snapshot is trusted: a new one, which reads the
        // WAL too, is copied by SQLite.
        tracing::warn!(
            "the database file changed while it was copied; taking the backup again with SQLite's backup API"
        );
        dest.set_len(0).map_err(WriteError::Write)?;
        source = source.repin_with_wal()?;
    }
    let page_size = source.page_size;
    let snapshot = source.copy_into_fd(scratch, dest, cancel, |done, total| {
        progress(done.saturating_mul(page_size), total.saturating_mul(page_size));
    })?;
    let sha256 = file_copy::sync_and_hash(dest, snapshot.bytes, cancel)?;
    drop_cached(dest);
    Ok(Written {
        snapshot,
        sha256,
        file_alone: false,
    })
}

/// Drops the file's pages from the page cache: a backup is written once
/// and not read again, and should not push out what the node reads.
fn drop_cached(file: &File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let _ = posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backup::{begin_snapshot, open_source};
    use crate::storage::{Database, StorageOptions};
    use dchat_testkit::record_lock_held;
    use sha2::{Digest, Sha256};
    use std::path::Path;
    use std::sync::Arc;

    /// A migrated database with `rows` rows of 3 KiB each in a table of
    /// its own, and the path of its file.
    fn database(dir: &Path, rows: usize) -> std::path::PathBuf {
        let path = dir.join("dchat.sqlite3");
        let db = Database::open(&path, &StorageOptions::default()).unwrap();
        db.conn()
            .execute_batch("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .unwrap();
        let tx = db.conn().unchecked_transaction().unwrap();
        for i in 0..rows {
            let data: Vec<u8> = (0..3072).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
            tx.execute("INSERT INTO filler (data) VALUES (?1)", [data]).unwrap();
        }
        tx.commit().unwrap();
        path
    }

    fn open_rw(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    /// A snapshot of the file alone, with the daemon's descriptor `live` lent.
    fn pinned_alone(path: &Path, live: &Database) -> crate::storage::backup::SnapshotSource {
        match open_source(path, live.file().cloned())
            .unwrap()
            .pin_file_alone()
            .unwrap()
        {
            Ok(source) => source,
            Err(_) => panic!("the WAL is not all in the database file"),
        }
    }

    fn backup(db: &Path, dest: &File, cancel: &AtomicBool) -> Result<(Written, Vec<(u64, u64)>), WriteError> {
        backup_with(db, dest, cancel, false, |_| {})
    }

    /// A backup of `db` into `dest`, of the file alone if `file_alone`;
    /// `each(done)` after every progress report.
    fn backup_with(
        db: &Path,
        dest: &File,
        cancel: &AtomicBool,
        file_alone: bool,
        mut each: impl FnMut(u64),
    ) -> Result<(Written, Vec<(u64, u64)>), WriteError> {
        // The daemon's connection, which lends its descriptor on the file.
        let live = Database::open(db, &StorageOptions::default()).unwrap();
        let source = if file_alone {
            pinned_alone(db, &live)
        } else {
            begin_snapshot(db, live.file().cloned()).unwrap()
        };
        let (scratch, _) = TempFile::create(db, "backup").unwrap();
        let mut seen = Vec::new();
        let written = backup_into(source, scratch, dest, cancel, |d, t| {
            seen.push((d, t));
            each(d);
        })?;
        Ok((written, seen))
    }

    #[test]
    fn the_file_is_the_snapshot_and_the_hash_is_its_hash() {
        for file_alone in [false, true] {
            the_file_is_the_snapshot(file_alone, |_| {}, file_alone);
        }
    }

    #[test]
    fn a_database_file_that_changes_during_its_copy_is_copied_by_sqlite() {
        let mut touched = false;
        let touch = move |db: &Path| {
            if !touched {
                touched = true;
                let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
                f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
                    .unwrap();
            }
        };
        the_file_is_the_snapshot(true, touch, false);
    }

    /// Backs up a database bigger than several backup steps and writeback
    /// windows and checks the file, its hash and which copy made it.
    fn the_file_is_the_snapshot(file_alone: bool, mut during: impl FnMut(&Path), copied_alone: bool) {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), 9000);
        let out = dir.path().join("out.db");
        // What the file held before must not survive.
        std::fs::write(&out, vec![0xAA; 60 * 1024 * 1024]).unwrap();
        let dest = open_rw(&out);
        let (written, seen) = backup_with(&db, &dest, &AtomicBool::new(false), file_alone, |_| during(&db)).unwrap();
        assert_eq!(written.file_alone, copied_alone);
        let data = std::fs::read(&out).unwrap();
        assert_eq!(data.len() as u64, written.snapshot.bytes);
        assert!(
            written.snapshot.bytes > 2 * super::super::writeback::WINDOW,
            "{}",
            written.snapshot.bytes
        );
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        let (done, total) = seen.last().copied().unwrap();
        assert_eq!(done, total);
        // The copy is a database with every row.
        let conn = rusqlite::Connection::open(&out).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let rows: i64 = conn.query_row("SELECT count(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 9000);
        // And the scratch file is gone with the snapshot.
        drop(written);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn refuses_what_is_not_a_readable_writable_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), 10);
        let before = std::fs::read(&db).unwrap();
        let read_only = File::open(&db).unwrap();
        let e = backup(&db, &read_only, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("not open for reading and writing"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the database was not touched");
        let write_only = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("w"))
            .unwrap();
        let e = check_destination(&write_only).unwrap_err();
        assert!(e.to_string().contains("not open for reading and writing"), "{e}");
        let append = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.path().join("x"))
            .unwrap();
        let e = check_destination(&append).unwrap_err();
        assert!(e.to_string().contains("O_APPEND"), "{e}");
        let (r, _w) = nix::unistd::pipe().unwrap();
        let e = check_destination(&File::from(r)).unwrap_err();
        assert!(e.to_string().contains("pipe"), "{e}");
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let e = check_destination(&dev).unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
    }

    #[test]
    fn cancel_stops_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), 3000);
        let dest = open_rw(&dir.path().join("out.db"));
        for file_alone in [false, true] {
            let e = backup_with(&db, &dest, &AtomicBool::new(true), file_alone, |_| {}).unwrap_err();
            assert!(matches!(e, WriteError::Cancelled), "{e}");
        }
    }

    #[test]
    fn a_reader_on_an_older_snapshot_keeps_the_file_from_being_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dchat.sqlite3");
        let db = Database::open(&path, &StorageOptions::default()).unwrap();
        db.conn()
            .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        db.conn().execute("INSERT INTO t VALUES (2)", []).unwrap();
        // The reader needs the file as it was: the new frame stays in the WAL.
        let opener = match open_source(&path, db.file().cloned())
            .unwrap()
            .pin_file_alone()
            .unwrap()
        {
            Ok(_) => panic!("pinned a file that still misses a committed write"),
            Err(opener) => opener,
        };
        reader.execute_batch("COMMIT").unwrap();
        assert!(opener.pin_file_alone().unwrap().is_ok());
    }

    #[test]
    fn the_daemons_locks_on_the_database_outlive_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 3000);
        let live = Database::open(&path, &StorageOptions::default()).unwrap();
        let file = live.file().unwrap();
        assert!(record_lock_held(file), "SQLite keeps a lock on a database in WAL mode");
        for _ in 0..2 {
            let source = pinned_alone(&path, &live);
            let (scratch, _) = TempFile::create(&path, "backup").unwrap();
            let dest = open_rw(&dir.path().join("out.db"));
            let written = backup_into(source, scratch, &dest, &AtomicBool::new(false), |_, _| {}).unwrap();
            assert!(written.file_alone);
            // A descriptor on the file closed by the backup would have
            // dropped them: another process could then take the database
            // from under the daemon (checkpoint and delete its WAL).
            assert!(record_lock_held(file), "the backup dropped SQLite's locks");
        }
        live.conn()
            .execute("INSERT INTO filler (data) VALUES (x'00')", [])
            .unwrap();
    }

    #[test]
    fn checkpoints_leave_a_file_pinned_alone_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 200);
        let live = Database::open(&path, &StorageOptions::default()).unwrap();
        let source = pinned_alone(&path, &live);
        let pinned = std::fs::read(&path).unwrap();
        // Another connection commits more than an automatic checkpoint's
        // worth of pages (1000) and asks for checkpoints of every kind it
        // can get without waiting; the daemon's connection writes too.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let tx = other.unchecked_transaction().unwrap();
        for _ in 0..1500 {
            tx.execute("INSERT INTO filler (data) VALUES (zeroblob(3072))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        live.conn()
            .execute("INSERT INTO filler (data) VALUES (x'01')", [])
            .unwrap();
        for mode in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] {
            let _ = other.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(0));
            assert!(source.file_unchanged(), "after a {mode} checkpoint");
        }
        assert!(
            std::fs::read(&path).unwrap() == pinned,
            "the database file changed under the snapshot"
        );
        // Once the snapshot ends, the next checkpoint writes the file.
        drop(source);
        let (busy, log, done): (i64, i64, i64) = other
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((busy, log), (0, done));
        assert!(std::fs::read(&path).unwrap() != pinned);
    }

    #[test]
    fn only_the_databases_own_descriptor_is_taken_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 10);
        let _live = Database::open(&path, &StorageOptions::default()).unwrap();
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        let other = Arc::new(File::open(dir.path().join("other")).unwrap());
        assert!(open_source(&path, Some(other))
            .unwrap()
            .pin_file_alone()
            .unwrap()
            .is_err());
        // And without the daemon's descriptor there is no copy of the file.
        assert!(open_source(&path, None).unwrap().pin_file_alone().unwrap().is_err());
    }

    #[test]
    fn a_snapshot_keeps_the_locks_after_the_daemon_closes_its_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 100);
        let live = Database::open(&path, &StorageOptions::default()).unwrap();
        let source = pinned_alone(&path, &live);
        // Shutdown while a backup runs: the daemon's connection closes
        // first. The snapshot's connection is still open, and so must be
        // the descriptor (closing it would drop that connection's locks).
        live.close().unwrap();
        let file = source.file_alone().unwrap();
        assert!(
            record_lock_held(file),
            "closing the database dropped the snapshot's locks"
        );
        assert!(source.file_unchanged());
    }

    #[test]
    fn descriptors_on_the_databases_own_files_are_recognised_and_kept_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 10);
        let mut live = Database::open(&path, &StorageOptions::default()).unwrap();
        live.conn()
            .execute("INSERT INTO filler (data) VALUES (x'02')", [])
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let name = format!("{}{suffix}", path.display());
            let handed = std::fs::OpenOptions::new().read(true).write(true).open(&name).unwrap();
            assert_eq!(live.owns(&handed), Some(std::path::PathBuf::from(&name)));
            live.keep_open(handed);
            assert!(record_lock_held(live.file().unwrap()), "{name}: the locks were dropped");
        }
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        assert_eq!(live.owns(&File::open(dir.path().join("other")).unwrap()), None);
        live.close().unwrap();
    }

    #[test]
    fn through_a_symbolic_link_the_files_beside_its_target_are_the_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), 10);
        let link = dir.path().join("link.sqlite3");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let mut live = Database::open(&link, &StorageOptions::default()).unwrap();
        live.conn()
            .execute("INSERT INTO filler (data) VALUES (x'03')", [])
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let name = format!("{}{suffix}", path.display());
            let handed = File::open(&name).unwrap();
            assert!(live.owns(&handed).is_some(), "{name}");
            live.keep_open(handed);
        }
        assert!(record_lock_held(live.file().unwrap()));
    }
}
