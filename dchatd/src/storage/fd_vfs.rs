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
//! Writes are paced by [`super::writeback`], so that at most two windows
//! of the file are ever dirty.
//!
//! This is the one module of dchatd with more than a line of `unsafe`:
//! SQLite calls it through C function pointers. Every function checks its
//! pointers for null and never unwinds (no panicking code runs inside).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::OnceLock;

use rusqlite::ffi;

use super::writeback::Writeback;

/// The name to open a destination with.
pub const VFS_NAME: &str = "dchat-fd";
const VFS_NAME_C: &CStr = c"dchat-fd";
const PREFIX: &str = "/dchat-fd/";

/// The file name that stands for `fd` under this VFS.
pub fn name_for(fd: BorrowedFd<'_>) -> String {
    format!("{PREFIX}{}", fd.as_raw_fd())
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
    writeback: Writeback,
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
    // SAFETY: `file` has room for an FdFile (szOsFile), is suitably
    // aligned (SQLite allocates it with malloc), and holds nothing to drop.
    unsafe {
        file.cast::<FdFile>().write(FdFile {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            fd: ours,
            writeback: Writeback::default(),
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
    // SAFETY: `f.fd` stays open until `x_close`.
    let fd = unsafe { BorrowedFd::borrow_raw(f.fd) };
    f.writeback.wrote(fd, start, len as u64);
    ffi::SQLITE_OK
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
