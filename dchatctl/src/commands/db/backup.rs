//! `db backup FILE`: we create a temporary file beside FILE (mode 0600,
//! with the caller's permissions) and hand its descriptor to the daemon,
//! which pins a consistent snapshot, writes it into the file (as a copy
//! of the checkpointed database file when that alone is the snapshot,
//! through SQLite's online backup API otherwise; ADR 0006) and fsyncs it;
//! we check the size and only then rename the file to FILE.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dchat_control::api;
use dchat_control::bulk::{Incoming, Upgraded};
use dchat_control::{CallError, Client};
use indicatif::{HumanBytes, ProgressBar};
use serde::Serialize;

use super::progress_bar;
use crate::error::CtlError;
use crate::outln;
use crate::output;

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
        // Read and write: dchatd hashes the file it wrote by reading it back.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
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

/// Refuses a FILE that is the node's own database (or its `-wal` or
/// `-shm`), named by mistake with `--force`: the rename would pull the
/// file from under the daemon. Another name for the same file (a hard
/// link) is refused too; a symbolic link is not, since the rename
/// replaces the link and not what it points to.
async fn refuse_the_live_database(socket: &Path, target: &Path) -> Result<(), CtlError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(named) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    let status: api::Status = crate::commands::call(socket, api::STATUS, &api::Empty {}).await?;
    let db = Path::new(&status.state_dir).join("dchat.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let mut live = db.as_os_str().to_owned();
        live.push(suffix);
        // The state directory may be closed to the caller: then so is
        // the rename into it.
        if let Ok(live) = std::fs::metadata(&live) {
            if (live.dev(), live.ino()) == (named.dev(), named.ino()) {
                return Err(CtlError::Failed(format!(
                    "{} is the node's live database; back up to another name",
                    target.display()
                )));
            }
        }
    }
    Ok(())
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
    refuse_the_live_database(socket, target).await?;
    let started = Instant::now();
    // Made before the daemon is asked for anything: an unwritable place
    // fails at once, with nothing to clean up on either side.
    let (temp, file) = create_temp(target)?;
    let client = Client::connect(socket).await?;
    let params = api::BackupParams {
        file_descriptor: Some(true),
    };
    let (start, mut up): (api::BackupStart, Upgraded) = client.call_upgrade(api::DB_BACKUP, &params).await?;
    send_file(&up, &file).await?;
    let bar = progress_bar(start.bytes, json);
    bar.set_message("snapshot");
    let transfer = follow(&mut up, &file, target, &bar);
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

/// Hands the temporary file to the daemon: one byte carrying its
/// descriptor (`SCM_RIGHTS`). The daemon writes the snapshot into it, so
/// the bytes cross no socket and are written once.
async fn send_file(up: &Upgraded, file: &File) -> Result<(), CtlError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let socket = up.socket();
    let fds = [file.as_raw_fd()];
    loop {
        socket.writable().await.map_err(|e| lost_io(&e))?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(b"F")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(lost_io(&std::io::Error::other("the descriptor was not sent"))),
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(lost_io(&e)),
        }
    }
}

/// Follows the daemon's progress until its summary, then checks the file
/// holds what the summary says and fsyncs it.
async fn follow(
    up: &mut Upgraded,
    file: &File,
    target: &Path,
    bar: &ProgressBar,
) -> Result<api::BackupSummary, CtlError> {
    let mut phase = String::from("snapshot");
    let summary = loop {
        match up.receive().await.map_err(lost)? {
            Incoming::Data(_) => {
                return Err(CtlError::Failed(
                    "dchatd sent data instead of writing the file; is it older than this dchatctl?".into(),
                ))
            }
            Incoming::Message(m) => {
                let parameters = m.parameters_object();
                if let Some(error) = m.error {
                    return Err(CallError::Remote { error, parameters }.into());
                }
                let message: api::DaemonMessage = serde_json::from_value(parameters)
                    .map_err(|e| CtlError::Failed(format!("unexpected message from dchatd: {e}")))?;
                if let Some(p) = message.progress {
                    if p.phase != phase {
                        bar.set_message(p.phase.clone());
                        phase = p.phase;
                    }
                    bar.set_length(p.total.max(1));
                    bar.set_position(p.done);
                } else if let Some(summary) = message.backup {
                    break summary;
                }
            }
        }
    };
    let written = file.metadata().map_err(|e| write_error(target, &e))?.len();
    if written != summary.bytes {
        return Err(CtlError::Failed(format!(
            "the file holds {written} bytes but dchatd reports a {}-byte snapshot; no backup was written",
            summary.bytes
        )));
    }
    // dchatd has fsynced the data; this makes sure of the file's metadata.
    file.sync_all().map_err(|e| write_error(target, &e))?;
    Ok(summary)
}

fn lost(e: dchat_control::bulk::BulkError) -> CtlError {
    CtlError::Call(CallError::Io(std::io::Error::other(format!(
        "{e} during the backup; no file was written"
    ))))
}

fn lost_io(e: &std::io::Error) -> CtlError {
    CtlError::Call(CallError::Io(std::io::Error::other(format!(
        "{e} while handing the file to dchatd; no file was written"
    ))))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
