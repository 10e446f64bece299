//! dchatctl: the command-line client of the dchat daemon. It links only the
//! control protocol crate and the identity-file crate — never libp2p,
//! SQLite or the AWS SDK (checked in CI).
#![deny(clippy::unwrap_used)]

pub mod cli;
pub mod commands;
pub mod error;
pub mod output;
pub mod password;

use std::path::Path;

use clap::CommandFactory;

use cli::{Cli, Command, DmCommand};
use error::CtlError;

/// Runs one parsed command line and returns the exit status.
pub async fn run(cli: Cli) -> Result<u8, CtlError> {
    let json = cli.global.json;
    let socket = commands::socket_path(cli.global.socket.as_deref());
    match &cli.command {
        Command::Status => commands::daemon::status(&socket, json).await,
        Command::Health => commands::daemon::health(&socket, json).await,
        Command::Keygen(args) => commands::keygen::run(args, json),
        Command::Account(cmd) => commands::account::run(cmd, &socket, json).await,
        Command::Db(cmd) => commands::db::run(cmd, &socket, json).await,
        Command::Chain(cmd) => commands::chain::run(cmd, &socket, json).await,
        Command::Channel(cmd) => commands::channel::run(cmd, &socket, json).await,
        Command::Dm(DmCommand::Send(args)) => commands::messages::send_dm(args, &socket, json).await,
        Command::Dm(DmCommand::List(args)) => commands::messages::list_dms(args, &socket, json).await,
        Command::Peers => commands::peers::run(&socket, json).await,
        Command::Testnet(cmd) => commands::testnet::run(cmd, json).await,
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer
            // fails, and stdout may be a pipe that closes (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "dchatctl", &mut script);
            output::write_bytes(&script)?;
            Ok(0)
        }
    }
}

/// Writes an output file the caller named: mode 0600, atomically, and never
/// over an existing file unless `force`.
pub fn write_output(path: &Path, bytes: &[u8], force: bool) -> Result<(), CtlError> {
    dchat_keyfile::write_private_file(path, bytes, force).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CtlError::Failed(format!("{} exists; pass --force to replace it", path.display()))
        } else {
            CtlError::Failed(format!("cannot write {}: {e}", path.display()))
        }
    })
}
