//! A SQLite VFS with one purpose: to let the online backup API write its
//! destination straight into a file descriptor (the file a client opened
//! with its own permissions and handed over, ADR 0006), so that a backup
//! is written once, by SQLite, into its final file.
//!
//! SQLite opens files by name. The name `/dchat-fd/<n>` opened with the
//! VFS named [`VFS_NAME`] stands for descriptor `<n>` of this process: the
//! VFS duplicates it and does plain `pread`/`pwrite` on the duplicate.
//! Nothing else can be opened through it (no journal, no WAL: the
//! destination is written with `journal_mode=off` and `locking_mode=
//! exclusive`), and locks are no-ops, since nothing else opens the file.
//! Everything that is not about files (randomness, time, sleep) is the
//! default VFS's.
//!
//! Writes are paced: every [`WINDOW`] bytes the VFS starts writeback of
//! what was written since, and waits for the window before it to reach the
//! disk, so at most two windows are ever dirty. Without it the backup
//! leaves a gigabyte of dirty pages, and the daemon's own commits, which
//! fsync on the same disk, queue behind them.
//!
//! The VFS also keeps a log of the writes ([`WriteLog`]) so that the
//! backup's SHA-256 can be computed while the backup runs: it records the
//! first version of page 1 and how far the rest of the file has been
//! written once. See `backup_write.rs` for how page 1 is settled.
//!
//! This is the one module of dchatd with more than a line of `unsafe`:
//! SQLite calls it through C function pointers. Every function checks its
//! pointers for null and never unwinds (no panicking code runs inside).
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::ffi;

/// The name to open a destination with.
pub const VFS_NAME: &str = "dchat-fd";
const VFS_NAME_C: &CStr = c"dchat-fd";
const PREFIX: &str = "/dchat-fd/";

/// Bytes written between two writeback steps.
pub const WINDOW: u64 = 8 * 1024 * 1024;

/// The file name that stands for `fd` under this VFS.
pub fn name_for(fd: BorrowedFd<'_>) -> String {
    format!("{PREFIX}{}", fd.as_raw_fd())
}

/// What has been written into one destination, for the hashing thread.
#[derive(Default)]
pub struct WriteLog {
    state: Mutex<Log>,
    changed: Condvar,
}

#[derive(Default)]
struct Log {
    page_size: u64,
    /// Page 1 as first written.
    first_page: Option<Vec<u8>>,
    /// Every byte of `page_size..contiguous` has been written once.
    contiguous: u64,
    /// Ranges written beyond `contiguous`: start → end.
    ahead: BTreeMap<u64, u64>,
    /// A byte after page 1 was written twice, or a write did not have the
    /// expected shape: the log cannot vouch for the file, hash it whole.
    unreliable: bool,
    /// Set by the backup when it is over: the final size, or `None` when
    /// it failed.
    finished: Option<Option<u64>>,
}

/// What the hashing thread may do next.
pub enum Next {
    /// Bytes below this are final (page 1 aside).
    Upto(u64),
    /// The backup is over and the file has this many bytes.
    Finished(u64),
    /// Stop: the backup failed, or the log cannot be trusted.
    GiveUp,
}

impl WriteLog {
    fn record(&self, start: u64, data: &[u8]) {
        let Ok(mut log) = self.state.lock() else {
            return;
        };
        let end = start + data.len() as u64;
        let page = log.page_size;
        if start == 0 {
            if log.first_page.is_none() {
                match data.get(..usize::try_from(page).unwrap_or(usize::MAX)) {
                    Some(first) if data.len() as u64 == page => log.first_page = Some(first.to_vec()),
                    _ => log.unreliable = true,
                }
            }
        } else if start < page
            || start < log.contiguous
            || log.ahead.range(..end).next_back().is_some_and(|(_, e)| *e > start)
        {
            // Inside page 1, or over bytes already written.
            log.unreliable = true;
        } else {
            log.ahead.insert(start, end);
            let mut contiguous = log.contiguous.max(page);
            while let Some(e) = log.ahead.remove(&contiguous) {
                contiguous = e;
            }
            log.contiguous = contiguous;
        }
        drop(log);
        self.changed.notify_all();
    }

    /// The backup is over: `bytes` is the file's final size, or `None`
    /// when the backup failed.
    pub fn finish(&self, bytes: Option<u64>) {
        if let Ok(mut log) = self.state.lock() {
            log.finished = Some(bytes);
        }
        self.changed.notify_all();
    }

