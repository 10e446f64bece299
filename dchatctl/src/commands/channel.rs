//! `channel create | join | leave | invite | list | show`: channels on
//! chain. Each change returns once the block holding it is final. `channel
//! post | messages` are in [`super::messages`].

use std::path::Path;

use dchat_control::api;

use super::call;
use crate::cli::{ChannelCommand, ChannelCreateArgs};
use crate::error::CtlError;
use crate::outln;
use crate::output;

pub async fn run(cmd: &ChannelCommand, socket: &Path, json: bool) -> Result<u8, CtlError> {
    match cmd {
        ChannelCommand::Create(args) => create(args, socket, json).await,
        ChannelCommand::Join { user, channel } => {
            let params = api::ChannelMembership {
                user: user.clone(),
                channel: channel_name(channel),
            };
            let r: api::ChannelChange = call(socket, api::CHANNEL_JOIN, &params).await?;
            changed(&r, json, &format!("{} joined", r.signer))
        }
        ChannelCommand::Leave { user, channel } => {
            let params = api::ChannelMembership {
                user: user.clone(),
                channel: channel_name(channel),
            };
            let r: api::ChannelChange = call(socket, api::CHANNEL_LEAVE, &params).await?;
            changed(&r, json, &format!("{} left", r.signer))
        }
        ChannelCommand::Invite {
            owner,
            channel,
            account,
        } => {
            let params = api::InviteToChannel {
                owner: owner.clone(),
                channel: channel_name(channel),
                account: account.clone(),
            };
            let r: api::ChannelChange = call(socket, api::CHANNEL_INVITE, &params).await?;
            changed(&r, json, &format!("{} invited {account} to", r.signer))
        }
        ChannelCommand::List => {
            let r: api::ChannelList = call(socket, api::CHANNEL_LIST, &api::Empty {}).await?;
            if json {
                output::json(&r.channels)?;
            } else if r.channels.is_empty() {
                outln!("no channels; create one with `dchatctl channel create CHANNEL`")?;
            } else {
                let rows: Vec<Vec<String>> = r
                    .channels
                    .iter()
                    .map(|c| {
                        vec![
                            format!("#{}", c.name),
                            c.owner.clone(),
                            c.members.len().to_string(),
                            yes_no(c.invite_only),
                            c.description.clone(),
                        ]
                    })
                    .collect();
                output::table(&["CHANNEL", "OWNER", "MEMBERS", "INVITE-ONLY", "DESCRIPTION"], &rows)?;
            }
            Ok(0)
        }
        ChannelCommand::Post(args) => super::messages::post(args, socket, json).await,
        ChannelCommand::Messages(args) => super::messages::channel_messages(args, socket, json).await,
        ChannelCommand::Show { channel } => {
            let params = api::ChannelName {
                channel: channel_name(channel),
            };
            let r: api::ChannelReply = call(socket, api::CHANNEL_SHOW, &params).await?;
            if json {
                output::json(&r.channel)?;
            } else {
                details(&r.channel)?;
            }
            Ok(0)
        }
    }
}

/// `channel create`, and its legacy spelling `account create-channel`.
pub async fn create(args: &ChannelCreateArgs, socket: &Path, json: bool) -> Result<u8, CtlError> {
    let params = api::CreateChannel {
        owner: args.owner.clone(),
        channel: channel_name(&args.channel),
        description: args.description.clone(),
        invite_only: args.invite_only.then_some(true),
    };
    let r: api::ChannelChange = call(socket, api::CHANNEL_CREATE, &params).await?;
    changed(&r, json, &format!("{} created", r.signer))
}

/// People write channels as `#name`; the `#` is not part of the name.
pub(crate) fn channel_name(arg: &str) -> String {
    arg.strip_prefix('#').unwrap_or(arg).to_string()
}

/// One sentence saying what happened and in which block, then the channel.
/// `--json` prints the whole reply: signer, channel and height.
fn changed(r: &api::ChannelChange, json: bool, what: &str) -> Result<u8, CtlError> {
    if json {
        output::json(r)?;
        return Ok(0);
    }
    outln!("{what} #{} (final in block {})", r.channel.name, r.height)?;
    details(&r.channel)?;
    Ok(0)
}

fn details(c: &api::Channel) -> Result<(), CtlError> {
    let none = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    output::fields(&[
        ("name", c.name.clone()),
        ("owner", c.owner.clone()),
        ("description", c.description.clone()),
        ("invite-only", yes_no(c.invite_only)),
        ("created", format!("block {}", c.created_height)),
        ("members", format!("{} ({})", c.members.len(), none(&c.members))),
        ("invited", none(&c.invited)),
    ])
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_hash_is_not_part_of_the_name() {
        assert_eq!(channel_name("#general"), "general");
        assert_eq!(channel_name("general"), "general");
        assert_eq!(
            channel_name("##x"),
            "#x",
            "only one '#' is dropped; the daemon refuses the rest"
        );
    }
}
