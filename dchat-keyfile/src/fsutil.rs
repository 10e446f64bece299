//! Writing secret files and reading password files.
//!
//! Secret files are written so that a crash or a full disk never leaves a
//! truncated key under its final name and the content is never readable by
//! anyone else, not even for an instant.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::KeyError;

/// A password file longer than this without a newline is refused, so that
/// pointing `--password-file` at a device or a huge file fails fast.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// Writes `bytes` to `path` with mode 0600: temp file in the same dir (created
/// 0600), write, fsync, rename, fsync the directory. Refuses an existing
/// `path` unless `overwrite` (`io::ErrorKind::AlreadyExists`). On any error no
/// partial file remains under the final name and the temp file is removed.
pub fn write_private_file(path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    let Some(file_name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        ));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Checked up front for a clear error before any work; the no-clobber
    // link below closes the race with a concurrent writer.
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(already_exists(path));
    }
    let (tmp_path, file) = create_temp(dir, &file_name.to_string_lossy())?;
    let result = fill_and_publish(file, &tmp_path, path, bytes, overwrite);
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp_path);
    }
    result.map_err(|e| naming(path, e))?;
    sync_dir(dir).map_err(|e| naming(dir, e))
}

/// Creates `.<name>.<random>.tmp` next to the target with mode 0600 from the
/// start (`create_new`, so an attacker's pre-placed file or symlink is not
/// followed).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let mut attempt = 0;
    loop {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // A name collision on 64 random bits means something odd is going
            // on; retry a couple of times rather than report AlreadyExists
            // for a path the caller never named.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io::Error::other(format!("{}: {e}", tmp.display())))
            }
            Err(e) => return Err(naming(&tmp, e)),
        }
    }
}

fn fill_and_publish(mut file: File, tmp: &Path, path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    // The umask may have stripped bits from 0600; set it exactly.
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    if overwrite {
        return fs::rename(tmp, path);
    }
    // link(2) fails if `path` exists, so a file that appeared since the check
    // above is never replaced. Filesystems without hard links fall back to a
    // second check and rename.
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(already_exists(path)),
        Err(_) if fs::symlink_metadata(path).is_ok() => Err(already_exists(path)),
        Err(_) => fs::rename(tmp, path),
    }
}

/// Makes the new directory entry durable. Some filesystems cannot fsync a
/// directory (EINVAL); the file itself is already synced, so that is not an
/// error worth failing a key write for.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => Err(e),
        _ => Ok(()),
    }
}

/// io errors do not carry the path; add it so users see which file failed.
/// `AlreadyExists` errors from here already name it.
fn naming(path: &Path, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn already_exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} already exists", path.display()),
    )
}

/// First line of a password file, without the trailing newline (`\n` or
/// `\r\n`); error if empty.
pub fn read_password_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let with_path = |e: io::Error| KeyError::Io(naming(path, e));
    let file = File::open(path).map_err(with_path)?;
    let mut raw = Zeroizing::new(Vec::with_capacity(256));
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(with_path)?;
    let line = match raw.iter().position(|&b| b == b'\n') {
        Some(end) => &raw[..end],
        None if raw.len() as u64 > MAX_PASSWORD_FILE => {
            return Err(KeyError::Malformed(format!(
                "{}: first line longer than {MAX_PASSWORD_FILE} bytes",
                path.display()
            )))
        }
        None => &raw[..],
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(KeyError::EmptyPassword);
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| KeyError::Malformed(format!("{}: password is not UTF-8", path.display())))?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
#[path = "fsutil_tests.rs"]
mod tests;
