//! io.dchat.Database: Migrate and Check are plain calls; Backup and Restore
//! are called with `upgrade` and then move the file over the connection
//! with `dchat_control::bulk` (ADR 0006). The daemon never opens a path the
//! caller names: dchatctl reads and writes the caller's files itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dchat_control::api::{self, db_errors};
use dchat_control::bulk::{self, Incoming};
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::OwnedRwLockReadGuard;
use tokio_util::sync::CancellationToken;

use crate::control::conn::{Conn, Limits};
use crate::control::dispatch::{encode, invalid_parameter, parse, service_error, Flow};
use crate::control::fd_passing;
use crate::service::database::{BackupJob, DbOpError, RestoreJob};
use crate::service::Node;
use crate::storage::backup::Snapshot;
use crate::storage::restore::RestoreError;

pub async fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::DB_MIGRATE => {
            parse::<api::Empty>(params)?;
            encode(node.db_migrate().await.map_err(service_error)?)
        }
        api::DB_CHECK => {
            parse::<api::Empty>(params)?;
            encode(node.db_check().await.map_err(db_error)?)
        }
        api::DB_BACKUP | api::DB_RESTORE => Err(Reply::error(db_errors::EXPECTED_UPGRADE, json!({}))),
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}

/// Whether `method` takes the connection over when called with `upgrade`.
pub fn upgrades(method: &str) -> bool {
    matches!(method, api::DB_BACKUP | api::DB_RESTORE)
}

/// Serves an upgraded call. The connection cannot return to Varlink
/// afterwards, so it is closed in every case but an error reply sent
/// before the upgrade took effect.
pub async fn upgraded(
    node: &Arc<Node>,
    conn: &mut Conn,
    method: &str,
    params: Value,
    shutdown: &CancellationToken,
) -> Flow {
    match method {
        api::DB_BACKUP => backup(node, conn, params, shutdown).await,
        api::DB_RESTORE => restore(node, conn, params, shutdown).await,
        _ => send_plain(conn, invalid_parameter("upgrade")).await,
    }
}

async fn send_plain(conn: &mut Conn, reply: Reply) -> Flow {
    if conn.send(&reply).await.is_ok() {
        Flow::Continue
    } else {
        Flow::Close
    }
}

type Reader = BufReader<OwnedReadHalf>;
type Writer = OwnedWriteHalf;

/// Sends one bulk message, bounded by the idle timeout.
async fn send(writer: &mut Writer, limits: Limits, message: &Reply) -> Result<(), ()> {
    match tokio::time::timeout(limits.idle_timeout, bulk::send_message(writer, message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "client went away during a database transfer");
            Err(())
        }
        Err(_) => {
            tracing::info!("client stopped reading during a database transfer");
            Err(())
        }
    }
}

fn progress(phase: &str, done: u64, total: u64) -> Reply {
    let mut r = Reply::ok(json!({ "progress": api::Progress { phase: phase.into(), done, total } }));
    r.continues = true;
    r
}

