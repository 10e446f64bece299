//! Writes a snapshot into the file a client handed over as a descriptor
//! (ADR 0006): the daemon never opens the caller's path; the caller's own
//! permissions were checked when it opened the file.
//!
//! The snapshot comes from SQLite's online backup API, into the private
//! scratch file of [`super::backup`] (it stays in the page cache and is
//! deleted before it is ever written back). The backup API keeps its
//! destination's transaction open until the last step and writes pages
//! when its cache spills, so no part of the scratch file is known to be
//! final before the end; the copy starts then. Two threads share it: one
//! copies (the kernel moves the bytes: `copy_file_range`, or
//! `pread`/`pwrite` where a filesystem pair refuses it), the other hashes
//! the scratch file, and the fsync comes last.
//!
//! Writeback is paced window by window, so that no more than two windows
//! of the file are dirty at once: without it the copy leaves a gigabyte of
//! dirty pages behind, and the daemon's own commits, which fsync, queue
//! behind them on the same disk.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use sha2::{Digest, Sha256};

use super::backup::{Snapshot, SnapshotSource, TempFile};
use super::StorageError;

/// Bytes copied between two writeback steps.
const WINDOW: u64 = 8 * 1024 * 1024;
/// Read size of the hashing thread and of the `pwrite` fallback.
const BUFFER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the backup file cannot be used: {0}")]
    Unusable(String),
    #[error("cannot write the backup file: {0}")]
    Write(std::io::Error),
    #[error("cannot read the snapshot: {0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Snapshot(#[from] StorageError),
    #[error("cancelled")]
    Cancelled,
}

/// A snapshot written into the client's file.
#[derive(Debug)]
pub struct Written {
    pub snapshot: Snapshot,
    pub sha256: String,
}

/// Refuses a descriptor that is not a regular file open for writing
/// without `O_APPEND` (a pipe, a socket, a device, a read-only file).
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
    let mode = flags & OFlag::O_ACCMODE;
    if mode != OFlag::O_WRONLY && mode != OFlag::O_RDWR {
        return Err(WriteError::Unusable("it is not open for writing".into()));
    }
    if flags.contains(OFlag::O_APPEND) {
        return Err(WriteError::Unusable("it is open with O_APPEND".into()));
    }
    Ok(())
}

/// Runs the backup of `source` into `scratch`, then writes it into `dest`
/// from offset 0, truncates `dest` to exactly the snapshot and fsyncs it.
/// `progress(phase, done, total)` in bytes, phase "snapshot" then
/// "write"; stops early once `cancel` is set.
pub fn backup_into(
    source: SnapshotSource,
    scratch: TempFile,
    dest: &File,
    cancel: &AtomicBool,
    mut progress: impl FnMut(&'static str, u64, u64),
) -> Result<Written, WriteError> {
    check_destination(dest)?;
    // Whatever the file held before goes: it ends up exactly the snapshot.
    dest.set_len(0).map_err(WriteError::Write)?;
    let page_size = source.page_size;
    let snapshot = source.copy_to(scratch, cancel, |done, total| {
        progress(
            "snapshot",
            done.saturating_mul(page_size),
            total.saturating_mul(page_size),
        );
    })?;
    let bytes = snapshot.bytes;
    let from = File::open(snapshot.file.path()).map_err(WriteError::Read)?;
    let stop = AtomicBool::new(false);
    let (copied, hashed) = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| hash_file(&from, bytes, cancel, &stop));
        let copied = copy(&from, dest, bytes, cancel, &mut progress);
        if copied.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let hashed = hasher
            .join()
            .map_err(|_| WriteError::Read(std::io::Error::other("the hashing thread panicked")));
        (copied, hashed)
    });
    copied?;
    let sha256 = hashed?.map_err(WriteError::Read)?.ok_or(WriteError::Cancelled)?;
    Ok(Written { snapshot, sha256 })
}

