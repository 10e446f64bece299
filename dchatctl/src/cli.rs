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
    /// Direct messages between accounts: send, list, follow
    #[command(subcommand)]
    Dm(DmCommand),
    /// Channels: create, join, leave, invite, list, show, post, read
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// The peers this node is connected to
    Peers,
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
    /// Same as `dm send` (the spelling of the earlier dchat tool)
    SendDm(DmSendArgs),
    /// Same as `dm list` (the spelling of the earlier dchat tool)
    GetDms(DmListArgs),
    /// Same as `channel post` (the spelling of the earlier dchat tool)
    PostChannel(ChannelPostArgs),
    /// Same as `channel messages` (the spelling of the earlier dchat tool)
    GetChannelMessages(ChannelMessagesArgs),
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
    /// Post a message in a channel as a member
    Post(ChannelPostArgs),
    /// The channel's posts this node holds, oldest first
    Messages(ChannelMessagesArgs),
}

#[derive(Debug, Subcommand)]
pub enum DmCommand {
    /// Send a direct message; returns once it is queued, not delivered
    Send(DmSendArgs),
    /// A local account's direct messages, oldest first, each with its state
    /// (sent, relayed, delivered; expired when nobody took it in 7 days)
    List(DmListArgs),
}

#[derive(Debug, Args)]
pub struct DmSendArgs {
    /// Local account that sends [default: the only local account]
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Recipient: account name or id (a leading '@' is ignored)
    pub to: String,
    /// The message (at most 65536 bytes)
    pub text: String,
}

#[derive(Debug, Args)]
pub struct DmListArgs {
    /// Local account whose messages to list [default: the only local account]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only messages exchanged with this account (name or id)
    #[arg(long, value_name = "PEER")]
    pub with: Option<String>,
    /// Keep running and print messages as they arrive or change state (Ctrl-C stops)
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ChannelPostArgs {
    /// Local account that posts, a member [default: the only local account]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Channel name (a leading '#' is ignored)
    pub channel: String,
    /// The message (at most 16384 bytes)
    pub text: String,
}

#[derive(Debug, Args)]
pub struct ChannelMessagesArgs {
    /// Channel name (a leading '#' is ignored)
    pub channel: String,
    /// Only the latest N posts
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Keep running and print posts as they arrive (Ctrl-C stops)
    #[arg(long, short)]
    pub follow: bool,
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["dchatctl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn refused(args: &[&str]) {
        let mut argv = vec!["dchatctl"];
        argv.extend_from_slice(args);
        assert!(Cli::try_parse_from(argv).is_err(), "{args:?} parsed");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn dm_send(cli: Cli) -> DmSendArgs {
        match cli.command {
            Command::Dm(DmCommand::Send(a)) | Command::Account(AccountCommand::SendDm(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn dm_list(cli: Cli) -> DmListArgs {
        match cli.command {
            Command::Dm(DmCommand::List(a)) | Command::Account(AccountCommand::GetDms(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn post(cli: Cli) -> ChannelPostArgs {
        match cli.command {
            Command::Channel(ChannelCommand::Post(a)) | Command::Account(AccountCommand::PostChannel(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn messages(cli: Cli) -> ChannelMessagesArgs {
        match cli.command {
            Command::Channel(ChannelCommand::Messages(a)) | Command::Account(AccountCommand::GetChannelMessages(a)) => {
                a
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dm_send_and_its_legacy_spelling() {
        for group in [&["dm", "send"][..], &["account", "send-dm"]] {
            let a = dm_send(parse(&[group, &["bob", "hello there"]].concat()));
            assert_eq!((a.from, a.to.as_str(), a.text.as_str()), (None, "bob", "hello there"));
            let a = dm_send(parse(&[group, &["--from", "alice", "@bob", "hi", "--json"]].concat()));
            assert_eq!((a.from.as_deref(), a.to.as_str()), (Some("alice"), "@bob"));
            // A text that starts with '-' goes after `--`.
            assert_eq!(
                dm_send(parse(&[group, &["bob", "--", "-1 from me"]].concat())).text,
                "-1 from me"
            );
            refused(&[group, &["bob"]].concat());
            refused(&[group, &["bob", "one", "two"]].concat());
        }
    }

    #[test]
    fn dm_list_and_its_legacy_spelling() {
        for group in [&["dm", "list"][..], &["account", "get-dms"]] {
            let a = dm_list(parse(group));
            assert_eq!((a.user, a.with, a.follow), (None, None, false));
            let a = dm_list(parse(
                &[group, &["--user", "alice", "--with", "bob", "--follow"]].concat(),
            ));
            assert_eq!(
                (a.user.as_deref(), a.with.as_deref(), a.follow),
                (Some("alice"), Some("bob"), true)
            );
            assert!(dm_list(parse(&[group, &["-f"]].concat())).follow);
            refused(&[group, &["bob"]].concat());
        }
    }

    #[test]
    fn channel_post_and_its_legacy_spelling() {
        for group in [&["channel", "post"][..], &["account", "post-channel"]] {
            let a = post(parse(&[group, &["#general", "hi all"]].concat()));
            assert_eq!(
                (a.user, a.channel.as_str(), a.text.as_str()),
                (None, "#general", "hi all")
            );
            let a = post(parse(&[group, &["--user", "alice", "general", "hi"]].concat()));
            assert_eq!(a.user.as_deref(), Some("alice"));
            refused(&[group, &["general"]].concat());
        }
    }

    #[test]
    fn channel_messages_and_its_legacy_spelling() {
        for group in [&["channel", "messages"][..], &["account", "get-channel-messages"]] {
            let a = messages(parse(&[group, &["general"]].concat()));
            assert_eq!((a.channel.as_str(), a.limit, a.follow), ("general", None, false));
            let a = messages(parse(
                &[group, &["general", "--limit", "20", "--follow", "--json"]].concat(),
            ));
            assert_eq!((a.limit, a.follow), (Some(20), true));
            refused(&[group, &["general", "--limit", "many"]].concat());
            refused(&[group, &["general", "--limit", "-1"]].concat());
            refused(group);
        }
    }

    #[test]
    fn peers() {
        let cli = parse(&["peers", "--json"]);
        assert!(matches!(cli.command, Command::Peers));
        assert!(cli.global.json);
        refused(&["peers", "extra"]);
    }
}
