//! dchatd: the dchat daemon as a library. `main.rs` parses flags, loads the
//! configuration, starts logging and calls [`run`]; everything else is here.
//!
//! Layers, outermost first: `control/` (the Varlink socket) calls
//! `service/` (request handlers and shared node state), which uses
//! `storage/` (SQLite) and `keystore` (secret keys). `systemd/` and
//! `logging` are the glue to the service manager and the journal.
#![deny(clippy::unwrap_used)]

pub mod chain;
pub mod cli;
pub mod config;
pub mod consensus;
pub mod control;
mod daemon;
pub mod error;
pub mod keystore;
pub mod ledger;
pub mod logging;
pub mod messaging;
pub mod metrics;
pub mod network;
pub mod node_key;
pub mod p2p;
pub mod restore_offline;
pub mod service;
mod state_lock;
pub mod storage;
pub mod systemd;

pub use daemon::{run, run_with, RunOptions};
pub use error::DaemonError;

/// The version every part of the daemon reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
