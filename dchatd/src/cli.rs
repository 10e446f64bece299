//! dchatd's command line (CLI.md). Lives in the library so man pages and
//! tests can read it.

use std::path::PathBuf;

use clap::Parser;

use crate::config::Flags;
use crate::logging::LogFormat;

/// dchatd — the dchat daemon: networking, consensus and storage of one node.
#[derive(Debug, Parser)]
#[command(name = "dchatd", version = crate::VERSION, about, long_about = None)]
pub struct Args {
    /// Configuration file [default: /etc/dchat/dchatd.toml; none with --dev]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run a whole single-machine network (user, relay and validator) with
    /// everything under --state-dir; needs no setup
    #[arg(long)]
    pub dev: bool,
    /// State directory (database, keys; with --dev also the socket) [--dev default: ./dchat-dev]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control socket path
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Log destination and format
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (error, warn, info, debug, trace)
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Validate the configuration, print the result and exit (0 valid, 78 invalid)
    #[arg(long)]
    pub check_config: bool,
    /// Print the documented default configuration file and exit
    #[arg(long)]
    pub print_default_config: bool,
    /// Restore the backup FILE into the state directory of this (stopped)
    /// node, after the checks a live restore makes, and exit; the previous
    /// database is kept beside it
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// With --restore: restore a backup of another network too
    #[arg(long, requires = "restore")]
    pub force: bool,
    /// With --restore: print the report as JSON
    #[arg(long, requires = "restore")]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    s.parse::<LogFormat>().map_err(|e| e.to_string())
}

impl Args {
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            dev: self.dev,
            state_dir: self.state_dir.clone(),
            socket: self.socket.clone(),
            log_format: self.log_format,
            log_level: self.log_level.clone(),
        }
    }
}
