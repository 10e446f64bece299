//! `db backup FILE`: the daemon takes a snapshot with SQLite's online
//! backup API and sends its bytes; we write them to a temporary file beside
//! FILE (mode 0600, with the caller's permissions), check size and SHA-256,
//! fsync, and only then rename it to FILE.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dchat_control::api;
use dchat_control::bulk::{Incoming, Upgraded};
use dchat_control::{CallError, Client};
use indicatif::{HumanBytes, ProgressBar};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::progress_bar;
use crate::error::CtlError;
use crate::outln;
use crate::output;

/// Writeback of what was written is started every this many bytes (without
/// waiting for it), so the disk works while the transfer goes on, the
/// final fsync is short, and the daemon's own commits (which fsync too)
/// never queue behind gigabytes of dirty pages.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// A temporary file that is removed unless [`Temp::publish`] succeeds.
struct Temp {
    path: PathBuf,
    published: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates `.<name>.tmp-<n>` beside `target`: mode 0600 from the start,
/// `create_new` so a planted file or symlink is never followed.
fn create_temp(target: &Path) -> Result<(Temp, File), CtlError> {
    let name = target
        .file_name()
        .ok_or_else(|| CtlError::Usage(format!("{}: not a file path", target.display())))?
        .to_string_lossy()
        .into_owned();
    let dir = parent(target);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = (u64::from(std::process::id()) << 32) ^ u64::from(nanos);
    for attempt in 0..100u64 {
        let path = dir.join(format!(".{name}.tmp-{:x}", seed.wrapping_add(attempt)));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => {
                // The umask may have taken bits from 0600; set it exactly.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| write_error(target, &e))?;
                return Ok((Temp { path, published: false }, file));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_error(target, &e)),
        }
    }
    Err(CtlError::Failed(format!(
        "cannot write {}: no free temporary name in {}",
        target.display(),
        dir.display()
    )))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn write_error(target: &Path, e: &std::io::Error) -> CtlError {
    CtlError::Failed(format!("cannot write {}: {e}", target.display()))
}

impl Temp {
    /// Renames the finished temp file to `target`; without `force`, never
    /// over a file that appeared meanwhile (link(2) refuses an existing
    /// name). Then syncs the directory so the new name survives a crash.
    fn publish(mut self, target: &Path, force: bool) -> Result<(), CtlError> {
        if force {
            std::fs::rename(&self.path, target).map_err(|e| write_error(target, &e))?;
        } else {
            match std::fs::hard_link(&self.path, target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.path);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(target)),
                // Filesystems without hard links: check again, then rename.
                Err(_) if std::fs::symlink_metadata(target).is_ok() => return Err(exists(target)),
                Err(_) => std::fs::rename(&self.path, target).map_err(|e| write_error(target, &e))?,
            }
        }
        self.published = true;
        match File::open(parent(target)).and_then(|d| d.sync_all()) {
            Err(e) if e.kind() != ErrorKind::InvalidInput => Err(write_error(target, &e)),
            _ => Ok(()),
        }
    }
}

fn exists(target: &Path) -> CtlError {
    CtlError::Failed(format!("{} exists; pass --force to replace it", target.display()))
}

#[derive(Serialize)]
struct Done<'a> {
    file: String,
    bytes: u64,
    sha256: &'a str,
    duration_ms: u64,
    snapshot_ms: u64,
    schema_version: u32,
    database_id: &'a str,
    chain_id: Option<&'a str>,
    genesis_hash: Option<&'a str>,
}

