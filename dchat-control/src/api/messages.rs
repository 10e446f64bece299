//! io.dchat.Messages: direct messages and channel posts.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const SEND_DM: &str = "io.dchat.Messages.SendDm";
pub const LIST_DMS: &str = "io.dchat.Messages.ListDms";
pub const POST_CHANNEL: &str = "io.dchat.Messages.PostChannel";
pub const CHANNEL_MESSAGES: &str = "io.dchat.Messages.ChannelMessages";

/// Longest direct-message text, in bytes (the messaging module's
/// `MAX_TEXT_BYTES`; the sealed envelope is sized for it).
pub const MAX_DM_TEXT_BYTES: usize = 64 * 1024;
/// Longest channel-post text, in bytes (the messaging module's
/// `MAX_POST_TEXT_BYTES`).
pub const MAX_POST_TEXT_BYTES: usize = 16 * 1024;

/// Typed errors of io.dchat.Messages. Channel and account errors are those
/// of io.dchat.Channels and io.dchat.Accounts, so a caller handles each
/// condition once whichever interface reports it; they are repeated here
/// under their meaning for Messages.
pub mod message_errors {
    pub const NO_SUCH_RECIPIENT: &str = "io.dchat.Messages.NoSuchRecipient";
    pub const TEXT_TOO_LONG: &str = "io.dchat.Messages.TextTooLong";
    pub const EMPTY_TEXT: &str = "io.dchat.Messages.EmptyText";
    pub const NETWORK_DOWN: &str = "io.dchat.Messages.NetworkDown";
    /// `(channel)`: no such channel to post in or read.
    pub const NO_SUCH_CHANNEL: &str = super::super::channel_errors::NO_SUCH_CHANNEL;
    /// `(channel, account)`: only members may post.
    pub const NOT_MEMBER: &str = super::super::channel_errors::NOT_MEMBER;
}

/// Values of [`Dm::state`], in the order a message goes through them.
pub mod dm_state {
    /// In this node's outbox, not yet taken by a relay or the recipient.
    pub const SENT: &str = "sent";
    /// A relay holds it for the recipient.
    pub const RELAYED: &str = "relayed";
    /// Its envelope expired (7 days) in this node's outbox before a relay
    /// or the recipient took it: it will not be sent again. A receipt
    /// that comes after all still makes it `delivered`.
    pub const EXPIRED: &str = "expired";
    /// The recipient acknowledged it.
    pub const DELIVERED: &str = "delivered";
}

/// Values of [`Dm::direction`].
pub mod dm_direction {
    /// To a local account.
    pub const IN: &str = "in";
    /// From a local account.
    pub const OUT: &str = "out";
}

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: SEND_DM,
        read_only: false,
    },
    // Direct messages are private, and which channels a node reads says
    // whom it hosts: neither is opened by public_read.
    MethodInfo {
        method: LIST_DMS,
        read_only: false,
    },
    MethodInfo {
        method: POST_CHANNEL,
        read_only: false,
    },
    MethodInfo {
        method: CHANNEL_MESSAGES,
        read_only: false,
    },
];

/// A direct message. `state` and `direction` are strings (see [`dm_state`],
/// [`dm_direction`]) so that an older client still reads a newer daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dm {
    /// Hex.
    pub id: String,
    /// Account names.
    pub from: String,
    pub to: String,
    pub text: String,
    /// RFC 3339, the sender's clock.
    pub sent_at: String,
    /// RFC 3339, this node's clock; null for messages this node sent.
    #[serde(default)]
    pub received_at: Option<String>,
    pub state: String,
    pub direction: String,
    /// Hex.
    pub content_hash: String,
}

/// A channel post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: String,
    pub channel: String,
    pub from: String,
    pub text: String,
    pub sent_at: String,
    /// Null for posts this node sent.
    #[serde(default)]
    pub received_at: Option<String>,
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendDm {
    /// The local account that sends; optional with one local account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Account name or id.
    pub to: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDms {
    /// The local account whose messages to list; optional with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only messages exchanged with this account (name or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostChannel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub channel: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelMessages {
    pub channel: String,
    /// Only the latest `limit` posts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// The reply of SendDm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmReply {
    pub message: Dm,
}

/// The reply of ListDms, and each reply of its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmList {
    pub messages: Vec<Dm>,
}

/// The reply of PostChannel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostReply {
    pub message: Post,
}

