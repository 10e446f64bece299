//! io.dchat.Channels: channels on chain — creation, membership, invitations.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const CHANNEL_CREATE: &str = "io.dchat.Channels.Create";
pub const CHANNEL_JOIN: &str = "io.dchat.Channels.Join";
pub const CHANNEL_LEAVE: &str = "io.dchat.Channels.Leave";
pub const CHANNEL_INVITE: &str = "io.dchat.Channels.Invite";
pub const CHANNEL_LIST: &str = "io.dchat.Channels.List";
pub const CHANNEL_SHOW: &str = "io.dchat.Channels.Show";

/// Typed errors of io.dchat.Channels.
pub mod channel_errors {
    pub const CHANNEL_TAKEN: &str = "io.dchat.Channels.ChannelTaken";
    pub const NO_SUCH_CHANNEL: &str = "io.dchat.Channels.NoSuchChannel";
    pub const INVALID_NAME: &str = "io.dchat.Channels.InvalidName";
    pub const DESCRIPTION_TOO_LONG: &str = "io.dchat.Channels.DescriptionTooLong";
    pub const NOT_INVITED: &str = "io.dchat.Channels.NotInvited";
    pub const ALREADY_MEMBER: &str = "io.dchat.Channels.AlreadyMember";
    pub const NOT_MEMBER: &str = "io.dchat.Channels.NotMember";
    pub const NOT_OWNER: &str = "io.dchat.Channels.NotOwner";
    pub const NOT_INVITE_ONLY: &str = "io.dchat.Channels.NotInviteOnly";
    pub const ALREADY_INVITED: &str = "io.dchat.Channels.AlreadyInvited";
    pub const REJECTED: &str = "io.dchat.Channels.Rejected";
}

/// Longest channel description, in bytes (the ledger's limit).
pub const MAX_DESCRIPTION_LEN: usize = 1024;

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: CHANNEL_CREATE,
        read_only: false,
    },
    MethodInfo {
        method: CHANNEL_JOIN,
        read_only: false,
    },
    MethodInfo {
        method: CHANNEL_LEAVE,
        read_only: false,
    },
    MethodInfo {
        method: CHANNEL_INVITE,
        read_only: false,
    },
    MethodInfo {
        method: CHANNEL_LIST,
        read_only: true,
    },
    MethodInfo {
        method: CHANNEL_SHOW,
        read_only: true,
    },
];

/// A channel as the finalized chain records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub owner: String,
    pub description: String,
    pub invite_only: bool,
    /// Account names, sorted.
    pub members: Vec<String>,
    /// Invited accounts that have not joined yet.
    pub invited: Vec<String>,
    /// Height of the block that created the channel.
    pub created_height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// The local account that signs and owns; optional with one local account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_only: Option<bool>,
}

/// Join and Leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteToChannel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub channel: String,
    pub account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelName {
    pub channel: String,
}

/// The reply of every change: the local account that signed, the channel
/// after the change, and the height of the final block holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelChange {
    pub signer: String,
    pub channel: Channel,
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelReply {
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

/// Why `name` cannot be a channel name, or None if it can: 1–32 of
/// `a-z A-Z 0-9 _ - .`, starting with a letter or digit — the ledger's rule.
/// A leading `#` is how people write channels, not part of the name; the
/// CLI strips it, the daemon refuses it.
pub fn channel_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 32 {
        return Some("must be 1 to 32 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Some("only letters, digits, '_', '-' and '.' are allowed");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("must start with a letter or a digit");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in ["general", "Rust-lang", "a", "x.y_z", "0day", &"n".repeat(32)] {
            assert_eq!(channel_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "#general", "-x", ".x", "_x", "a b", "café", "a/b", &"n".repeat(33)] {
            assert!(channel_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn optional_parameters_stay_off_the_wire() {
        let p = ChannelMembership {
            user: None,
            channel: "general".into(),
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({ "channel": "general" })
        );
        let back: CreateChannel = serde_json::from_value(serde_json::json!({ "channel": "c" })).unwrap();
        assert_eq!(back.owner, None);
        assert_eq!(back.invite_only, None);
        assert!(serde_json::from_value::<ChannelName>(serde_json::json!({ "channel": "c", "x": 1 })).is_err());
    }
}
