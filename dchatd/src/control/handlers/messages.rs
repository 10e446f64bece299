//! io.dchat.Messages and io.dchat.Network: direct messages, channel posts
//! and peers. ListDms and ChannelMessages stream with `more`: everything
//! now, then each message that arrives or changes state.

use std::sync::Arc;

use dchat_control::api::{self, errors as dchat_errors};
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::control::conn::Conn;
use crate::control::dispatch::{encode, parse, service_error, Flow};
use crate::p2p::dm::Draft;
use crate::p2p::Change;
use crate::service::{Node, ServiceError};
use crate::storage::{rfc3339_ms, ChannelPostRow, Direction, MessageRow};

/// Most posts one ChannelMessages reply carries without a limit.
const DEFAULT_LIMIT: u64 = 100;

pub fn dm(row: &MessageRow) -> api::Dm {
    let (from, to) = match row.direction {
        Direction::Out => (row.account.clone(), row.peer.clone()),
        Direction::In => (row.peer.clone(), row.account.clone()),
    };
    api::Dm {
        id: hex::encode(row.id),
        from,
        to,
        text: row.text.clone(),
        sent_at: rfc3339_ms(row.sent_at_ms),
        received_at: (row.direction == Direction::In).then(|| rfc3339_ms(row.received_at_ms)),
        state: row.state.as_str().to_string(),
        direction: match row.direction {
            Direction::In => api::dm_direction::IN,
            Direction::Out => api::dm_direction::OUT,
        }
        .to_string(),
        content_hash: hex::encode(row.content_hash),
    }
}

pub fn post(row: &ChannelPostRow, local: bool) -> api::Post {
    api::Post {
        id: hex::encode(row.id),
        channel: row.channel.clone(),
        from: row.author.clone(),
        text: row.text.clone(),
        sent_at: rfc3339_ms(row.sent_at_ms),
        received_at: (!local).then(|| rfc3339_ms(row.received_at_ms)),
        content_hash: hex::encode(crate::ledger::codec::sha256(row.text.as_bytes())),
    }
}

async fn local_names(node: &Arc<Node>) -> Vec<String> {
    node.local_identities()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n.to_lowercase())
        .collect()
}

async fn posts(node: &Arc<Node>, rows: &[ChannelPostRow]) -> Vec<api::Post> {
    let locals = local_names(node).await;
    rows.iter()
        .map(|r| post(r, locals.contains(&r.author.to_lowercase())))
        .collect()
}

pub async fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::NETWORK_PEERS => {
            parse::<api::Empty>(params)?;
            let peers = node.peers().await.map_err(service_error)?;
            encode(api::PeerList {
                peers: peers
                    .into_iter()
                    .map(|p| api::Peer {
                        peer_id: p.peer_id,
                        addresses: p.addresses,
                        direction: p.direction.to_string(),
                        agent: p.agent,
                        roles: p.roles,
                        rtt_ms: p.rtt_ms,
                        connected_for_s: p.connected_for_s,
                    })
                    .collect(),
            })
        }
        api::SEND_DM => commit_dm(node, draft_dm(node, params).await?).await,
        api::LIST_DMS => {
            let p: api::ListDms = parse(params)?;
            let rows = node.list_dms(p.user, p.with).await.map_err(service_error)?;
            encode(api::DmList {
                messages: rows.iter().map(dm).collect(),
            })
        }
        api::POST_CHANNEL => {
            let p: api::PostChannel = parse(params)?;
            let row = node
                .post_channel(p.user, &p.channel, &p.text)
                .await
                .map_err(service_error)?;
            encode(api::PostReply {
                message: post(&row, true),
            })
        }
        api::CHANNEL_MESSAGES => {
            let p: api::ChannelMessages = parse(params)?;
            let limit = u32::try_from(p.limit.unwrap_or(DEFAULT_LIMIT)).unwrap_or(u32::MAX);
            let rows = node.channel_messages(&p.channel, limit).await.map_err(service_error)?;
            encode(api::PostList {
                messages: posts(node, &rows).await,
            })
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}

/// SendDm, first half: checks the call and takes the message's place in
/// its conversation.
pub async fn draft_dm(node: &Arc<Node>, params: Value) -> Result<Draft, Reply> {
    let p: api::SendDm = parse(params)?;
    node.draft_dm(p.from, &p.to, &p.text).await.map_err(service_error)
}

/// SendDm, second half: seals and stores the message; the reply.
pub async fn commit_dm(node: &Arc<Node>, draft: Draft) -> Result<Value, Reply> {
    let row = draft.commit(node).await.map_err(service_error)?;
    encode(api::DmReply { message: dm(&row) })
}

/// Whether `method` streams when called with `more`.
pub fn streams(method: &str) -> bool {
    method == api::LIST_DMS || method == api::CHANNEL_MESSAGES
}