/// The copying thread's part: copy window by window, pace writeback,
/// fsync.
fn copy(
    source: &File,
    dest: &File,
    bytes: u64,
    cancel: &AtomicBool,
    progress: &mut impl FnMut(&'static str, u64, u64),
) -> Result<(), WriteError> {
    let mut writes = Copier::default();
    let mut done = 0;
    while done < bytes {
        if cancel.load(Ordering::Relaxed) {
            return Err(WriteError::Cancelled);
        }
        let end = (done + WINDOW).min(bytes);
        writes.copy(source, dest, done, end - done)?;
        writes.paced(dest, done, end);
        done = end;
        progress("write", done, bytes);
    }
    dest.sync_all().map_err(WriteError::Write)?;
    if let Some((from, to)) = writes.previous {
        drop_cached(dest, from, to - from);
    }
    Ok(())
}

/// Copies byte ranges and paces their writeback.
#[derive(Default)]
struct Copier {
    /// Set once the kernel refused copy_file_range: copy through memory.
    through_memory: bool,
    buf: Vec<u8>,
    /// The window written back last, waited for at the next one.
    previous: Option<(u64, u64)>,
}

impl Copier {
    fn copy(&mut self, source: &File, dest: &File, from: u64, len: u64) -> Result<(), WriteError> {
        let end = from + len;
        let mut at = from;
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(usize::MAX);
            let n = if self.through_memory {
                copy_through(source, dest, at, want, &mut self.buf)?
            } else {
                match copy_range(source, dest, at, want) {
                    Ok(n) => n,
                    // Cross-filesystem pairs and some filesystems refuse
                    // copy_file_range; everything after goes through memory.
                    Err(e) if refused(e) => {
                        self.through_memory = true;
                        continue;
                    }
                    Err(e) => return Err(WriteError::Write(e.into())),
                }
            };
            if n == 0 {
                return Err(WriteError::Read(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("the snapshot ended at {at} bytes"),
                )));
            }
            at += n as u64;
        }
        Ok(())
    }

    /// Starts writeback of `from..to`, then waits for the window before it
    /// and drops that one from the page cache: at most two windows are
    /// ever dirty.
    fn paced(&mut self, dest: &File, from: u64, to: u64) {
        writeback(dest.as_fd(), from, to - from, false);
        if let Some((f, t)) = self.previous.replace((from, to)) {
            writeback(dest.as_fd(), f, t - f, true);
            drop_cached(dest, f, t - f);
        }
    }
}

fn copy_range(source: &File, dest: &File, at: u64, len: usize) -> Result<usize, Errno> {
    let mut off_in = i64::try_from(at).map_err(|_| Errno::EOVERFLOW)?;
    let mut off_out = off_in;
    nix::fcntl::copy_file_range(source, Some(&mut off_in), dest, Some(&mut off_out), len)
}

/// Errors after which `pread`/`pwrite` still works.
fn refused(e: Errno) -> bool {
    matches!(
        e,
        Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EPERM
    )
}

fn copy_through(source: &File, dest: &File, at: u64, len: usize, buf: &mut Vec<u8>) -> Result<usize, WriteError> {
    buf.resize(BUFFER.min(len), 0);
    let n = loop {
        match source.read_at(buf, at) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(WriteError::Read(e)),
        }
    };
    let chunk = buf.get(..n).unwrap_or_default();
    dest.write_all_at(chunk, at).map_err(WriteError::Write)?;
    Ok(n)
}

