//! `db restore FILE`: live, by sending the file to the daemon, which
//! verifies it and swaps it in; or `--offline`, by running
//! `dchatd --restore`, which does the same into a stopped node's state
//! directory. Either way FILE is read with the caller's own permissions.

use std::io::Read;
use std::path::Path;

use dchat_control::api;
use dchat_control::bulk::{Incoming, CHUNK};
use dchat_control::{CallError, Client, Reply};
use indicatif::HumanBytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::backup::hex;
use super::{network, progress_bar};
use crate::error::CtlError;
use crate::outln;
use crate::output;

pub async fn live(socket: &Path, path: &Path, force: bool, json: bool) -> Result<u8, CtlError> {
    let read_err = |e: std::io::Error| CtlError::Failed(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(CtlError::Failed(format!("{} is not a regular file", path.display())));
    }
    let bytes = meta.len();
    let client = Client::connect(socket).await?;
    let params = api::RestoreParams {
        bytes,
        force: force.then_some(true),
    };
    let (_, mut up): (api::Empty, _) = client.call_upgrade(api::DB_RESTORE, &params).await?;
    let bar = progress_bar(bytes, json);
    bar.set_message("sending");
    let work = async {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let want = usize::try_from((bytes - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            file.read_exact(chunk).map_err(read_err)?;
            hasher.update(&*chunk);
            up.send_data(chunk)
                .await
                .map_err(|e| CtlError::Call(CallError::Io(e)))?;
            sent += want as u64;
            bar.set_position(sent);
        }
        up.send_message(&Reply::ok(json!({ "sha256": hex(&hasher.finalize()) })))
            .await
            .map_err(|e| CtlError::Call(CallError::Io(e)))?;
        bar.set_message("verifying");
        loop {
            let Incoming::Message(m) = up.receive().await.map_err(lost)? else {
                return Err(CtlError::Failed("dchatd sent data during a restore".into()));
            };
            let parameters = m.parameters_object();
            if let Some(error) = m.error {
                return Err(CallError::Remote { error, parameters }.into());
            }
            let message: api::DaemonMessage = serde_json::from_value(parameters)
                .map_err(|e| CtlError::Failed(format!("unexpected message from dchatd: {e}")))?;
            if let Some(report) = message.restored {
                return Ok(report);
            }
        }
    };
    let report = tokio::select! {
        r = work => r,
        // The daemon discards a partial upload; nothing changes.
        _ = tokio::signal::ctrl_c() => Err(CtlError::Failed("interrupted; nothing was restored".into())),
    };
    bar.finish_and_clear();
    print_report(&report?, path, json)?;
    Ok(0)
}

fn lost(e: dchat_control::bulk::BulkError) -> CtlError {
    CtlError::Call(CallError::Io(std::io::Error::other(format!(
        "{e}; check `dchatctl db check` and the daemon's log for whether the restore happened"
    ))))
}

pub(super) fn print_report(r: &api::RestoreReport, path: &Path, json: bool) -> Result<(), CtlError> {
    if json {
        return output::json(r);
    }
    outln!("restored {}", path.display())?;
    output::fields(&[
        ("size", format!("{} ({} bytes)", HumanBytes(r.bytes), r.bytes)),
        ("sha256", r.sha256.clone()),
        ("schema version", r.schema_version.to_string()),
        ("database id", r.database_id.clone()),
        ("network", network(r.chain_id.as_deref(), r.genesis_hash.as_deref())),
        ("created", r.created_at.clone()),
        (
            "previous database",
            r.previous
                .clone()
                .map_or("none".into(), |p| format!("{p} (remove it once satisfied)")),
        ),
        ("duration", format!("{:.2} s", r.duration_ms as f64 / 1000.0)),
    ])?;
    let rows: Vec<Vec<String>> = r
        .tables
        .iter()
        .map(|t| vec![t.name.clone(), t.rows.to_string()])
        .collect();
    output::table(&["TABLE", "ROWS"], &rows)?;
    Ok(())
}

/// `--offline`: the stopped node's own daemon binary does the work, so the
/// checks and the swap are exactly those of a live restore.
pub fn offline(
    path: &Path,
    force: bool,
    config: Option<&Path>,
    state_dir: Option<&Path>,
    dev: bool,
    json: bool,
) -> Result<u8, CtlError> {
    let dchatd = dchatd_binary();
    let mut cmd = std::process::Command::new(&dchatd);
    cmd.arg("--restore").arg(path);
    if force {
        cmd.arg("--force");
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if let Some(d) = state_dir {
        cmd.arg("--state-dir").arg(d);
    }
    if dev {
        cmd.arg("--dev");
    }
    if json {
        cmd.arg("--json");
    }
    let status = cmd
        .status()
        .map_err(|e| CtlError::Failed(format!("cannot run {}: {e}", dchatd.display())))?;
    // dchatd printed the report or the one-line error itself.
    Ok(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
}

/// `dchatd` beside this dchatctl (as packaged and as cargo builds them),
/// else from PATH.
fn dchatd_binary() -> std::path::PathBuf {
    if let Ok(me) = std::env::current_exe() {
        let beside = me.with_file_name("dchatd");
        if beside.is_file() {
            return beside;
        }
    }
    "dchatd".into()
}