    /// Page 1 as first written, once it has been (`None`: never, or the
    /// log cannot be trusted). Waits for it while the backup runs.
    pub fn first_page(&self, cancel: &AtomicBool) -> Option<Vec<u8>> {
        let mut log = self.state.lock().ok()?;
        loop {
            if log.unreliable || cancel.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(page) = &log.first_page {
                return Some(page.clone());
            }
            if log.finished.is_some() {
                return None;
            }
            log = self.changed.wait_timeout(log, Duration::from_millis(50)).ok()?.0;
        }
    }

    /// Waits until more than `at` bytes are final or the backup is over.
    pub fn next(&self, at: u64, cancel: &AtomicBool) -> Next {
        let Ok(mut log) = self.state.lock() else {
            return Next::GiveUp;
        };
        loop {
            if log.unreliable || cancel.load(Ordering::Relaxed) {
                return Next::GiveUp;
            }
            match log.finished {
                Some(Some(bytes)) if log.contiguous <= bytes => return Next::Finished(bytes),
                Some(_) => return Next::GiveUp,
                None if log.contiguous > at => return Next::Upto(log.contiguous),
                None => {}
            }
            log = match self.changed.wait_timeout(log, Duration::from_millis(50)) {
                Ok((log, _)) => log,
                Err(_) => return Next::GiveUp,
            };
        }
    }
}

/// Logs kept for destinations about to be opened, by descriptor number.
fn logs() -> &'static Mutex<HashMap<RawFd, Arc<WriteLog>>> {
    static LOGS: OnceLock<Mutex<HashMap<RawFd, Arc<WriteLog>>>> = OnceLock::new();
    LOGS.get_or_init(Mutex::default)
}

/// Keeps a [`WriteLog`] for the next opening of `fd` as a destination;
/// forgotten when the guard drops if nothing opened it.
pub fn track(fd: BorrowedFd<'_>, page_size: u64) -> (Arc<WriteLog>, Tracked) {
    let log = Arc::new(WriteLog::default());
    if let Ok(mut l) = log.state.lock() {
        l.page_size = page_size;
        l.contiguous = page_size;
    }
    let fd = fd.as_raw_fd();
    if let Ok(mut logs) = logs().lock() {
        logs.insert(fd, Arc::clone(&log));
    }
    (log, Tracked(fd))
}

pub struct Tracked(RawFd);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut logs) = logs().lock() {
            logs.remove(&self.0);
        }
    }
}

/// Registers the VFS with SQLite once per process.
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register_now).clone()
}

