//! Whether a file has POSIX record locks on it: how tests see that SQLite
//! still holds its locks on a database (closing any descriptor on a file
//! drops every such lock its process holds).

use std::fs::File;

use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

/// Whether any process, this one included, holds a POSIX record lock
/// anywhere in `file`. The query is an open-file-description lock test:
/// it conflicts with every process's record locks and takes none itself.
pub fn record_lock_held(file: &File) -> bool {
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match fcntl(file, FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => probe.l_type != libc::F_UNLCK as libc::c_short,
        Err(e) => panic!("F_OFD_GETLK: {e}"),
    }
}
