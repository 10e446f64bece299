//! `dm send | list` and `channel post | messages` (io.dchat.Messages), with
//! their legacy spellings under `account`.
//!
//! Lists print one line per message, or with `--json` one array; under
//! `--follow` every message that arrives or changes state is printed as it
//! comes, with `--json` as one JSON object per line (JSON Lines).

use std::path::Path;

use dchat_control::api::{self, Dm, Post};
use serde::Serialize;

use super::call;
use super::channel::channel_name;
use super::follow::follow;
use crate::cli::{ChannelMessagesArgs, ChannelPostArgs, DmListArgs, DmSendArgs};
use crate::error::CtlError;
use crate::{outln, output};

pub async fn send_dm(args: &DmSendArgs, socket: &Path, json: bool) -> Result<u8, CtlError> {
    check_text(&args.text, api::MAX_DM_TEXT_BYTES)?;
    let params = api::SendDm {
        from: args.from.clone(),
        to: account_ref(&args.to),
        text: args.text.clone(),
    };
    let r: api::DmReply = call(socket, api::SEND_DM, &params).await?;
    if json {
        output::json(&r.message)?;
    } else {
        outln!("{}", dm_line(&r.message))?;
    }
    Ok(0)
}

pub async fn list_dms(args: &DmListArgs, socket: &Path, json: bool) -> Result<u8, CtlError> {
    let params = api::ListDms {
        user: args.user.clone(),
        with: args.with.as_deref().map(account_ref),
    };
    if args.follow {
        return follow(socket, api::LIST_DMS, &params, |r: api::DmList| {
            r.messages
                .iter()
                .try_for_each(|m| outln!("{}", followed(m, dm_line, json)?))
        })
        .await;
    }
    let r: api::DmList = call(socket, api::LIST_DMS, &params).await?;
    if json {
        output::json(&r.messages)?;
    } else if r.messages.is_empty() {
        outln!("no direct messages")?;
    } else {
        for m in &r.messages {
            outln!("{}", dm_line(m))?;
        }
    }
    Ok(0)
}

pub async fn post(args: &ChannelPostArgs, socket: &Path, json: bool) -> Result<u8, CtlError> {
    check_text(&args.text, api::MAX_POST_TEXT_BYTES)?;
    let params = api::PostChannel {
        user: args.user.clone(),
        channel: channel_name(&args.channel),
        text: args.text.clone(),
    };
    let r: api::PostReply = call(socket, api::POST_CHANNEL, &params).await?;
    if json {
        output::json(&PostOut::from(&r.message))?;
    } else {
        outln!("{}", post_line(&r.message))?;
    }
    Ok(0)
}

pub async fn channel_messages(args: &ChannelMessagesArgs, socket: &Path, json: bool) -> Result<u8, CtlError> {
    let params = api::ChannelMessages {
        channel: channel_name(&args.channel),
        limit: args.limit,
    };
    if args.follow {
        return follow(socket, api::CHANNEL_MESSAGES, &params, |r: api::PostList| {
            r.messages
                .iter()
                .map(PostOut::from)
                .try_for_each(|p| outln!("{}", followed(&p, |p| post_line(p.post), json)?))
        })
        .await;
    }
    let r: api::PostList = call(socket, api::CHANNEL_MESSAGES, &params).await?;
    if json {
        let out: Vec<PostOut<'_>> = r.messages.iter().map(PostOut::from).collect();
        output::json(&out)?;
    } else if r.messages.is_empty() {
        outln!("no posts in #{}", params.channel)?;
    } else {
        for p in &r.messages {
            outln!("{}", post_line(p))?;
        }
    }
    Ok(0)
}

/// A post as `--json` prints it: the wire fields plus `state`, which
/// scripts read for DMs and posts alike (CLI.md). A post has no delivery
/// state; "sent" marks this node's own posts (no received_at).
#[derive(Debug, Serialize)]
pub struct PostOut<'a> {
    #[serde(flatten)]
    pub post: &'a Post,
    pub state: &'static str,
}

impl<'a> From<&'a Post> for PostOut<'a> {
    fn from(post: &'a Post) -> Self {
        let state = if post.received_at.is_none() { "sent" } else { "received" };
        PostOut { post, state }
    }
}

/// One line for a message under `--follow`: the human line, or with
/// `--json` the object on one line (JSON Lines).
fn followed<T: Serialize>(m: &T, human: impl Fn(&T) -> String, json: bool) -> Result<String, CtlError> {
    if json {
        serde_json::to_string(m).map_err(|e| CtlError::Failed(format!("cannot encode output: {e}")))
    } else {
        Ok(human(m))
    }
}

/// `2026-11-22 06:40:01  alice → bob  [delivered]  hello`
pub fn dm_line(m: &Dm) -> String {
    format!(
        "{}  {} → {}  [{}]  {}",
        output::short_time(&m.sent_at),
        output::sanitize(&m.from),
        output::sanitize(&m.to),
        output::sanitize(&m.state),
        output::sanitize(&m.text)
    )
}