async fn backup(node: &Arc<Node>, conn: &mut Conn, params: Value, shutdown: &CancellationToken) -> Flow {
    let params = match parse::<api::BackupParams>(params) {
        Ok(p) => p,
        Err(reply) => return send_plain(conn, reply).await,
    };
    let started = Instant::now();
    let into_descriptor = params.file_descriptor.unwrap_or(false);
    let job = match node.begin_backup(into_descriptor).await {
        Ok(job) => job,
        Err(e) => return send_plain(conn, db_error(e)).await,
    };
    let start = job.start_reply();
    let Ok(value) = encode(&start) else { return Flow::Close };
    if conn.send(&Reply::ok(value)).await.is_err() {
        return Flow::Close;
    }
    let (reader, writer, limits) = conn.upgraded();
    let dest = if into_descriptor {
        match fd_passing::receive_file(reader, limits.idle_timeout).await {
            Ok(file) => Some(file),
            Err(fd_passing::FdError::Closed) => {
                tracing::info!("backup abandoned: the client went away");
                return Flow::Close;
            }
            Err(e) => {
                tracing::warn!(error = %e, "backup refused");
                let failed = Reply::error(db_errors::BACKUP_FAILED, json!({ "reason": e.to_string() }));
                if let fd_passing::FdError::NotOne(files) = e {
                    node.keep_if_own(files).await;
                }
                let _ = send(writer, limits, &failed).await;
                return Flow::Close;
            }
        }
    } else {
        None
    };
    tracing::info!(bytes = start.bytes, into_descriptor = dest.is_some(), "backup started");
    let mut client = Client {
        reader,
        writer,
        limits,
        shutdown,
    };
    let sent = async {
        match dest {
            Some(dest) => write_backup(job, dest, &mut client, started).await,
            None => {
                let snapshot = take_snapshot(job, &mut client, start.page_size).await?;
                stream_backup(snapshot, &mut client, started).await
            }
        }
    };
    let sent = sent.await;
    let Client { writer, .. } = client;
    match sent {
        Ok(summary) => {
            tracing::info!(
                bytes = summary.bytes,
                sha256 = %summary.sha256,
                duration_ms = summary.duration_ms,
                "backup written"
            );
            let _ = send(writer, limits, &Reply::ok(json!({ "backup": summary }))).await;
        }
        Err(Some(reason)) => {
            tracing::warn!(reason = %reason, "backup failed");
            let failed = Reply::error(db_errors::BACKUP_FAILED, json!({ "reason": reason }));
            let _ = send(writer, limits, &failed).await;
        }
        Err(None) => tracing::info!("backup abandoned: the client went away"),
    }
    Flow::Close
}

/// The upgraded connection of a backup.
struct Client<'a> {
    reader: &'a mut Reader,
    writer: &'a mut Writer,
    limits: Limits,
    shutdown: &'a CancellationToken,
}

/// A snapshot ready to go out, with the gate that keeps restores away.
struct Taken {
    snapshot: Snapshot,
    _gate: OwnedRwLockReadGuard<()>,
    snapshot_ms: u64,
}

