//! `db …` (also spelled `database …`): migrate, check, backup, restore.
//!
//! Backup and restore go over the control socket (ADR 0006): dchatctl
//! opens the caller's files with the caller's own permissions, hands a
//! backup's file to the daemon as a descriptor and sends a restore's bytes;
//! the daemon never sees a path.

mod backup;
mod restore;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use dchat_control::api;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::call;
use crate::error::CtlError;
use crate::outln;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Show applied and pending schema migrations, and apply the pending ones
    Migrate,
    /// Check integrity and foreign keys; show sizes, the WAL and row counts (exit 1 if not ok)
    Check,
    /// Write a consistent snapshot of the running node's database to FILE (mode 0600)
    Backup {
        /// File to write; refused if it exists, unless --force
        file: PathBuf,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Verify a backup, then make it the node's database (the previous one is kept beside it)
    Restore {
        /// Backup file, as written by `db backup`
        file: PathBuf,
        /// Restore a backup of another network too
        #[arg(long)]
        force: bool,
        /// The daemon is stopped: restore straight into its state directory (runs `dchatd --restore`)
        #[arg(long)]
        offline: bool,
        /// With --offline: the node's configuration file
        #[arg(long, value_name = "FILE", requires = "offline")]
        config: Option<PathBuf>,
        /// With --offline: the node's state directory
        #[arg(long, value_name = "DIR", requires = "offline")]
        state_dir: Option<PathBuf>,
        /// With --offline: the node is a `dchatd --dev` node
        #[arg(long, requires = "offline")]
        dev: bool,
    },
}

pub async fn run(cmd: &DbCommand, socket: &Path, json: bool) -> Result<u8, CtlError> {
    match cmd {
        DbCommand::Migrate => migrate(socket, json).await,
        DbCommand::Check => check(socket, json).await,
        DbCommand::Backup { file, force } => backup::run(socket, file, *force, json).await,
        DbCommand::Restore {
            file,
            force,
            offline: false,
            ..
        } => restore::live(socket, file, *force, json).await,
        DbCommand::Restore {
            file,
            force,
            offline: true,
            config,
            state_dir,
            dev,
        } => restore::offline(file, *force, config.as_deref(), state_dir.as_deref(), *dev, json),
    }
}

async fn migrate(socket: &Path, json: bool) -> Result<u8, CtlError> {
    let r: api::MigrateReply = call(socket, api::DB_MIGRATE, &api::Empty {}).await?;
    if json {
        output::json(&r)?;
        return Ok(0);
    }
    outln!(
        "schema version {} (this dchatd supports {})",
        r.schema_version,
        r.supported
    )?;
    let state = |m: &api::MigrationInfo| {
        if r.migrated.contains(m) {
            "applied now"
        } else if r.applied.contains(m) {
            "applied"
        } else {
            "pending"
        }
    };
    let mut all: Vec<&api::MigrationInfo> = r.applied.iter().chain(r.pending.iter()).collect();
    all.sort_by_key(|m| m.version);
    all.dedup_by_key(|m| m.version);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| vec![m.version.to_string(), m.name.clone(), state(m).to_string()])
        .collect();
    output::table(&["VERSION", "NAME", "STATE"], &rows)?;
    if r.pending.is_empty() {
        outln!("no pending migrations")?;
    } else {
        outln!("applied {} pending migration(s)", r.migrated.len())?;
    }
    Ok(0)
}

async fn check(socket: &Path, json: bool) -> Result<u8, CtlError> {
    let r: api::CheckReply = call(socket, api::DB_CHECK, &api::Empty {}).await?;
    if json {
        output::json(&r)?;
    } else {
        let fk = if r.foreign_key_violations.is_empty() {
            "ok".to_string()
        } else {
            format!("{} violations", r.foreign_key_violations.len())
        };
        output::fields(&[
            ("integrity", r.integrity.join("; ")),
            ("foreign keys", fk),
            ("schema version", r.schema_version.to_string()),
            ("database id", r.database_id.clone()),
            ("network", network(r.chain_id.as_deref(), r.genesis_hash.as_deref())),
            ("created", r.created_at.clone()),
            (
                "file",
                format!(
                    "{} ({} pages of {} bytes, {} free)",
                    HumanBytes(r.file_bytes),
                    r.page_count,
                    r.page_size,
                    r.freelist_count
                ),
            ),
            ("write-ahead log", HumanBytes(r.wal_bytes).to_string()),
        ])?;
        for v in &r.foreign_key_violations {
            outln!(
                "  foreign key: {} row {} -> {}",
                v.table,
                v.rowid.map_or("?".into(), |id| id.to_string()),
                v.parent
            )?;
        }
        outln!()?;
        let rows: Vec<Vec<String>> = r
            .tables
            .iter()
            .map(|t| vec![t.name.clone(), t.rows.to_string()])
            .collect();
        output::table(&["TABLE", "ROWS"], &rows)?;
        if !r.kept.is_empty() {
            outln!()?;
            outln!("kept beside it (remove once no longer needed):")?;
            for k in &r.kept {
                outln!("  {}  {}", k.path, HumanBytes(k.bytes))?;
            }
        }
    }
    if r.ok {
        Ok(0)
    } else {
        Err(CtlError::Failed(format!(
            "database check failed: integrity {}, {} foreign key violations",
            r.integrity.join("; "),
            r.foreign_key_violations.len()
        )))
    }
}

/// The network a database belongs to, as people read it.
fn network(chain_id: Option<&str>, genesis_hash: Option<&str>) -> String {
    match (chain_id, genesis_hash) {
        (_, None) => "none (no chain)".into(),
        (Some(id), Some(hash)) => format!("{id} (genesis {hash})"),
        (None, Some(hash)) => format!("genesis {hash}"),
    }
}

/// A progress bar on stderr when a person is watching; hidden for
/// `--json` and when output goes to a file or pipe.
fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{msg:>9} [{bar:32}] {bytes:>10}/{total_bytes} {bytes_per_sec:>12} {eta:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar
}