/// `2026-11-22 06:40:01  alice → #general  hello`
pub fn post_line(p: &Post) -> String {
    format!(
        "{}  {} → #{}  {}",
        output::short_time(&p.sent_at),
        output::sanitize(&p.from),
        output::sanitize(&p.channel),
        output::sanitize(&p.text)
    )
}

/// The daemon's own rule, checked before connecting so that a mistake is
/// a usage error with the limit in it.
fn check_text(text: &str, max: usize) -> Result<(), CtlError> {
    if text.is_empty() {
        return Err(CtlError::Usage("the text is empty; there is nothing to send".into()));
    }
    if text.len() > max {
        return Err(CtlError::Usage(format!(
            "the text is {} bytes, more than the limit of {max}",
            text.len()
        )));
    }
    Ok(())
}

/// People write accounts as `@name`; the `@` is not part of the name.
fn account_ref(arg: &str) -> String {
    arg.strip_prefix('@').unwrap_or(arg).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dm(state: &str, text: &str) -> Dm {
        Dm {
            id: "0a1b".into(),
            from: "alice".into(),
            to: "bob".into(),
            text: text.into(),
            sent_at: "2026-11-22T06:40:01Z".into(),
            received_at: None,
            state: state.into(),
            direction: api::dm_direction::OUT.into(),
            content_hash: "ff00".into(),
        }
    }

    fn post(received_at: Option<&str>) -> Post {
        Post {
            id: "0c0d".into(),
            channel: "general".into(),
            from: "bob".into(),
            text: "hi all".into(),
            sent_at: "2026-11-22T06:41:00.250Z".into(),
            received_at: received_at.map(str::to_string),
            content_hash: "ee11".into(),
        }
    }

    #[test]
    fn human_lines() {
        assert_eq!(
            dm_line(&dm(api::dm_state::DELIVERED, "hello")),
            "2026-11-22 06:40:01  alice → bob  [delivered]  hello"
        );
        assert_eq!(
            post_line(&post(Some("2026-11-22T06:41:01Z"))),
            "2026-11-22 06:41:00  bob → #general  hi all"
        );
        // One message, one line, whatever the sender typed.
        let line = dm_line(&dm("sent", "two\nlines \u{1b}[31mred"));
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    }

    #[test]
    fn json_fields_scripts_rely_on() {
        let d = serde_json::to_value(dm(api::dm_state::RELAYED, "hello")).unwrap();
        for key in ["id", "from", "text", "sent_at", "state"] {
            assert!(d.get(key).is_some(), "dm lacks {key}: {d}");
        }
        assert_eq!(d["state"], "relayed");

        let received = post(Some("2026-11-22T06:41:01Z"));
        let p = serde_json::to_value(PostOut::from(&received)).unwrap();
        assert_eq!(
            p,
            json!({
                "id": "0c0d",
                "channel": "general",
                "from": "bob",
                "text": "hi all",
                "sent_at": "2026-11-22T06:41:00.250Z",
                "received_at": "2026-11-22T06:41:01Z",
                "content_hash": "ee11",
                "state": "received"
            })
        );
        let own = post(None);
        assert_eq!(serde_json::to_value(PostOut::from(&own)).unwrap()["state"], "sent");
    }

    #[test]
    fn follow_prints_one_line_per_message() {
        let own = post(None);
        let line = followed(&PostOut::from(&own), |p| post_line(p.post), true).unwrap();
        assert!(!line.contains('\n'), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (back["id"].as_str(), back["state"].as_str()),
            (Some("0c0d"), Some("sent"))
        );

        let m = dm("delivered", "multi\nline");
        let line = followed(&m, dm_line, true).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(serde_json::from_str::<Dm>(&line).unwrap(), m);
        assert_eq!(followed(&m, dm_line, false).unwrap(), dm_line(&m));
    }

    #[test]
    fn text_limits_are_checked_before_sending() {
        assert!(check_text("hi", api::MAX_POST_TEXT_BYTES).is_ok());
        assert!(check_text(&"x".repeat(api::MAX_POST_TEXT_BYTES), api::MAX_POST_TEXT_BYTES).is_ok());
        let long = check_text(&"x".repeat(api::MAX_POST_TEXT_BYTES + 1), api::MAX_POST_TEXT_BYTES).unwrap_err();
        assert_eq!(long.exit_code(), crate::error::EX_USAGE);
        assert!(long.message().contains("16384"), "{}", long.message());
        assert_eq!(
            check_text("", api::MAX_DM_TEXT_BYTES).unwrap_err().exit_code(),
            crate::error::EX_USAGE
        );
    }

    #[test]
    fn a_leading_at_is_not_part_of_the_account() {
        assert_eq!(account_ref("@bob"), "bob");
        assert_eq!(account_ref("bob"), "bob");
    }
}
