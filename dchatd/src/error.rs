//! Errors that stop the daemon, each with its exit status.

use std::path::PathBuf;

use crate::config::ConfigError;

/// sysexits.h: bad configuration.
pub const EX_CONFIG: u8 = 78;
/// sysexits.h: cannot create an output file or directory.
pub const EX_CANTCREAT: u8 = 73;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("key `control.group`: group {0:?} does not exist (create it, or set group = \"\")")]
    GroupNotFound(String),
    #[error("logging: {0}")]
    Logging(String),
    #[error("state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is in use by another dchatd (pid {holder})")]
    StateDirInUse { path: PathBuf, holder: String },
    #[error("database: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("keystore: {0}")]
    Keystore(#[from] crate::keystore::KeystoreError),
    #[error("node key: {0}")]
    NodeKey(#[from] crate::node_key::NodeKeyError),
    #[error("control socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("control socket {0}: another dchatd is serving there")]
    SocketInUse(PathBuf),
    #[error("key `{key}`: cannot listen on {addr}: {message}")]
    Listen {
        key: &'static str,
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::ChainError),
    #[error("{0}")]
    Service(#[from] crate::service::ServiceError),
    #[error("shutdown took longer than {0} s; exiting anyway")]
    ShutdownTimeout(u64),
    #[error("{0}")]
    Runtime(String),
}

impl DaemonError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) | DaemonError::GroupNotFound(_) | DaemonError::Logging(_) => EX_CONFIG,
            DaemonError::StateDir { .. } => EX_CANTCREAT,
            _ => 1,
        }
    }
}