/// Hashes the first `bytes` of `file`. `Ok(None)` when stopped early.
fn hash_file(file: &File, bytes: u64, cancel: &AtomicBool, stop: &AtomicBool) -> std::io::Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    let mut at = 0u64;
    while at < bytes {
        if cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let want = usize::try_from(bytes - at).unwrap_or(usize::MAX).min(BUFFER);
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact_at(chunk, at)?;
        hasher.update(&*chunk);
        at += want as u64;
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Starts writeback of a range (`wait`: and waits for it, and for any
/// already under way, to reach the disk). Advice for pacing only: an error
/// here shows again in the final fsync, which is what makes the file
/// durable.
fn writeback(fd: BorrowedFd<'_>, from: u64, len: u64, wait: bool) {
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    if let Err(e) = sync_file_range(fd, from, len, flags) {
        tracing::debug!(error = %e, "sync_file_range failed; the final fsync still runs");
    }
}

/// nix has no wrapper for sync_file_range(2).
#[allow(unsafe_code)]
fn sync_file_range(fd: BorrowedFd<'_>, from: i64, len: i64, flags: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: sync_file_range takes a descriptor and three integers and
    // touches no memory of ours; `fd` is borrowed, so it stays open for
    // the duration of the call.
    let r = unsafe { libc::sync_file_range(fd.as_raw_fd(), from, len, flags) };
    Errno::result(r).map(drop)
}

/// Drops written-back pages of the range from the page cache: a backup
/// is written once and not read again, and should not push out what the
/// node reads.
fn drop_cached(file: &File, from: u64, len: u64) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    let _ = posix_fadvise(file, from, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backup::begin_snapshot;
    use crate::storage::{Database, StorageOptions};
    use std::path::Path;

    /// A migrated database with `rows` rows of 3 KiB each in a table of
    /// its own, and the path of its file.
    fn database(dir: &Path, rows: usize) -> std::path::PathBuf {
        let path = dir.join("dchat.sqlite3");
        let db = Database::open(&path, &StorageOptions::default()).unwrap();
        db.conn()
            .execute_batch("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .unwrap();
        for i in 0..rows {
            let data: Vec<u8> = (0..3072).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
            db.conn()
                .execute("INSERT INTO filler (data) VALUES (?1)", [data])
                .unwrap();
        }
        path
    }

    fn backup(db: &Path, dest: &File, cancel: &AtomicBool) -> Result<(Written, Vec<(u64, u64)>), WriteError> {
        let source = begin_snapshot(db).unwrap();
        let (scratch, _) = TempFile::create(db, "backup").unwrap();
        let mut seen = Vec::new();
        let written = backup_into(source, scratch, dest, cancel, |phase, d, t| {
            if phase == "write" {
                seen.push((d, t));
            }
        })?;
        Ok((written, seen))
    }

    #[test]
    fn the_file_is_the_snapshot_and_the_hash_is_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        // Several backup steps and several windows.
        let db = database(dir.path(), 6000);
        let out = dir.path().join("out.db");
        // What the file held before must not survive.
        std::fs::write(&out, vec![0xAA; 40 * 1024 * 1024]).unwrap();
        let dest = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
        let (written, seen) = backup(&db, &dest, &AtomicBool::new(false)).unwrap();
        let data = std::fs::read(&out).unwrap();
        assert_eq!(data.len() as u64, written.snapshot.bytes);
        assert!(written.snapshot.bytes > 2 * WINDOW, "{}", written.snapshot.bytes);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
        // The copy is a database with every row, and page 1 is the final one.
        let conn = rusqlite::Connection::open(&out).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let rows: i64 = conn.query_row("SELECT count(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 6000);
    }

    #[test]
    fn the_fallback_copies_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = (WINDOW + 77) as usize;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, &data).unwrap();
        let source = File::open(&path).unwrap();
        let out = dir.path().join("out");
        let dest = std::fs::File::create(&out).unwrap();
        let mut buf = Vec::new();
        let mut at = 0u64;
        while at < len as u64 {
            at += copy_through(&source, &dest, at, len - at as usize, &mut buf).unwrap() as u64;
        }
        assert_eq!(std::fs::read(&out).unwrap(), data);
    }

    #[test]
    fn refuses_what_is_not_a_writable_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), 10);
        let before = std::fs::read(&db).unwrap();
        let read_only = File::open(&db).unwrap();
        let e = backup(&db, &read_only, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("not open for writing"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the database was not touched");
        let append = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.path().join("x"))
            .unwrap();
        let e = check_destination(&append).unwrap_err();
        assert!(e.to_string().contains("O_APPEND"), "{e}");
        let (r, _w) = nix::unistd::pipe().unwrap();
        let e = check_destination(&File::from(r)).unwrap_err();
        assert!(e.to_string().contains("pipe"), "{e}");
        let dev = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let e = check_destination(&dev).unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
    }

    #[test]
    fn cancel_stops_both_threads() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), 6000);
        let out = dir.path().join("out.db");
        let dest = std::fs::File::create(&out).unwrap();
        let cancel = AtomicBool::new(true);
        let e = backup(&db, &dest, &cancel).unwrap_err();
        assert!(e.to_string().contains("cancel"), "{e}");
    }
}