fn register_now() -> Result<(), String> {
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, a static
    // structure that lives as long as the process (or NULL, checked). We
    // copy it by value and never write through the pointer.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err("SQLite has no default VFS".into());
    }
    // SAFETY: non-null and points to a valid sqlite3_vfs (above).
    let mut vfs: ffi::sqlite3_vfs = unsafe { *default };
    // Version 2: the default's xCurrentTimeInt64 is used; the system-call
    // overrides of version 3 are not offered.
    vfs.iVersion = vfs.iVersion.min(2);
    vfs.szOsFile = c_int::try_from(std::mem::size_of::<FdFile>()).map_err(|e| e.to_string())?;
    vfs.pNext = std::ptr::null_mut();
    vfs.zName = VFS_NAME_C.as_ptr();
    vfs.pAppData = std::ptr::null_mut();
    vfs.xOpen = Some(x_open);
    vfs.xDelete = Some(x_delete);
    vfs.xAccess = Some(x_access);
    vfs.xFullPathname = Some(x_full_pathname);
    // SQLite keeps the pointer for the life of the process: leak it.
    let vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` is a valid, fully initialized sqlite3_vfs with a
    // 'static lifetime; registering does not make it the default.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!("sqlite3_vfs_register failed ({rc})"))
    }
}

/// One open destination. SQLite allocates `szOsFile` bytes for it and we
/// initialize them in `x_open`; every field is plain data.
#[repr(C)]
struct FdFile {
    /// Must come first: SQLite reads `pMethods` through a `sqlite3_file*`.
    base: ffi::sqlite3_file,
    /// Our duplicate of the handed-over descriptor, closed by `x_close`.
    fd: RawFd,
    /// The bytes written since the last writeback step, and their range.
    pending: u64,
    low: u64,
    high: u64,
    /// The range handed to writeback last (`previous_high == 0`: none).
    previous_low: u64,
    previous_high: u64,
    /// From `Arc::into_raw` of the destination's log (or null); released
    /// by `x_close`.
    log: *const WriteLog,
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The descriptor number a name stands for.
fn parse_name(name: *const c_char) -> Option<RawFd> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes a NUL-terminated string (checked non-null).
    let name = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    name.strip_prefix(PREFIX)?.parse().ok().filter(|fd| *fd >= 0)
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    if file.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `file` points to szOsFile writable bytes; until we set
    // pMethods SQLite will not call any method on it.
    unsafe { (*file).pMethods = std::ptr::null() };
    if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        return ffi::SQLITE_CANTOPEN;
    }
    let Some(fd) = parse_name(name) else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor number; if `fd` is
    // not open it fails with EBADF, which we report.
    let ours = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if ours < 0 {
        return ffi::SQLITE_CANTOPEN;
    }
    let log = logs()
        .lock()
        .ok()
        .and_then(|mut logs| logs.remove(&fd))
        .map_or(std::ptr::null(), Arc::into_raw);
    // SAFETY: `file` has room for an FdFile (szOsFile), is suitably
    // aligned (SQLite allocates it with malloc), and holds nothing to drop.
    unsafe {
        file.cast::<FdFile>().write(FdFile {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            fd: ours,
            pending: 0,
            low: u64::MAX,
            high: 0,
            previous_low: 0,
            previous_high: 0,
            log,
        });
    }
    if !out_flags.is_null() {
        // SAFETY: non-null out-parameter from SQLite.
        unsafe { *out_flags = flags };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, _name: *const c_char, _sync_dir: c_int) -> c_int {
    // Nothing but the destination is ever opened, and it is not ours to
    // delete.
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    if !out.is_null() {
        // No journal, WAL or other file exists beside the destination.
        // SAFETY: non-null out-parameter from SQLite.
        unsafe { *out = 0 };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    if name.is_null() || out.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: NUL-terminated input from SQLite (checked non-null).
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    match usize::try_from(n_out) {
        Ok(room) if bytes.len() <= room => {
            // SAFETY: `out` has `n_out` writable bytes, and `bytes` fits.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len()) };
            ffi::SQLITE_OK
        }
        _ => ffi::SQLITE_CANTOPEN,
    }
}

/// The FdFile behind a `sqlite3_file*` SQLite passes to a method.
///
/// # Safety
/// `file` must be a file `x_open` initialized and `x_close` has not closed.
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut FdFile> {
    // SAFETY: per the contract, an initialized FdFile; SQLite calls the
    // methods of one file from one thread at a time.
    unsafe { file.cast::<FdFile>().as_mut() }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called once on an open file.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_OK;
    };
    // SAFETY: `f.fd` is our own duplicate, closed exactly once, here.
    unsafe { libc::close(f.fd) };
    f.fd = -1;
    if !f.log.is_null() {
        // SAFETY: from Arc::into_raw in x_open, released once, here.
        drop(unsafe { Arc::from_raw(f.log) });
        f.log = std::ptr::null();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite calls methods on open files only.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_READ;
    };
    let (Ok(len), Ok(mut at)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_READ;
    };
    if buf.is_null() {
        return ffi::SQLITE_IOERR_READ;
    }
    // SAFETY: SQLite hands a buffer of `amount` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    let mut done = 0;
    while done < len {
        let rest = out.get_mut(done..).unwrap_or_default();
        // SAFETY: `rest` is valid for `rest.len()` bytes; `f.fd` is open.
        let n = unsafe { libc::pread(f.fd, rest.as_mut_ptr().cast(), rest.len(), at as libc::off_t) };
        match n {
            0 => break,
            n if n > 0 => {
                done += n as usize;
                at += n as u64;
            }
            _ if errno() == libc::EINTR => {}
            _ => return ffi::SQLITE_IOERR_READ,
        }
    }
    if done < len {
        // SQLite requires the rest zeroed on a short read.
        out.get_mut(done..).unwrap_or_default().fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite calls methods on open files only.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let (Ok(len), Ok(start)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if buf.is_null() {
        return ffi::SQLITE_IOERR_WRITE;
    }
    // SAFETY: SQLite hands `amount` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    let mut done = 0;
    while done < len {
        let rest = data.get(done..).unwrap_or_default();
        let at = start + done as u64;
        // SAFETY: `rest` is valid for `rest.len()` bytes; `f.fd` is open.
        let n = unsafe { libc::pwrite(f.fd, rest.as_ptr().cast(), rest.len(), at as libc::off_t) };
        match n {
            n if n > 0 => done += n as usize,
            _ if errno() == libc::EINTR => {}
            _ if errno() == libc::ENOSPC || errno() == libc::EDQUOT || n == 0 => return ffi::SQLITE_FULL,
            _ => return ffi::SQLITE_IOERR_WRITE,
        }
    }
    // SAFETY: null or from Arc::into_raw in x_open, alive until x_close.
    if let Some(log) = unsafe { f.log.as_ref() } {
        log.record(start, data);
    }
    f.pending += len as u64;
    f.low = f.low.min(start);
    f.high = f.high.max(start + len as u64);
    if f.pending >= WINDOW {
        pace(f);
    }
    ffi::SQLITE_OK
}

/// Starts writeback of what was written since the last step, then waits
/// for the step before to reach the disk. Advice only: an error here comes
/// back at the final fsync, which is what makes the file durable.
fn pace(f: &mut FdFile) {
    let (low, high) = (f.low, f.high);
    f.pending = 0;
    f.low = u64::MAX;
    f.high = 0;
    if high > low {
        sync_range(f.fd, low, high - low, libc::SYNC_FILE_RANGE_WRITE);
    }
    if f.previous_high > f.previous_low {
        let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        sync_range(f.fd, f.previous_low, f.previous_high - f.previous_low, wait);
    }
    f.previous_low = low;
    f.previous_high = high;
}

fn sync_range(fd: RawFd, from: u64, len: u64, flags: libc::c_uint) {
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    // SAFETY: plain integers and our own open descriptor; no memory.
    let _ = unsafe { libc::sync_file_range(fd, from, len, flags) };
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite calls methods on open files only.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    // SAFETY: our own open descriptor.
    if unsafe { libc::ftruncate(f.fd, size as libc::off_t) } == 0 {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_IOERR_TRUNCATE
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: SQLite calls methods on open files only.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_FSYNC;
    };
    // SAFETY: our own open descriptor.
    if unsafe { libc::fdatasync(f.fd) } == 0 {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_IOERR_FSYNC
    }
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite calls methods on open files only.
    let Some(f) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_FSTAT;
    };
    if size.is_null() {
        return ffi::SQLITE_IOERR_FSTAT;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills the stat buffer we own; our own open descriptor.
    if unsafe { libc::fstat(f.fd, st.as_mut_ptr()) } != 0 {
        return ffi::SQLITE_IOERR_FSTAT;
    }
    // SAFETY: zero-initialized and then filled by a successful fstat.
    let st = unsafe { st.assume_init() };
    // SAFETY: non-null out-parameter from SQLite.
    unsafe { *size = st.st_size };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    if !out.is_null() {
        // SAFETY: non-null out-parameter from SQLite.
        unsafe { *out = 0 };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(_file: *mut ffi::sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(page: u64) -> WriteLog {
        let log = WriteLog::default();
        if let Ok(mut l) = log.state.lock() {
            l.page_size = page;
            l.contiguous = page;
        }
        log
    }

    #[test]
    fn the_log_follows_writes_in_any_order_and_keeps_the_first_page_1() {
        let no = AtomicBool::new(false);
        let log = log(4);
        log.record(0, b"AAAA");
        log.record(12, b"DDDD");
        log.record(4, b"BBBB");
        assert!(matches!(log.next(4, &no), Next::Upto(8)));
        log.record(8, b"CCCC");
        assert!(matches!(log.next(8, &no), Next::Upto(16)));
        // Page 1 rewritten later: the first version is what counts.
        log.record(0, b"ZZZZ");
        assert_eq!(log.first_page(&no).as_deref(), Some(&b"AAAA"[..]));
        log.finish(Some(16));
        assert!(matches!(log.next(16, &no), Next::Finished(16)));
    }

    #[test]
    fn a_page_written_twice_or_a_failed_backup_makes_the_hash_give_up() {
        let no = AtomicBool::new(false);
        let twice = log(4);
        twice.record(0, b"AAAA");
        twice.record(4, b"BBBB");
        twice.record(4, b"bbbb");
        assert!(matches!(twice.next(4, &no), Next::GiveUp));
        assert!(twice.first_page(&no).is_none());

        let overlapping = log(4);
        overlapping.record(12, b"DDDD");
        overlapping.record(10, b"xxxx");
        assert!(matches!(overlapping.next(4, &no), Next::GiveUp));

        let failed = log(4);
        failed.record(0, b"AAAA");
        failed.finish(None);
        assert!(matches!(failed.next(4, &no), Next::GiveUp));

        let short_page = log(4);
        short_page.record(0, b"AA");
        assert!(short_page.first_page(&no).is_none());
    }
}