/// The reply of ChannelMessages, and each reply of its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostList {
    pub messages: Vec<Post>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dm() -> Dm {
        Dm {
            id: "0a1b".into(),
            from: "alice".into(),
            to: "bob".into(),
            text: "hello".into(),
            sent_at: "2026-11-22T06:40:01Z".into(),
            received_at: None,
            state: dm_state::DELIVERED.into(),
            direction: dm_direction::OUT.into(),
            content_hash: "ff00".into(),
        }
    }

    fn post() -> Post {
        Post {
            id: "0c0d".into(),
            channel: "general".into(),
            from: "bob".into(),
            text: "hi all".into(),
            sent_at: "2026-11-22T06:41:00Z".into(),
            received_at: Some("2026-11-22T06:41:01Z".into()),
            content_hash: "ee11".into(),
        }
    }

    #[test]
    fn dm_wire_form() {
        let wire = json!({
            "id": "0a1b",
            "from": "alice",
            "to": "bob",
            "text": "hello",
            "sent_at": "2026-11-22T06:40:01Z",
            "received_at": null,
            "state": "delivered",
            "direction": "out",
            "content_hash": "ff00"
        });
        assert_eq!(
            serde_json::to_value(DmReply { message: dm() }).unwrap(),
            json!({ "message": wire })
        );
        let list: DmList = serde_json::from_value(json!({ "messages": [wire] })).unwrap();
        assert_eq!(list.messages, [dm()]);
        // received_at may also be left out.
        let mut absent = wire.clone();
        absent.as_object_mut().unwrap().remove("received_at");
        assert_eq!(serde_json::from_value::<Dm>(absent).unwrap(), dm());
    }

    #[test]
    fn post_wire_form() {
        let wire = json!({
            "id": "0c0d",
            "channel": "general",
            "from": "bob",
            "text": "hi all",
            "sent_at": "2026-11-22T06:41:00Z",
            "received_at": "2026-11-22T06:41:01Z",
            "content_hash": "ee11"
        });
        assert_eq!(
            serde_json::to_value(PostList { messages: vec![post()] }).unwrap(),
            json!({ "messages": [wire] })
        );
        let back: PostReply = serde_json::from_value(json!({ "message": wire })).unwrap();
        assert_eq!(back.message, post());
    }

    #[test]
    fn parameters_wire_form() {
        let send = SendDm {
            from: None,
            to: "bob".into(),
            text: "hi".into(),
        };
        assert_eq!(
            serde_json::to_value(&send).unwrap(),
            json!({ "to": "bob", "text": "hi" })
        );
        let with_from: SendDm = serde_json::from_value(json!({ "from": "alice", "to": "bob", "text": "hi" })).unwrap();
        assert_eq!(with_from.from.as_deref(), Some("alice"));

        let list = ListDms {
            user: Some("alice".into()),
            with: Some("bob".into()),
        };
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({ "user": "alice", "with": "bob" })
        );
        assert_eq!(
            serde_json::from_value::<ListDms>(json!({})).unwrap(),
            ListDms { user: None, with: None }
        );

        let p: PostChannel = serde_json::from_value(json!({ "channel": "general", "text": "x" })).unwrap();
        assert_eq!((p.user, p.channel.as_str(), p.text.as_str()), (None, "general", "x"));

        let q = ChannelMessages {
            channel: "general".into(),
            limit: Some(20),
        };
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({ "channel": "general", "limit": 20 })
        );
        let q: ChannelMessages = serde_json::from_value(json!({ "channel": "general" })).unwrap();
        assert_eq!(q.limit, None);

        // Misspelt parameters are refused, not ignored.
        assert!(serde_json::from_value::<SendDm>(json!({ "recipient": "bob", "to": "b", "text": "x" })).is_err());
        assert!(serde_json::from_value::<ChannelMessages>(json!({ "channel": "c", "max": 1 })).is_err());
    }

    #[test]
    fn shared_errors_are_the_channel_ones() {
        assert_eq!(message_errors::NO_SUCH_CHANNEL, "io.dchat.Channels.NoSuchChannel");
        assert_eq!(message_errors::NOT_MEMBER, "io.dchat.Channels.NotMember");
    }

    #[test]
    fn every_error_constant_is_declared() {
        let idl = crate::interfaces::MESSAGES;
        for name in [
            message_errors::NO_SUCH_RECIPIENT,
            message_errors::TEXT_TOO_LONG,
            message_errors::EMPTY_TEXT,
            message_errors::NETWORK_DOWN,
        ] {
            let short = name.rsplit('.').next().unwrap();
            assert!(idl.lines().any(|l| l.starts_with(&format!("error {short} "))), "{name}");
        }
        assert!(idl.contains(&MAX_DM_TEXT_BYTES.to_string()) && idl.contains(&MAX_POST_TEXT_BYTES.to_string()));
    }
}
