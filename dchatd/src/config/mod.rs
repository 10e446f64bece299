//! dchatd's configuration: one documented struct, loaded and validated
//! before any I/O beyond reading the file.
//!
//! Precedence, lowest first: built-in defaults, `--dev` defaults, the TOML
//! file, `DCHAT_<SECTION>_<KEY>` environment variables, command-line flags.

mod env;
mod error;
mod file;
pub mod keys;
mod resolve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Origin};
pub use file::Role;

use crate::logging::LogFormat;
use crate::storage::Synchronous;

/// Where the packaged configuration lives.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dchat/dchatd.toml";
/// State directory of `--dev` when `--state-dir` is not given.
pub const DEFAULT_DEV_STATE_DIR: &str = "./dchat-dev";

/// Command-line settings that take part in configuration.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub dev: bool,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub roles: Vec<Role>,
    pub shutdown_timeout: Duration,
    pub network: NetworkConfig,
    pub control: ControlConfig,
    pub storage: StorageConfig,
    pub chain: ChainConfig,
    pub metrics_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    /// Block intervals without a new block before readiness fails.
    pub health_stall_intervals: u32,
    pub log: LogConfig,
    pub dev: bool,
    /// How this configuration was made, so SIGHUP can make it again.
    pub source: ConfigSource,
}

#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub max_connections: u32,
    pub peer_messages_per_s: u32,
    pub peer_bytes_per_s: u64,
    /// Bytes a relay lets one circuit carry, both ways (relay role).
    pub relay_circuit_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// None: no group; only root and the daemon's own user may connect.
    pub group: Option<String>,
    pub mode: u32,
    pub public_read: bool,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub state_dir: PathBuf,
    pub synchronous: Synchronous,
}

impl StorageConfig {
    /// The one database of this node.
    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("dchat.sqlite3")
    }
}

#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// The genesis file; in --dev it is made at this path when missing.
    pub genesis: PathBuf,
    pub consensus_listen: SocketAddr,
    pub peers: Vec<ValidatorPeer>,
}

/// Another validator: its key and where its consensus listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorPeer {
    pub key: [u8; 32],
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    pub flags: Flags,
}

/// Loads the configuration for `flags` with the process environment.
pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
    load_with_env(flags, std::env::vars())
}

/// Loads the configuration for `flags` with the given environment.
pub fn load_with_env<I>(flags: &Flags, vars: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let file = config_file(flags);
    let text = match &file {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    resolve::resolve(flags, file.as_deref(), text.as_deref(), env::read(vars)?)
}

/// Which file to read: `--config`, or the packaged default when it exists
/// (outside `--dev`, which needs no file at all).
fn config_file(flags: &Flags) -> Option<PathBuf> {
    if let Some(path) = &flags.config {
        return Some(path.clone());
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    (!flags.dev && default.exists()).then(|| default.to_path_buf())
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::file(
            path.to_path_buf(),
            None,
            None,
            format!("cannot read configuration: {e}"),
        )
    })
}

/// Checks what the configuration names outside itself — the control group
/// must exist — so that `--check-config` catches it and the daemon fails
/// before touching any state.
pub fn verify_system(config: &Config) -> Result<(), ConfigError> {
    let Some(group) = &config.control.group else {
        return Ok(());
    };
    if let Ok(Some(_)) = nix::unistd::Group::from_name(group) {
        return Ok(());
    }
    let origin = match std::env::var("DCHAT_CONTROL_GROUP") {
        Ok(_) => Origin::Env {
            var: "DCHAT_CONTROL_GROUP".into(),
        },
        Err(_) => {
            let path = config
                .source
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("<defaults>"));
            let line = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| error::locate(&t, "control", "group"));
            Origin::File { path, line }
        }
    };
    Err(ConfigError {
        origin,
        key: Some("control.group".into()),
        message: format!(
            "group {group:?} does not exist; create it (the package's sysusers.d entry does) or set group = \"\""
        ),
    })
}

#[cfg(test)]
mod tests;
