//! Copies a file into another while a second thread hashes what has been
//! written: a backup whose snapshot is the database file alone (see
//! [`super::backup::SnapshotOpener::pin_file_alone`]) is this copy.
//!
//! The copy is done by the kernel (`copy_file_range`), window by window,
//! with paced writeback ([`super::writeback`]). Where the kernel cannot
//! copy between the two files (another filesystem, a filesystem without
//! support, a call that copies nothing before the end) it falls back to
//! reads and writes. The hashing thread reads the destination back from
//! the page cache up to what the copy has finished, so the hash is of the
//! bytes in the file; the fsync of the destination overlaps the end of
//! the hash.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use nix::errno::Errno;
use sha2::{Digest, Sha256};

use super::writeback::{Writeback, WINDOW};

/// Read size of the hashing thread and of the fallback copy.
const BUFFER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read the database file: {0}")]
    Source(std::io::Error),
    #[error("cannot write the backup file: {0}")]
    Write(std::io::Error),
    #[error("cannot read the backup file back: {0}")]
    Read(std::io::Error),
    #[error("cancelled")]
    Cancelled,
}

/// How far the copy has come, for the hashing thread to follow.
#[derive(Default)]
struct Watermark {
    /// (bytes copied, copy ended early)
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl Watermark {
    fn advance(&self, to: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = to;
        self.moved.notify_all();
    }

    fn abandon(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.moved.notify_all();
    }

    /// Waits until more than `at` bytes are copied; `None` once the copy
    /// was abandoned short of that.
    fn beyond(&self, at: u64) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.0 > at {
                return Some(state.0);
            }
            if state.1 {
                return None;
            }
            state = self.moved.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Ends the hashing thread's wait for more, however the copy ends (a
/// panic in it included): what was copied is hashed, then it stops.
struct AbandonOnDrop<'a>(&'a Watermark);

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// Copies the first `bytes` of `src` into `dest` (which must be empty and
/// open for reading and writing), fsyncs `dest` and returns the SHA-256 of
/// what it holds. `progress(done)` after every window, in bytes.
pub fn copy_and_hash(
    src: &File,
    dest: &File,
    bytes: u64,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<String, CopyError> {
    let mark = Watermark::default();
    beside_the_hash(dest, bytes, &mark, cancel, || {
        let ended = AbandonOnDrop(&mark);
        let copied = copy(src, dest, bytes, cancel, &mut |done| {
            mark.advance(done);
            progress(done);
        });
        drop(ended);
        copied.and_then(|()| dest.sync_all().map_err(CopyError::Write))
    })
}

/// Fsyncs the first `bytes` of `dest`, written by someone else, while a
/// second thread hashes them; returns the SHA-256.
pub fn sync_and_hash(dest: &File, bytes: u64, cancel: &AtomicBool) -> Result<String, CopyError> {
    let mark = Watermark::default();
    mark.advance(bytes);
    beside_the_hash(dest, bytes, &mark, cancel, || dest.sync_all().map_err(CopyError::Write))
}

/// Runs `work` while a second thread hashes the first `bytes` of `dest`
/// as `mark` allows; the hash, once both are done and `work` succeeded.
fn beside_the_hash(
    dest: &File,
    bytes: u64,
    mark: &Watermark,
    cancel: &AtomicBool,
    work: impl FnOnce() -> Result<(), CopyError>,
) -> Result<String, CopyError> {
    std::thread::scope(|scope| {
        let hasher = scope.spawn(|| hash_following(dest, bytes, mark, cancel));
        let worked = work();
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(CopyError::Read(std::io::Error::other("the hashing thread panicked"))));
        worked?;
        hashed
    })
}

fn copy(src: &File, dest: &File, bytes: u64, cancel: &AtomicBool, done: &mut dyn FnMut(u64)) -> Result<(), CopyError> {
    copy_with(&copy_in_kernel, src, dest, bytes, cancel, done).map(|_| ())
}

/// How a copy was made.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    InKernel,
    /// By hand from this offset on.
    ByHandFrom(u64),
}

/// One kernel copy: `(src, dest, at, len)` to the bytes copied.
type KernelCopy<'a> = dyn Fn(&File, &File, u64, u64) -> Result<u64, Errno> + 'a;

