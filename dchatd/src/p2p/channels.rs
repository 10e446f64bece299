//! Channel posts: signed by their author, published on the channel's
//! gossipsub topic, and believed only when the chain says the channel
//! exists, the author registered that key, and the author is a member.
//! Members store what they accept; relays store every channel's posts.
//! A node that was away catches up by asking peers for the posts since the
//! newest it holds, and checks those the same way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::wire::{Request, Response};
use super::{now_ms, Change, Shared};
use crate::messaging::ChannelPost;
use crate::metrics::DropReason;
use crate::service::{Node, ServiceError};
use crate::storage::ChannelPostRow;

const TOPIC_PREFIX: &str = "dchat/channel/1/";
const CATCH_UP_EVERY: Duration = Duration::from_secs(10);
/// How far before the newest stored post catch-up asks from (clock skew
/// between authors).
const CATCH_UP_MARGIN_MS: u64 = 5 * 60 * 1000;

pub fn topic(channel: &str) -> String {
    format!("{TOPIC_PREFIX}{}", channel.to_lowercase())
}

pub fn channel_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix(TOPIC_PREFIX)
}

/// Why the chain does not let this post stand, if it does not.
pub fn check_against_chain(node: &Node, post: &ChannelPost) -> Result<(), String> {
    let chain = node.chain().ok_or("this node has no chain")?;
    chain.read(|s| {
        let channel = s.channel(&post.channel).ok_or(format!("no channel {}", post.channel))?;
        let author = s.account(&post.author).ok_or(format!("no account {}", post.author))?;
        if author.identity_key != post.author_key {
            return Err(format!("{} did not register this key", post.author));
        }
        if !channel.members.iter().any(|m| m.eq_ignore_ascii_case(&author.name)) {
            return Err(format!("{} is not a member of {}", post.author, channel.name));
        }
        Ok(())
    })
}

fn row_of(post: &ChannelPost, channel: &str, received_at_ms: u64) -> ChannelPostRow {
    ChannelPostRow {
        id: post.id,
        channel: channel.to_lowercase(),
        author: post.author.clone(),
        author_key: post.author_key,
        text: post.text.clone(),
        sent_at_ms: post.sent_at_ms,
        received_at_ms,
        signature: post.signature,
    }
}

pub fn post_of(row: &ChannelPostRow) -> ChannelPost {
    ChannelPost {
        id: row.id,
        channel: row.channel.clone(),
        author: row.author.clone(),
        author_key: row.author_key,
        sent_at_ms: row.sent_at_ms,
        text: row.text.clone(),
        signature: row.signature,
    }
}

/// Verifies and stores one post; true when it checks out (new or not).
async fn take(node: &Arc<Node>, shared: &Shared, expected_channel: &str, bytes: &[u8]) -> bool {
    let post = match ChannelPost::decode(bytes) {
        Ok(p) => p,
        Err(_) => {
            shared.dropped(DropReason::Malformed);
            return false;
        }
    };
    if !post.channel.eq_ignore_ascii_case(expected_channel) {
        shared.dropped(DropReason::Misaddressed);
        return false;
    }
    if post.verify().is_err() {
        shared.dropped(DropReason::BadSignature);
        return false;
    }
    if let Err(why) = check_against_chain(node, &post) {
        tracing::debug!(why, "channel post refused");
        shared.dropped(DropReason::NotPermitted);
        return false;
    }
    let row = row_of(&post, expected_channel, now_ms());
    let (channel, id) = (row.channel.clone(), row.id);
    match node.with_db(move |db, _| Ok(db.insert_channel_post(&row)?)).await {
        Ok(true) => {
            shared.notify(Change::Post { channel, id });
            true
        }
        Ok(false) => {
            shared.dropped(DropReason::Duplicate);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a channel post");
            false
        }
    }
}

/// A gossiped post: accepted (and forwarded by gossipsub) only if valid.
pub async fn on_post(node: &Arc<Node>, shared: &Shared, channel: &str, bytes: &[u8]) -> bool {
    take(node, shared, channel, bytes).await
}