/// ListDms / ChannelMessages with `more`: the current list, then each new
/// or changed message, until the client hangs up or the daemon stops.
pub async fn stream(
    node: &Arc<Node>,
    conn: &mut Conn,
    method: &str,
    params: Value,
    shutdown: &CancellationToken,
) -> Flow {
    let Some(mut changes) = node.watch_messages() else {
        return send_last(conn, service_error(ServiceError::NetworkDown)).await;
    };
    // Subscribed before the first list: nothing falls between the two.
    let first = call(node, method, params.clone()).await;
    let first = match first {
        Ok(v) => v,
        Err(reply) => return send_last(conn, reply).await,
    };
    let relist = params.clone();
    let filter = match method {
        api::LIST_DMS => {
            let p: api::ListDms = match parse(params) {
                Ok(p) => p,
                Err(r) => return send_last(conn, r).await,
            };
            // The account and peer the first list resolved.
            let account = node.local_signer_name(p.user).await.ok();
            Filter::Dms {
                account: account.unwrap_or_default(),
                with: p.with.map(|w| node.peer_name(&w).unwrap_or(w)),
            }
        }
        _ => {
            let p: api::ChannelMessages = match parse(params) {
                Ok(p) => p,
                Err(r) => return send_last(conn, r).await,
            };
            Filter::Channel(p.channel.trim_start_matches('#').to_lowercase())
        }
    };
    if !send_more(conn, first).await {
        return Flow::Close;
    }
    loop {
        let change = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return shutting_down(conn).await,
            _ = conn.closed() => return Flow::Close,
            c = changes.recv() => c,
        };
        let mut batch = match change {
            Ok(change) => vec![change],
            Err(RecvError::Lagged(missed)) => {
                if let Some(flow) = list_again(node, conn, method, &relist, missed).await {
                    return flow;
                }
                continue;
            }
            Err(RecvError::Closed) => return Flow::Close,
        };
        // What else is waiting already is looked at together: the rows a
        // burst of changes needs are read in one go.
        let mut missed = 0;
        while batch.len() < FOLLOW_BATCH {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                // Changes missed: the whole list follows this batch.
                Err(TryRecvError::Lagged(n)) => {
                    missed = n;
                    break;
                }
                Err(_) => break,
            }
        }
        for value in filter.fetch(node, batch).await {
            if shutdown.is_cancelled() {
                return shutting_down(conn).await;
            }
            if !send_more(conn, value).await {
                return Flow::Close;
            }
        }
        if missed > 0 {
            if let Some(flow) = list_again(node, conn, method, &relist, missed).await {
                return flow;
            }
        }
    }
}

/// A follower fell behind the change channel's 4096 slots and `missed`
/// changes are gone: rather than lose messages, it gets the whole list
/// again (a reply may always hold messages it has seen). Some(flow) when
/// the stream ends.
async fn list_again(node: &Arc<Node>, conn: &mut Conn, method: &str, params: &Value, missed: u64) -> Option<Flow> {
    tracing::warn!(missed, "a follower fell behind; sending it the whole list again");
    match call(node, method, params.clone()).await {
        Ok(list) => (!send_more(conn, list).await).then_some(Flow::Close),
        Err(reply) => Some(send_last(conn, reply).await),
    }
}

/// Sends one reply of a stream (`"continues": true`); false when the
/// client is gone.
async fn send_more(conn: &mut Conn, value: Value) -> bool {
    let mut reply = Reply::ok(value);
    reply.continues = true;
    conn.send(&reply).await.is_ok()
}

/// Ends a stream because the daemon stops.
async fn shutting_down(conn: &mut Conn) -> Flow {
    let _ = conn.send(&Reply::error(dchat_errors::SHUTTING_DOWN, json!({}))).await;
    Flow::Close
}

/// Most changes a follower looks at together.
const FOLLOW_BATCH: usize = 256;

async fn send_last(conn: &mut Conn, reply: Reply) -> Flow {
    if conn.send(&reply).await.is_err() {
        Flow::Close
    } else {
        Flow::Continue
    }
}

enum Filter {
    Dms { account: String, with: Option<String> },
    Channel(String),
}

impl Filter {
    /// The replies for those of `changes` this stream shows, in order.
    async fn fetch(&self, node: &Arc<Node>, changes: Vec<Change>) -> Vec<Value> {
        match self {
            Filter::Dms { account, with } => {
                let ours: Vec<(String, [u8; 16], Option<Arc<MessageRow>>)> = changes
                    .into_iter()
                    .filter_map(|change| match change {
                        Change::Dm { account: a, id, row } if a.eq_ignore_ascii_case(account) => Some((a, id, row)),
                        _ => None,
                    })
                    .collect();
                // A change of state carries no row: read those together.
                let wanted = ours
                    .iter()
                    .filter(|(_, _, row)| row.is_none())
                    .map(|(a, id, _)| (a.clone(), *id))
                    .collect();
                let read = node.dms(wanted).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "a follower cannot read the messages that changed");
                    Vec::new()
                });
                let mut read = read.into_iter();
                ours.into_iter()
                    .filter_map(|(_, _, row)| match row {
                        Some(row) => Some(row),
                        None => read.next().flatten().map(Arc::new),
                    })
                    .filter(|row| with.as_ref().is_none_or(|w| row.peer.eq_ignore_ascii_case(w)))
                    .filter_map(|row| {
                        serde_json::to_value(api::DmList {
                            messages: vec![dm(&row)],
                        })
                        .ok()
                    })
                    .collect()
            }
            Filter::Channel(channel) => {
                let mut out = Vec::new();
                for change in changes {
                    let Change::Post { channel: c, id } = change else {
                        continue;
                    };
                    if c != *channel {
                        continue;
                    }
                    let Some(row) = node.channel_post(&c, id).await.ok().flatten() else {
                        continue;
                    };
                    let messages = posts(node, std::slice::from_ref(&row)).await;
                    if let Ok(v) = serde_json::to_value(api::PostList { messages }) {
                        out.push(v);
                    }
                }
                out
            }
        }
    }
}
