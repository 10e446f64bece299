//! dchatctl's command line, as promised in CLI.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// dchatctl — drive a dchat daemon over its control socket.
#[derive(Debug, Parser)]
#[command(name = "dchatctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON document on stdout instead of a table or sentence
    #[arg(long, global = true)]
    pub json: bool,
    /// Control socket of the daemon [default: /run/dchat/dchatd.sock, or ./dchat-dev/dchatd.sock when only that exists]
    #[arg(long, global = true, env = "DCHAT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Roles, peer id, addresses, peers, chain height and version of the daemon
    Status,
    /// Exit 0 when the daemon is live and ready, 1 otherwise (for probes)
    Health,
    /// Make a new identity offline and write it to a password-encrypted file
    Keygen(KeygenArgs),
    /// Accounts hosted by the daemon
    #[command(subcommand)]
    Account(AccountCommand),
    /// Channels on chain: create, join, leave, invite, list, show
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Local testnets: many nodes on this machine
    #[command(subcommand)]
    Testnet(crate::commands::testnet::TestnetCommand),
    /// The chain this node follows
    #[command(subcommand)]
    Chain(ChainCommand),
    /// The node's database: migrate, check, backup, restore
    #[command(subcommand, visible_alias = "database")]
    Db(crate::commands::db::DbCommand),
    /// Print a shell completion script
    Completions {
        /// Shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Make a burner identity: a throwaway, unlinkable to any other
    #[arg(long)]
    pub burner: bool,
    /// File to write (mode 0600); refused if it exists, unless --force
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Read the password from the first line of FILE instead of asking
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Account name to record in the file (used by `account import`)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace FILE if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account with fresh keys in the daemon's keystore
    Create {
        /// Account name: 1-32 letters, digits, '_', '-' or '.'
        name: String,
        /// Make a burner account: a throwaway, unlinkable to any other
        #[arg(long)]
        burner: bool,
    },
    /// List accounts
    List,
    /// Show one account (by name or id)
    #[command(visible_alias = "profile")]
    Show {
        /// Account name or id
        name: String,
    },
    /// Import an identity file written by `keygen` or `account export`
    Import {
        /// Identity file
        file: PathBuf,
        /// Read the password from the first line of FILE instead of asking
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Account name (default: the name recorded in the file)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Same as `channel create` (the spelling of the earlier dchat tool)
    CreateChannel(ChannelCreateArgs),
    /// Export an account to a password-encrypted identity file
    Export {
        /// Account name or id
        name: String,
        /// File to write (mode 0600); refused if it exists, unless --force
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// Read the password from the first line of FILE instead of asking
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Height and hash of the last final block, and the validators
    Status,
    /// One final block
    Block {
        /// Block height (0 is the genesis)
        height: u64,
    },
    /// One final transaction
    Tx {
        /// Transaction id (hex)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel on chain, owned by a local account
    Create(ChannelCreateArgs),
    /// Join a channel as a local account
    Join {
        /// Local account that joins [default: the only local account]
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Channel name (a leading '#' is ignored)
        channel: String,
    },
    /// Leave a channel
    Leave {
        /// Local account that leaves [default: the only local account]
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Channel name (a leading '#' is ignored)
        channel: String,
    },
    /// Let an account join an invite-only channel (owner only)
    Invite {
        /// The channel's owner, a local account [default: the only local account]
        #[arg(long, value_name = "NAME")]
        owner: Option<String>,
        /// Channel name (a leading '#' is ignored)
        channel: String,
        /// Account to invite, by name or id
        account: String,
    },
    /// List the channels on chain
    List,
    /// Show one channel: owner, description, members, invitations
    Show {
        /// Channel name (a leading '#' is ignored)
        channel: String,
    },
}

#[derive(Debug, Args)]
pub struct ChannelCreateArgs {
    /// Local account that creates and owns the channel [default: the only local account]
    #[arg(long, value_name = "NAME")]
    pub owner: Option<String>,
    /// Channel name: 1-32 letters, digits, '_', '-' or '.' (a leading '#' is ignored)
    pub channel: String,
    /// What the channel is about (at most 1024 bytes)
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Only accounts the owner invites may join
    #[arg(long)]
    pub invite_only: bool,
}
