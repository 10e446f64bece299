//! `testnet status DIR`: role, pid, height and peers of every node.
//!
//! A node counts as running when its pid file names a live dchatd; height
//! and peers come from `io.dchat.Daemon.Status` on its control socket,
//! asked of all running nodes at once so one slow node delays the table by
//! at most [`ASK_TIMEOUT`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use dchat_control::api;
use serde::Serialize;
use tokio::task::JoinSet;

use super::manifest::{Manifest, NodePaths, Role};
use super::process;
use crate::commands::call;
use crate::error::CtlError;
use crate::output;

const ASK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
struct Row {
    node: String,
    role: Role,
    pid: Option<i32>,
    running: bool,
    /// Whether the daemon says it is ready; None when it did not answer.
    ready: Option<bool>,
    height: Option<u64>,
    peers: Option<u64>,
    socket: PathBuf,
    /// Why a running node gave no figures.
    error: Option<String>,
}

pub async fn run(dir: &Path, json: bool) -> Result<u8, CtlError> {
    let (dir, manifest) = Manifest::load(dir)?;
    let mut rows: Vec<Row> = manifest
        .nodes
        .iter()
        .map(|node| {
            let paths = NodePaths::new(&dir, &node.name);
            let pid = process::running_pid(&paths.pid, &paths.config);
            Row {
                node: node.name.clone(),
                role: node.role,
                pid,
                running: pid.is_some(),
                ready: None,
                height: None,
                peers: None,
                socket: paths.socket,
                error: None,
            }
        })
        .collect();

    let mut asks = JoinSet::new();
    for (i, row) in rows.iter().enumerate().filter(|(_, r)| r.running) {
        let socket = row.socket.clone();
        asks.spawn(async move { (i, ask(socket).await) });
    }
    while let Some(joined) = asks.join_next().await {
        // A panicked task would be a bug in `ask`; its row keeps "-".
        let Ok((i, answer)) = joined else { continue };
        let Some(row) = rows.get_mut(i) else { continue };
        match answer {
            Ok(s) => {
                row.ready = Some(s.ready);
                row.height = Some(s.height);
                row.peers = Some(s.peers);
            }
            Err(e) => row.error = Some(e),
        }
    }

    if json {
        output::json(&rows)?;
    } else {
        print_table(&rows)?;
    }
    Ok(0)
}

async fn ask(socket: PathBuf) -> Result<api::Status, String> {
    match tokio::time::timeout(ASK_TIMEOUT, call(&socket, api::STATUS, &api::Empty {})).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.message()),
        Err(_) => Err(format!("no answer within {} s", ASK_TIMEOUT.as_secs())),
    }
}

fn print_table(rows: &[Row]) -> Result<(), CtlError> {
    let dash = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let note = match (&r.error, r.ready) {
                (Some(e), _) => e.clone(),
                (None, Some(false)) => "starting".into(),
                _ => String::new(),
            };
            vec![
                r.node.clone(),
                r.role.as_str().into(),
                r.pid.map_or("stopped".into(), |p| p.to_string()),
                dash(r.height),
                dash(r.peers),
                note,
            ]
        })
        .collect();
    output::table(&["NODE", "ROLE", "PID", "HEIGHT", "PEERS", "NOTE"], &table)
}