/// [`copy`], with `kernel` for `copy_file_range` (tests make it fail).
fn copy_with(
    kernel: &KernelCopy<'_>,
    src: &File,
    dest: &File,
    bytes: u64,
    cancel: &AtomicBool,
    done: &mut dyn FnMut(u64),
) -> Result<Copied, CopyError> {
    let mut copied = Copied::InKernel;
    let mut writeback = Writeback::default();
    let mut at = 0u64;
    let mut in_kernel = true;
    let mut buf = Vec::new();
    while at < bytes {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let want = (bytes - at).min(WINDOW);
        let n = if in_kernel {
            match kernel(src, dest, at, want) {
                Ok(n) if n > 0 => n,
                // Nothing copied by this call (it copies nothing on some
                // filesystems, not only at the end): the same range by hand.
                Ok(_) | Err(Errno::EXDEV | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOSYS) => {
                    in_kernel = false;
                    copied = Copied::ByHandFrom(at);
                    continue;
                }
                Err(e) => return Err(CopyError::Write(std::io::Error::from(e))),
            }
        } else {
            buf.resize(BUFFER, 0);
            copy_by_hand(src, dest, at, want, &mut buf)?
        };
        if n == 0 {
            return Err(CopyError::Source(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends at {at} bytes; the snapshot has {bytes}"),
            )));
        }
        writeback.wrote(dest.as_fd(), at, n);
        at += n;
        done(at);
    }
    Ok(copied)
}

/// One `copy_file_range` call from `at` in both files; the bytes copied.
fn copy_in_kernel(src: &File, dest: &File, at: u64, len: u64) -> Result<u64, Errno> {
    let Ok(start) = i64::try_from(at) else {
        return Err(Errno::EOVERFLOW);
    };
    let (mut off_in, mut off_out) = (start, start);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    loop {
        match nix::fcntl::copy_file_range(src, Some(&mut off_in), dest, Some(&mut off_out), len) {
            Err(Errno::EINTR) => {}
            other => return other.map(|n| n as u64),
        }
    }
}

/// Up to `len` bytes from `at` through `buf`; the bytes copied (0 at the
/// end of `src`).
fn copy_by_hand(src: &File, dest: &File, at: u64, len: u64, buf: &mut [u8]) -> Result<u64, CopyError> {
    let want = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
    let chunk = buf.get_mut(..want).unwrap_or_default();
    let n = loop {
        match src.read_at(chunk, at) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => break other.map_err(CopyError::Source)?,
        }
    };
    dest.write_all_at(chunk.get(..n).unwrap_or_default(), at)
        .map_err(CopyError::Write)?;
    Ok(n as u64)
}

