//! Direct messages and channel posts as the control socket sees them:
//! checks of what the caller asked, then the protocol layer (`p2p::dm`,
//! `p2p::channels`) to seal, store and send. Sending returns once the
//! message is committed locally and handed to the network; nothing here
//! waits for a peer or for the chain.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Node, ServiceError};
use crate::ledger::Account;
use crate::messaging::{Content, MAX_POST_TEXT_BYTES, MAX_TEXT_BYTES};
use crate::p2p::{self, Change};
use crate::storage::{ChannelPostRow, MessageRow};

fn check_text(text: &str, max: usize) -> Result<(), ServiceError> {
    if text.trim().is_empty() {
        return Err(ServiceError::EmptyText);
    }
    if text.len() > max {
        return Err(ServiceError::TextTooLong(max));
    }
    Ok(())
}

impl Node {
    /// The registered account `to` names: a name in any case, or an id
    /// (the hex identity key).
    fn recipient(&self, to: &str) -> Result<Account, ServiceError> {
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        let by_key = <[u8; 32]>::try_from(hex::decode(to).unwrap_or_default().as_slice()).ok();
        chain
            .read(|s| match by_key {
                Some(key) => s.account_by_key(&key).cloned(),
                None => s.account(to).cloned(),
            })
            .ok_or_else(|| ServiceError::NoSuchRecipient(to.to_string()))
    }

    /// Sends a direct message from a local account, first half: checks it
    /// and gives it its place in the conversation; sealing and storing it
    /// is the draft's
    /// [`commit`](p2p::dm::Draft::commit), which may run concurrently with
    /// other drafts' without changing their order.
    pub async fn draft_dm(
        self: &Arc<Self>,
        from: Option<String>,
        to: &str,
        text: &str,
    ) -> Result<p2p::dm::Draft, ServiceError> {
        check_text(text, MAX_TEXT_BYTES)?;
        if self.p2p().is_none() {
            return Err(ServiceError::NetworkDown);
        }
        let signer = self.local_signer(from).await?;
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        let key = signer.identity.identity_public();
        if chain.read(|s| s.account_by_key(&key).is_none()) {
            return Err(ServiceError::NotRegistered(signer.name));
        }
        let recipient = self.recipient(to)?;
        p2p::dm::draft(
            self,
            &signer.name,
            &signer.identity,
            &recipient,
            Content::Text(text.to_string()),
        )
        .await
    }

    /// The name of the local account `user` picks (or the only one).
    pub async fn local_signer_name(self: &Arc<Self>, user: Option<String>) -> Result<String, ServiceError> {
        Ok(self.local_signer(user).await?.name)
    }

    /// The registered name of the account `with` names (a name or an
    /// identity key in hex, a leading `@` ignored), as `dm list --with`
    /// takes it.
    pub fn peer_name(self: &Arc<Self>, with: &str) -> Result<String, ServiceError> {
        self.recipient(with.trim_start_matches('@'))
            .map(|a| a.name)
            .map_err(|_| ServiceError::NotFound(with.to_string()))
    }

    /// A local account's direct messages, optionally with one peer only,
    /// in reading order.
    pub async fn list_dms(
        self: &Arc<Self>,
        user: Option<String>,
        with: Option<String>,
    ) -> Result<Vec<MessageRow>, ServiceError> {
        let signer = self.local_signer(user).await?;
        let peer = match with {
            Some(w) => Some(self.peer_name(&w)?),
            None => None,
        };
        let name = signer.name;
        self.with_db(move |db, _| Ok(db.list_messages(&name, peer.as_deref())?))
            .await
    }

    /// Stored direct messages of local accounts by (account, id), read
    /// together; `None` for each that is not there.
    pub async fn dms(
        self: &Arc<Self>,
        wanted: Vec<(String, [u8; 16])>,
    ) -> Result<Vec<Option<MessageRow>>, ServiceError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.with_db(move |db, _| {
            wanted
                .iter()
                .map(|(account, id)| Ok(db.message(account, id)?))
                .collect()
        })
        .await
    }

    /// Posts to a channel as a local member.
    pub async fn post_channel(
        self: &Arc<Self>,
        user: Option<String>,
        channel: &str,
        text: &str,
    ) -> Result<ChannelPostRow, ServiceError> {
        check_text(text, MAX_POST_TEXT_BYTES)?;
        if self.p2p().is_none() {
            return Err(ServiceError::NetworkDown);
        }
        let signer = self.local_signer(user).await?;
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        let channel_name = chain
            .read(|s| s.channel(channel).map(|c| (c.name.clone(), c.members.clone())))
            .ok_or_else(|| super::ChannelError::NoSuchChannel(channel.to_string()))?;
        let (name, members) = channel_name;
        if !members.iter().any(|m| m.eq_ignore_ascii_case(&signer.name)) {
            return Err(ServiceError::NotMember {
                channel: name,
                account: signer.name,
            });
        }
        p2p::channels::publish(self, &signer.name, &signer.identity, &name, text).await
    }

    /// The newest `limit` posts of a channel, oldest first.
    pub async fn channel_messages(
        self: &Arc<Self>,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<ChannelPostRow>, ServiceError> {
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        if chain.read(|s| s.channel(channel).is_none()) {
            return Err(super::ChannelError::NoSuchChannel(channel.to_string()).into());
        }
        let channel = channel.to_lowercase();
        self.with_db(move |db, _| Ok(db.channel_posts(&channel, limit)?)).await
    }

    /// One stored post.
    pub async fn channel_post(
        self: &Arc<Self>,
        channel: &str,
        id: [u8; 16],
    ) -> Result<Option<ChannelPostRow>, ServiceError> {
        let channel = channel.to_lowercase();
        Ok(self
            .with_db(move |db, _| Ok(db.channel_posts(&channel, 10_000)?))
            .await?
            .into_iter()
            .find(|p| p.id == id))
    }

    /// Changes to DMs and posts, for followers.
    pub fn watch_messages(&self) -> Option<broadcast::Receiver<Change>> {
        self.p2p().map(|s| s.changes.subscribe())
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<crate::network::PeerInfo>, ServiceError> {
        let shared = self.p2p().ok_or(ServiceError::NetworkDown)?;
        shared.net.peers().await.map_err(|_| ServiceError::NetworkDown)
    }
}
