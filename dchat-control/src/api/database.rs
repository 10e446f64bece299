//! io.dchat.Database: migrations, checks, online backup, verified restore.
//!
//! Backup and Restore are called with `upgrade` and then speak the bulk
//! messages of [`crate::bulk`]; the types they exchange are here.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const DB_MIGRATE: &str = "io.dchat.Database.Migrate";
pub const DB_CHECK: &str = "io.dchat.Database.Check";
pub const DB_BACKUP: &str = "io.dchat.Database.Backup";
pub const DB_RESTORE: &str = "io.dchat.Database.Restore";

// None of these is read-only: Check reads the whole file and Backup copies
// it, which `public_read` must not hand to every local user.
pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: DB_MIGRATE,
        read_only: false,
    },
    MethodInfo {
        method: DB_CHECK,
        read_only: false,
    },
    MethodInfo {
        method: DB_BACKUP,
        read_only: false,
    },
    MethodInfo {
        method: DB_RESTORE,
        read_only: false,
    },
];

/// Typed errors of io.dchat.Database.
pub mod db_errors {
    pub const EXPECTED_UPGRADE: &str = "io.dchat.Database.ExpectedUpgrade";
    pub const BUSY: &str = "io.dchat.Database.Busy";
    pub const NO_SPACE: &str = "io.dchat.Database.NoSpace";
    pub const BACKUP_FAILED: &str = "io.dchat.Database.BackupFailed";
    pub const INVALID_BACKUP: &str = "io.dchat.Database.InvalidBackup";
    pub const SCHEMA_TOO_NEW: &str = "io.dchat.Database.SchemaTooNew";
    pub const WRONG_NETWORK: &str = "io.dchat.Database.WrongNetwork";
    pub const RESTORE_FAILED: &str = "io.dchat.Database.RestoreFailed";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationInfo {
    pub version: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReply {
    pub schema_version: u32,
    /// The newest schema version this dchatd knows.
    pub supported: u32,
    pub applied: Vec<MigrationInfo>,
    /// Pending before this call.
    pub pending: Vec<MigrationInfo>,
    /// Applied by this call.
    pub migrated: Vec<MigrationInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyViolation {
    pub table: String,
    pub rowid: Option<i64>,
    pub parent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReply {
    /// Integrity "ok" and no foreign-key violations.
    pub ok: bool,
    /// `["ok"]`, or the problems integrity_check found.
    pub integrity: Vec<String>,
    pub foreign_key_violations: Vec<ForeignKeyViolation>,
    pub schema_version: u32,
    pub database_id: String,
    /// The chain the database is bound to (its network), if any.
    pub chain_id: Option<String>,
    /// Hex hash of that chain's genesis block.
    pub genesis_hash: Option<String>,
    pub created_at: String,
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    pub file_bytes: u64,
    pub wal_bytes: u64,
    pub tables: Vec<TableRows>,
    pub kept: Vec<KeptFile>,
}

/// Backup's parameters. With `file_descriptor`, the client sends the file
/// to write the backup into as an `SCM_RIGHTS` descriptor (one byte with
/// the descriptor attached, right after the reply) and the daemon writes
/// the snapshot into it itself; without it the daemon sends the bytes as
/// data messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_descriptor: Option<bool>,
}

/// The reply to an upgraded Backup: the size of the snapshot to come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStart {
    pub page_size: u64,
    pub pages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// "snapshot", "transfer", "write" or "verify".
    pub phase: String,
    pub done: u64,
    /// 0 when unknown.
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file as sent or written.
    pub sha256: String,
    pub schema_version: u32,
    pub page_size: u64,
    pub pages: u64,
    pub database_id: String,
    /// The chain the database is bound to (its network), if any.
    pub chain_id: Option<String>,
    /// Hex hash of that chain's genesis block.
    pub genesis_hash: Option<String>,
    /// Time spent copying the pinned snapshot: by SQLite's backup API
    /// into the daemon's scratch file or the client's file, or, when the
    /// database file alone is the snapshot, as a file copy into the
    /// client's file (whose hash and fsync overlap it and are included).
    pub snapshot_ms: u64,
    /// Snapshot plus transfer or write (and fsync), as the daemon saw it.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub bytes: u64,
    pub sha256: String,
    pub schema_version: u32,
    pub database_id: String,
    /// The chain the database is bound to (its network), if any.
    pub chain_id: Option<String>,
    /// Hex hash of that chain's genesis block.
    pub genesis_hash: Option<String>,
    pub created_at: String,
    pub tables: Vec<TableRows>,
    /// Where the database that was live before is kept (None when there
    /// was none, as in an offline restore into an empty state directory).
    pub previous: Option<String>,
    pub duration_ms: u64,
}

/// A bulk message from the daemon; exactly one field is set. (`data` is
/// handled by [`crate::bulk`] and never reaches this type.)
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DaemonMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoreReport>,
}

/// The client's closing message after Restore's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreEnd {
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_database_method_is_read_only() {
        for m in METHODS {
            assert!(!m.read_only, "{} must not be opened by public_read", m.method);
        }
    }

    #[test]
    fn daemon_messages_carry_one_field() {
        let m = DaemonMessage {
            progress: Some(Progress {
                phase: "snapshot".into(),
                done: 1,
                total: 2,
            }),
            ..DaemonMessage::default()
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"progress": {"phase": "snapshot", "done": 1, "total": 2}})
        );
    }
}