/// Hashes the first `bytes` of `file` as the copy writes them.
fn hash_following(file: &File, bytes: u64, mark: &Watermark, cancel: &AtomicBool) -> Result<String, CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    let mut at = 0u64;
    while at < bytes {
        let Some(ready) = mark.beyond(at) else {
            return Err(CopyError::Cancelled);
        };
        while at < ready {
            if cancel.load(Ordering::Relaxed) {
                return Err(CopyError::Cancelled);
            }
            let want = usize::try_from(ready - at).unwrap_or(usize::MAX).min(BUFFER);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            file.read_exact_at(chunk, at).map_err(CopyError::Read)?;
            hasher.update(&*chunk);
            at += want as u64;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn rw(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn copies_the_prefix_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        // Three windows and a bit, and bytes past the prefix that must not
        // be copied.
        let data = pattern(3 * WINDOW as usize + 12345);
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, &data).unwrap();
        let dest = rw(&dir.path().join("dest"));
        let prefix = data.len() as u64 - 100;
        let mut seen = Vec::new();
        let sha = copy_and_hash(
            &File::open(&src_path).unwrap(),
            &dest,
            prefix,
            &AtomicBool::new(false),
            &mut |d| seen.push(d),
        )
        .unwrap();
        let copied = std::fs::read(dir.path().join("dest")).unwrap();
        assert_eq!(copied, data[..prefix as usize]);
        assert_eq!(sha, hex::encode(Sha256::digest(&copied)));
        assert_eq!(seen.last().copied(), Some(prefix));
        assert!(seen.len() >= 4, "{seen:?}");
    }

    #[test]
    fn copies_by_hand_where_the_kernel_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(WINDOW as usize + 999);
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let dest = rw(&dir.path().join("dest"));
        let mut buf = vec![0u8; BUFFER];
        let mut at = 0;
        while at < data.len() as u64 {
            at += copy_by_hand(&src, &dest, at, WINDOW, &mut buf).unwrap();
        }
        assert_eq!(copy_by_hand(&src, &dest, at, WINDOW, &mut buf).unwrap(), 0);
        assert_eq!(std::fs::read(dir.path().join("dest")).unwrap(), data);
    }

    #[test]
    fn falls_back_to_reads_and_writes_across_filesystems() {
        // The source on the disk, the destination in memory (tmpfs): no
        // copy_file_range between two filesystems since Linux 5.19.
        let dir = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let data = pattern(2 * WINDOW as usize + 4321);
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dest = rw(&shm.path().join("dest"));
        let kernel = copy_in_kernel(&src, &dest, 0, 1);
        let copied = copy_with(
            &copy_in_kernel,
            &src,
            &dest,
            data.len() as u64,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(std::fs::read(shm.path().join("dest")).unwrap(), data);
        let same_fs = nix::sys::stat::fstat(&src).unwrap().st_dev == nix::sys::stat::fstat(&dest).unwrap().st_dev;
        assert!(!same_fs, "the test needs two filesystems");
        assert_eq!(kernel, Err(Errno::EXDEV), "Linux before 5.19?");
        assert_eq!(copied, Copied::ByHandFrom(0));
    }

    #[test]
    fn a_kernel_copy_that_stops_short_goes_on_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * WINDOW as usize + 77);
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        // The kernel copies one window, then fails or copies nothing.
        for refusal in [Err(Errno::EXDEV), Err(Errno::EOPNOTSUPP), Ok(0)] {
            let dest = rw(&dir.path().join("dest"));
            let kernel = |s: &File, d: &File, at: u64, len: u64| {
                if at == 0 {
                    copy_in_kernel(s, d, at, len)
                } else {
                    refusal
                }
            };
            let mut seen = Vec::new();
            let copied = copy_with(
                &kernel,
                &src,
                &dest,
                data.len() as u64,
                &AtomicBool::new(false),
                &mut |d| seen.push(d),
            )
            .unwrap();
            assert_eq!(copied, Copied::ByHandFrom(WINDOW), "{refusal:?}");
            assert_eq!(std::fs::read(dir.path().join("dest")).unwrap(), data, "{refusal:?}");
            assert_eq!(seen.last().copied(), Some(data.len() as u64));
        }
        // Any other error is the copy's.
        let dest = rw(&dir.path().join("dest"));
        let e = copy_with(
            &|_: &File, _: &File, _, _| Err(Errno::EIO),
            &src,
            &dest,
            10,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, CopyError::Write(_)), "{e}");
    }

    #[test]
    fn a_panic_in_the_copy_ends_the_hashing_thread_too() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * WINDOW as usize);
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dest = rw(&dir.path().join("dest"));
        // Without the drop guard the scope would wait for the hashing
        // thread forever: the copy runs on a thread of its own, and the
        // test fails if it has not ended within a minute.
        let len = data.len() as u64;
        let (ended, end) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                copy_and_hash(&src, &dest, len, &AtomicBool::new(false), &mut |done| {
                    assert!(done < WINDOW, "progress report panics");
                })
            }));
            let _ = ended.send(caught.is_err());
        });
        let panicked = end.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(panicked, Ok(true), "the copy did not end");
    }

    #[test]
    fn what_was_copied_is_hashed_before_the_abandoned_copy_ends_the_hash() {
        let mark = Watermark::default();
        mark.advance(4096);
        mark.abandon();
        assert_eq!(mark.beyond(0), Some(4096));
        assert_eq!(mark.beyond(4096), None);
    }

    /// Copies `bytes` of a 5000-byte file, cancelled from the start or not.
    fn copy_5000(bytes: u64, cancelled: bool) -> Result<String, CopyError> {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, pattern(5000)).unwrap();
        let dest = rw(&dir.path().join("dest"));
        let src = File::open(&src_path).unwrap();
        copy_and_hash(&src, &dest, bytes, &AtomicBool::new(cancelled), &mut |_| {})
    }

    #[test]
    fn a_short_source_is_an_error_and_stops_the_hash() {
        let e = copy_5000(8192, false).unwrap_err();
        assert!(e.to_string().contains("ends at 5000 bytes"), "{e}");
    }

    #[test]
    fn cancel_stops_it() {
        let e = copy_5000(5000, true).unwrap_err();
        assert!(matches!(e, CopyError::Cancelled), "{e}");
        assert_eq!(
            copy_5000(5000, false).unwrap(),
            hex::encode(Sha256::digest(pattern(5000)))
        );
    }
}