pub async fn run(socket: &Path, target: &Path, force: bool, json: bool) -> Result<u8, CtlError> {
    if !force && std::fs::symlink_metadata(target).is_ok() {
        return Err(exists(target));
    }
    let started = Instant::now();
    // Made before the daemon is asked for anything: an unwritable place
    // fails at once, with nothing to clean up on either side.
    let (temp, file) = create_temp(target)?;
    let client = Client::connect(socket).await?;
    let (start, mut up): (api::BackupStart, Upgraded) = client.call_upgrade(api::DB_BACKUP, &api::Empty {}).await?;
    let bar = progress_bar(start.bytes, json);
    bar.set_message("snapshot");
    let transfer = receive(&mut up, file, target, &bar);
    let summary = tokio::select! {
        r = transfer => r,
        _ = tokio::signal::ctrl_c() => Err(CtlError::Failed("interrupted; no backup was written".into())),
    };
    bar.finish_and_clear();
    let summary = summary?;
    temp.publish(target, force)?;
    let elapsed = started.elapsed();

    if json {
        output::json(&Done {
            file: target.display().to_string(),
            bytes: summary.bytes,
            sha256: &summary.sha256,
            duration_ms: millis(elapsed),
            snapshot_ms: summary.snapshot_ms,
            schema_version: summary.schema_version,
            database_id: &summary.database_id,
            chain_id: summary.chain_id.as_deref(),
            genesis_hash: summary.genesis_hash.as_deref(),
        })?;
    } else {
        outln!("backup written to {} (mode 0600)", target.display())?;
        output::fields(&[
            (
                "size",
                format!("{} ({} bytes)", HumanBytes(summary.bytes), summary.bytes),
            ),
            ("duration", format!("{:.2} s", elapsed.as_secs_f64())),
            ("sha256", summary.sha256.clone()),
            ("schema version", summary.schema_version.to_string()),
        ])?;
    }
    Ok(0)
}

/// Receives the snapshot into `file`, checks it, and fsyncs it.
async fn receive(
    up: &mut Upgraded,
    mut file: File,
    target: &Path,
    bar: &ProgressBar,
) -> Result<api::BackupSummary, CtlError> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    let mut written = 0u64;
    let (mut previous_window, mut window) = (0u64, 0u64);
    let mut transferring = false;
    let summary = loop {
        match up.receive().await.map_err(lost)? {
            Incoming::Data(n) => {
                if !transferring {
                    transferring = true;
                    bar.set_message("transfer");
                    bar.set_position(0);
                }
                buf.resize(n, 0);
                up.receive_data(&mut buf).await.map_err(lost)?;
                hasher.update(&buf);
                file.write_all(&buf).map_err(|e| write_error(target, &e))?;
                written += n as u64;
                if written - window >= WRITEBACK_EVERY {
                    start_writeback(&file, previous_window, written);
                    previous_window = window;
                    window = written;
                }
                bar.set_position(written);
            }
            Incoming::Message(m) => {
                let parameters = m.parameters_object();
                if let Some(error) = m.error {
                    return Err(CallError::Remote { error, parameters }.into());
                }
                let message: api::DaemonMessage = serde_json::from_value(parameters)
                    .map_err(|e| CtlError::Failed(format!("unexpected message from dchatd: {e}")))?;
                if let Some(p) = message.progress {
                    bar.set_length(p.total.max(1));
                    bar.set_position(p.done);
                } else if let Some(summary) = message.backup {
                    break summary;
                }
            }
        }
    };
    if written != summary.bytes {
        return Err(CtlError::Failed(format!(
            "received {written} bytes but dchatd sent a {}-byte snapshot; no backup was written",
            summary.bytes
        )));
    }
    let sha256 = hex(&hasher.finalize());
    if sha256 != summary.sha256 {
        return Err(CtlError::Failed(format!(
            "the snapshot changed in transit (SHA-256 {sha256}, dchatd sent {}); no backup was written",
            summary.sha256
        )));
    }
    file.sync_all().map_err(|e| write_error(target, &e))?;
    Ok(summary)
}

/// POSIX_FADV_DONTNEED makes Linux start writing the dirty pages of the
/// range back without waiting, and drop those already clean: here, the
/// window before the last one. Only advice: errors are ignored, and the
/// final fsync is what makes the file durable.
fn start_writeback(file: &File, from: u64, to: u64) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

fn lost(e: dchat_control::bulk::BulkError) -> CtlError {
    CtlError::Call(CallError::Io(std::io::Error::other(format!(
        "{e} during the transfer; no file was written"
    ))))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