/// How far a backup has come: phase, bytes done, bytes in all.
type Step = (&'static str, u64, u64);

/// Awaits `work` while sending its progress as messages; sets `cancel` when the client goes away or the daemon stops.
/// `Err(None)`: the client is gone.
async fn with_progress<T>(
    work: impl std::future::Future<Output = T>,
    mut updates: tokio::sync::watch::Receiver<Step>,
    cancel: &AtomicBool,
    client: &mut Client<'_>,
) -> Result<T, Option<String>> {
    let Client {
        reader,
        writer,
        limits,
        shutdown,
    } = client;
    let limits = *limits;
    tokio::pin!(work);
    let mut client_gone = false;
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            changed = updates.changed(), if !client_gone => {
                if changed.is_ok() {
                    let (phase, done, total) = *updates.borrow_and_update();
                    let message = progress(phase, done, total);
                    if send(writer, limits, &message).await.is_err() {
                        client_gone = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
            // The client has nothing to say during a backup: data or EOF
            // both mean it gave up.
            _ = reader.fill_buf(), if !client_gone => {
                client_gone = true;
                cancel.store(true, Ordering::Relaxed);
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                cancel.store(true, Ordering::Relaxed);
            }
        }
    };
    if client_gone {
        return Err(None);
    }
    if stopping {
        return Err(Some("the daemon is shutting down".into()));
    }
    Ok(result)
}

/// Takes the snapshot with SQLite's backup API, reporting progress.
async fn take_snapshot(job: BackupJob, client: &mut Client<'_>, page_size: u64) -> Result<Taken, Option<String>> {
    let started = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(("snapshot", 0, 0));
    let run = job.run(Arc::clone(&cancel), move |done, total| {
        let _ = tx.send(("snapshot", done * page_size, total * page_size));
    });
    let result = with_progress(run, rx, &cancel, client).await?;
    let (snapshot, gate) = result.map_err(|e| Some(e.to_string()))?;
    Ok(Taken {
        snapshot,
        _gate: gate,
        snapshot_ms: millis(started.elapsed()),
    })
}

fn summary(snapshot: &Snapshot, bytes: u64, sha256: String, snapshot_ms: u64, started: Instant) -> api::BackupSummary {
    api::BackupSummary {
        bytes,
        sha256,
        schema_version: snapshot.schema_version,
        page_size: snapshot.page_size,
        pages: snapshot.pages,
        database_id: snapshot.database_id.clone(),
        chain_id: snapshot.chain_id.clone(),
        genesis_hash: snapshot.genesis_hash.clone(),
        snapshot_ms,
        duration_ms: millis(started.elapsed()),
    }
}

/// Takes the snapshot and writes it into the client's file.
async fn write_backup(
    job: BackupJob,
    dest: std::fs::File,
    client: &mut Client<'_>,
    started: Instant,
) -> Result<api::BackupSummary, Option<String>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(("write", 0, 0));
    let run = job.run_into(dest, Arc::clone(&cancel), move |done, total| {
        let _ = tx.send(("write", done, total));
    });
    let result = with_progress(run, rx, &cancel, client).await?;
    let (written, _gate) = result.map_err(|e| Some(e.to_string()))?;
    let snapshot = &written.snapshot;
    let copy = if written.file_alone {
        "the database file, checkpointed and held still"
    } else {
        "SQLite's backup API"
    };
    tracing::info!(copy, "backup copied");
    Ok(summary(
        snapshot,
        snapshot.bytes,
        written.sha256.clone(),
        millis(snapshot.elapsed),
        started,
    ))
}

/// Sends the snapshot as data messages.
async fn stream_backup(
    taken: Taken,
    client: &mut Client<'_>,
    started: Instant,
) -> Result<api::BackupSummary, Option<String>> {
    let (writer, limits, shutdown) = (&mut *client.writer, client.limits, client.shutdown);
    let Taken {
        snapshot, snapshot_ms, ..
    } = &taken;
    // A blocking thread reads and hashes the next chunks while this task
    // sends the current one.
    let path = snapshot.file.path().to_owned();
    let (tx, mut chunks) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::task::spawn_blocking(move || read_hashed(&path, &tx));
    let mut sent = 0u64;
    while let Some(chunk) = chunks.recv().await {
        if shutdown.is_cancelled() {
            return Err(Some("the daemon is shutting down".into()));
        }
        match tokio::time::timeout(limits.idle_timeout, bulk::send_data(writer, &chunk)).await {
            Ok(Ok(())) => {}
            _ => return Err(None),
        }
        sent += chunk.len() as u64;
    }
    let sha256 = reader
        .await
        .map_err(|e| Some(format!("snapshot reader failed: {e}")))?
        .map_err(|e| Some(format!("{}: {e}", snapshot.file.path().display())))?;
    if sent != snapshot.bytes {
        return Err(Some(format!("sent {sent} bytes of a {}-byte snapshot", snapshot.bytes)));
    }
    Ok(summary(snapshot, sent, sha256, *snapshot_ms, started))
}

async fn restore(node: &Arc<Node>, conn: &mut Conn, params: Value, shutdown: &CancellationToken) -> Flow {
    let p: api::RestoreParams = match parse(params) {
        Ok(p) => p,
        Err(reply) => return send_plain(conn, reply).await,
    };
    let force = p.force.unwrap_or(false);
    let job = match node.begin_restore(p.bytes).await {
        Ok(job) => job,
        Err(e) => return send_plain(conn, db_error(e)).await,
    };
    if conn.send(&Reply::ok(json!({}))).await.is_err() {
        return Flow::Close;
    }
    tracing::info!(bytes = p.bytes, force, "restore started: receiving the file");
    let (reader, writer, limits) = conn.upgraded();
    let sha256 = match receive_file(&job, reader, limits, p.bytes, shutdown).await {
        Ok(sha) => sha,
        Err(Some(e)) => {
            tracing::warn!(error = %e, "restore refused");
            let _ = send(writer, limits, &db_error(e)).await;
            return Flow::Close;
        }
        Err(None) => {
            tracing::info!("restore abandoned: the client went away");
            return Flow::Close;
        }
    };
    if send(writer, limits, &progress("verify", 0, p.bytes)).await.is_err() {
        return Flow::Close;
    }
    let reply = match node.finish_restore(job, sha256, force).await {
        Ok(report) => Reply::ok(json!({ "restored": report })),
        Err(e) => {
            tracing::warn!(error = %e, "restore refused or failed");
            db_error(e)
        }
    };
    let _ = send(writer, limits, &reply).await;
    Flow::Close
}

/// Receives the file into the job's temporary file and checks it arrived
/// whole; returns its SHA-256. `Err(None)`: the client is gone.
async fn receive_file(
    job: &RestoreJob,
    reader: &mut Reader,
    limits: Limits,
    expected: u64,
    shutdown: &CancellationToken,
) -> Result<String, Option<DbOpError>> {
    let path = job.file.path();
    let io_failed = |e: std::io::Error| Some(RestoreError::Failed(format!("{}: {e}", path.display())).into());
    let invalid = |why: String| Some(DbOpError::from(RestoreError::Invalid(why)));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(io_failed)?;
    let mut hasher = Sha256::new();
    let mut frame = Vec::new();
    let mut buf = Vec::new();
    let mut received = 0u64;
    let claimed = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Err(Some(crate::service::ServiceError::ShuttingDown.into())),
            r = tokio::time::timeout(limits.idle_timeout, bulk::receive(reader, &mut frame, limits.max_frame)) => r,
        };
        match next {
            Ok(Ok(Incoming::Data(n))) => {
                if received + n as u64 > expected {
                    return Err(invalid(format!(
                        "the client sent more than the {expected} bytes it announced"
                    )));
                }
                buf.resize(n, 0);
                if bulk::receive_data(reader, &mut buf).await.is_err() {
                    return Err(None);
                }
                hasher.update(&buf);
                file.write_all(&buf).await.map_err(io_failed)?;
                received += n as u64;
            }
            Ok(Ok(Incoming::Message(message))) => {
                if message.error.is_some() {
                    return Err(None);
                }
                match serde_json::from_value::<api::RestoreEnd>(message.parameters_object()) {
                    Ok(end) => break end.sha256,
                    Err(e) => return Err(invalid(format!("unexpected message from the client: {e}"))),
                }
            }
            Ok(Err(_)) | Err(_) => return Err(None),
        }
    };
    if received != expected {
        return Err(invalid(format!(
            "received {received} of the {expected} bytes announced"
        )));
    }
    file.sync_all().await.map_err(io_failed)?;
    drop(file);
    let sha256 = hex::encode(hasher.finalize());
    if !sha256.eq_ignore_ascii_case(claimed.trim()) {
        return Err(invalid(format!(
            "the file changed in transit: its SHA-256 is {sha256}, the client read {claimed}"
        )));
    }
    Ok(sha256)
}

