//! Channel posts: signed by their author, published on the channel's
//! gossipsub topic, and believed only when the chain says the channel
//! exists, the author registered that key, and the author is a member.
//! Members store what they accept; relays store every channel's posts.
//! A node that was away catches up by asking peers for the posts since the
//! newest it holds, and checks those the same way.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::wire::{Request, Response};
use super::{now_ms, Change, Shared};
use crate::messaging::ChannelPost;
use crate::metrics::DropReason;
use crate::network::Verdict;
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

/// Why the chain does not let a post stand.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The channel or author is unknown here: perhaps our chain is behind.
    Unknown(String),
    /// Known, and not allowed (other key, not a member).
    NotAllowed(String),
}

impl Refusal {
    pub fn reason(self) -> String {
        match self {
            Refusal::Unknown(r) | Refusal::NotAllowed(r) => r,
        }
    }
}

/// Why the chain does not let this post stand, if it does not.
pub fn check_against_chain(node: &Node, post: &ChannelPost) -> Result<(), Refusal> {
    let chain = node
        .chain()
        .ok_or_else(|| Refusal::Unknown("this node has no chain".into()))?;
    chain.read(|s| {
        let channel = s
            .channel(&post.channel)
            .ok_or_else(|| Refusal::Unknown(format!("no channel {}", post.channel)))?;
        let author = s
            .account(&post.author)
            .ok_or_else(|| Refusal::Unknown(format!("no account {}", post.author)))?;
        if author.identity_key != post.author_key {
            return Err(Refusal::NotAllowed(format!(
                "{} did not register this key",
                post.author
            )));
        }
        if !channel.members.iter().any(|m| m.eq_ignore_ascii_case(&author.name)) {
            // Could be a join we have not seen yet; members' nodes that are
            // up to date decide for the mesh.
            return Err(Refusal::NotAllowed(format!(
                "{} is not a member of {}",
                post.author, channel.name
            )));
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

/// Verifies and stores one post.
async fn take(node: &Arc<Node>, shared: &Shared, expected_channel: &str, bytes: &[u8]) -> Verdict {
    let post = match ChannelPost::decode(bytes) {
        Ok(p) => p,
        Err(_) => {
            shared.dropped(DropReason::Malformed);
            return Verdict::Reject;
        }
    };
    if !post.channel.eq_ignore_ascii_case(expected_channel) {
        shared.dropped(DropReason::Misaddressed);
        return Verdict::Reject;
    }
    if post.verify().is_err() {
        shared.dropped(DropReason::BadSignature);
        return Verdict::Reject;
    }
    match check_against_chain(node, &post) {
        Ok(()) => {}
        Err(Refusal::Unknown(why)) => {
            tracing::debug!(why, "channel post not checkable yet");
            shared.dropped(DropReason::NotPermitted);
            return Verdict::Ignore;
        }
        Err(Refusal::NotAllowed(why)) => {
            tracing::debug!(why, "channel post refused");
            shared.dropped(DropReason::NotPermitted);
            return Verdict::Reject;
        }
    }
    let row = row_of(&post, expected_channel, now_ms());
    let (channel, id) = (row.channel.clone(), row.id);
    match node.with_db(move |db, _| Ok(db.insert_channel_post(&row)?)).await {
        Ok(true) => {
            shared.notify(Change::Post { channel, id });
            Verdict::Accept
        }
        // Valid, seen before (catch-up overlaps what gossip brought).
        Ok(false) => Verdict::Accept,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a channel post");
            Verdict::Ignore
        }
    }
}

/// A gossiped post: accepted (and forwarded by gossipsub) only if valid.
pub async fn on_post(node: &Arc<Node>, shared: &Shared, channel: &str, bytes: &[u8]) -> Verdict {
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
    let now = now_ms();
    let id = crate::messaging::new_message_id(now).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let post = ChannelPost::create(identity, id, channel, author, now, text)
        .map_err(|e| ServiceError::InvalidParameter(e.to_string()))?;
    check_against_chain(node, &post).map_err(|r| ServiceError::NotPermitted(r.reason()))?;
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
    // Per channel: when the last catch-up that got an answer started.
    let mut caught_up: HashMap<String, u64> = HashMap::new();
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
            let since = caught_up.get(channel).copied();
            if full_round || since.is_none() {
                let started = now_ms();
                let from = since.map_or(0, |t| t.saturating_sub(CATCH_UP_MARGIN_MS));
                if catch_up(&node, &shared, channel, from).await {
                    caught_up.insert(channel.clone(), started);
                }
            }
        }
        if full_round {
            last_round = tokio::time::Instant::now();
        }
    }
}

/// Asks up to three peers for the posts sent since `since_ms`, a page at a
/// time; true when at least one answered.
async fn catch_up(node: &Arc<Node>, shared: &Arc<Shared>, channel: &str, since_ms: u64) -> bool {
    let mut answered = false;
    for peer in shared.peers().await.into_iter().take(3) {
        let Ok(peer) = peer.peer_id.parse() else { continue };
        let mut since = since_ms;
        // Page on with the newest post of each full page.
        for _ in 0..64 {
            let request = Request::ChannelHistory {
                channel: channel.to_string(),
                since_ms: since,
                limit: super::wire::MAX_ITEMS,
            };
            let Ok(Response::Posts(posts)) = shared.ask(peer, &request).await else {
                break;
            };
            answered = true;
            let full = posts.len() == super::wire::MAX_ITEMS as usize;
            let mut newest = since;
            for bytes in posts {
                if let Ok(p) = ChannelPost::decode(&bytes) {
                    newest = newest.max(p.sent_at_ms);
                }
                take(node, shared, channel, &bytes).await;
            }
            // A full page of posts all sent in the same millisecond cannot
            // be paged past; stop rather than loop.
            if !full || newest == since {
                break;
            }
            since = newest;
        }
    }
    answered
}
