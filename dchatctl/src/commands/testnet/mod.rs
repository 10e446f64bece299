//! `testnet init|up|down|status`: a whole dchat network on one machine
//! (CLI.md, "Local testnets").
//!
//! `init` writes `DIR/genesis.json`, one folder per node with its key and
//! `dchatd.toml`, and `DIR/testnet.json`, the manifest the other commands
//! read. `up` starts nodes as background processes and acts as their service
//! manager until each has sent READY; `down` stops them; `status` asks each
//! running node over its control socket. Only `status` talks to the daemon;
//! the rest is files and processes, so none of it needs dchatd's crates.
//!
//! - `manifest`: the node list, file names and per-node paths;
//! - `init` and `render` (the TOML and JSON it writes);
//! - `up` with `notify` (the READY socket) and `process` (spawn, pid files);
//! - `down` and `status`.

mod down;
mod init;
mod manifest;
mod notify;
pub mod ports;
mod process;
mod render;
mod status;
mod up;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::error::CtlError;

#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Write genesis, keys and a config per node for a network on 127.0.0.1
    Init(InitArgs),
    /// Start nodes (default: all) in the background and wait until each is READY
    Up(UpArgs),
    /// Stop nodes (default: all): SIGTERM, then SIGKILL after the timeout
    Down(DownArgs),
    /// Each node's role, pid, chain height and peer count
    Status {
        /// The testnet's directory
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write; created if missing, refused if not empty unless --force
    pub dir: PathBuf,
    /// Number of validators (named validator1..N)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub validators: u16,
    /// Number of relays (named relay1..N)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub relays: u16,
    /// Number of user nodes (named user1..N)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub users: u16,
    /// Block interval of the chain, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_interval_ms: u64,
    /// Log format of every node
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log level (or filter) of every node
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Replace an earlier testnet in DIR (its genesis, manifest and node folders)
    #[arg(long)]
    pub force: bool,
}

/// The formats that suit a log file (journald and syslog do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The testnet's directory
    pub dir: PathBuf,
    /// Nodes to start, e.g. validator1 relay1 (default: all)
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Seconds to wait for every started node to send READY
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The testnet's directory
    pub dir: PathBuf,
    /// Nodes to stop, e.g. validator2 (default: all)
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Seconds to wait after SIGTERM before sending SIGKILL
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

pub async fn run(cmd: &TestnetCommand, json: bool) -> Result<u8, CtlError> {
    match cmd {
        TestnetCommand::Init(args) => init::run(args, json),
        TestnetCommand::Up(args) => up::run(args, json),
        TestnetCommand::Down(args) => down::run(args, json),
        TestnetCommand::Status { dir } => status::run(dir, json).await,
    }
}