/// Reads `path` in chunks for the sender, hashing as it goes; returns the
/// SHA-256 of everything read. Stops early (without error) when the
/// receiving side is gone.
fn read_hashed(path: &std::path::Path, tx: &tokio::sync::mpsc::Sender<Vec<u8>>) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let mut buf = vec![0u8; bulk::CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(buf.get_mut(filled..).unwrap_or_default())? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(&buf);
        if tx.blocking_send(buf).is_err() {
            break;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The one place database-operation errors become wire errors.
pub fn db_error(e: DbOpError) -> Reply {
    match e {
        DbOpError::Busy(operation) => Reply::error(db_errors::BUSY, json!({ "operation": operation })),
        DbOpError::NoSpace {
            path,
            needed,
            available,
        } => Reply::error(
            db_errors::NO_SPACE,
            json!({ "path": path.display().to_string(), "needed": needed, "available": available }),
        ),
        DbOpError::BackupFailed(reason) => Reply::error(db_errors::BACKUP_FAILED, json!({ "reason": reason })),
        DbOpError::Restore(RestoreError::Invalid(reason)) => {
            Reply::error(db_errors::INVALID_BACKUP, json!({ "reason": reason }))
        }
        DbOpError::Restore(RestoreError::SchemaTooNew { found, supported }) => Reply::error(
            db_errors::SCHEMA_TOO_NEW,
            json!({ "found": found, "supported": supported }),
        ),
        DbOpError::Restore(RestoreError::WrongNetwork { expected, found }) => Reply::error(
            db_errors::WRONG_NETWORK,
            json!({ "expected": expected, "found": found }),
        ),
        DbOpError::Restore(RestoreError::Failed(reason)) => {
            tracing::error!(reason = %reason, "restore failed");
            Reply::error(db_errors::RESTORE_FAILED, json!({ "reason": reason }))
        }
        DbOpError::Service(e) => service_error(e),
    }
}