/// Signs, stores and publishes a post by a local member.
pub(crate) async fn publish(
    node: &Arc<Node>,
    author: &str,
    identity: &dchat_keyfile::Identity,
    channel: &str,
    text: &str,
) -> Result<ChannelPostRow, ServiceError> {
    let id = crate::messaging::new_message_id().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let post = ChannelPost::create(identity, id, channel, author, now_ms(), text)
        .map_err(|e| ServiceError::InvalidParameter(e.to_string()))?;
    check_against_chain(node, &post).map_err(ServiceError::NotPermitted)?;
    let row = row_of(&post, channel, now_ms());
    let stored = row.clone();
    node.with_db(move |db, _| Ok(db.insert_channel_post(&stored)?)).await?;
    if let Some(shared) = node.p2p() {
        shared.ensure_subscribed(&topic(channel)).await;
        shared.notify(Change::Post {
            channel: row.channel.clone(),
            id,
        });
        // No subscribed peer yet: members catch up from us later.
        if let Err(e) = shared.net.publish(&topic(channel), post.encode()).await {
            tracing::debug!(error = %e, "post stored, not yet published");
        }
    }
    Ok(row)
}

/// Answers `ChannelHistory`.
pub async fn serve_history(node: &Arc<Node>, channel: &str, since_ms: u64, limit: u32) -> Response {
    let channel = channel.to_lowercase();
    match node
        .with_db(move |db, _| Ok(db.channel_posts_since(&channel, since_ms, limit)?))
        .await
    {
        Ok(rows) => Response::Posts(rows.iter().map(|r| post_of(r).encode()).collect()),
        Err(e) => Response::Refused(format!("cannot read posts: {e}")),
    }
}

/// The channels this node follows: those a local account is a member of,
/// and every channel on a relay.
async fn followed(node: &Arc<Node>) -> Vec<String> {
    let Some(chain) = node.chain() else {
        return Vec::new();
    };
    let relay = node.config().roles.contains(&crate::config::Role::Relay);
    let locals: HashSet<String> = node
        .local_identities()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name.to_lowercase())
        .collect();
    chain.read(|s| {
        s.channels()
            .filter(|c| relay || c.members.iter().any(|m| locals.contains(&m.to_lowercase())))
            .map(|c| c.name.to_lowercase())
            .collect()
    })
}

/// Subscribes to the followed channels and catches up on them.
pub async fn keep_subscribed(node: Arc<Node>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut caught_up: HashSet<String> = HashSet::new();
    let mut last_round = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let channels = followed(&node).await;
        let full_round = last_round.elapsed() >= CATCH_UP_EVERY;
        for channel in &channels {
            shared.ensure_subscribed(&topic(channel)).await;
            if (full_round || !caught_up.contains(channel)) && catch_up(&node, &shared, channel).await {
                caught_up.insert(channel.clone());
            }
        }
        if full_round {
            last_round = tokio::time::Instant::now();
        }
    }
}

/// Asks up to three peers for the posts since the newest we hold; true when
/// at least one answered.
async fn catch_up(node: &Arc<Node>, shared: &Arc<Shared>, channel: &str) -> bool {
    let name = channel.to_string();
    let newest = node
        .with_db(move |db, _| Ok(db.channel_posts(&name, 1)?.last().map(|p| p.sent_at_ms)))
        .await
        .ok()
        .flatten();
    let since = newest.map_or(0, |t| t.saturating_sub(CATCH_UP_MARGIN_MS));
    let request = Request::ChannelHistory {
        channel: channel.to_string(),
        since_ms: since,
        limit: super::wire::MAX_ITEMS,
    };
    let mut answered = false;
    for peer in shared.peers().await.into_iter().take(3) {
        let Ok(peer) = peer.peer_id.parse() else { continue };
        if let Ok(Response::Posts(posts)) = shared.ask(peer, &request).await {
            answered = true;
            for bytes in posts {
                take(node, shared, channel, &bytes).await;
            }
        }
    }
    answered
}
