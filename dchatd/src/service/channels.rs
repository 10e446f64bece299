//! Channels on chain: create, join, leave, invite, list and show.
//!
//! Every change is a ledger transaction signed with a local account's key.
//! The call returns once the block holding it is final, so what it returns
//! is what every node agrees on. Names, descriptions and the signer are
//! checked here first: a request the ledger would refuse for its shape
//! never becomes a transaction.

use std::sync::Arc;

use dchat_control::api;

use super::accounts::Signer;
use super::{Node, ServiceError};
use crate::chain::{Chain, ChainError};
use crate::ledger::{self, LedgerState, Rejection, SignedTx, TxKind};

/// Why a channel request was refused: by the checks here or by the ledger.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name {0:?} is taken")]
    Taken(String),
    #[error("no channel named {0:?}")]
    NoSuchChannel(String),
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("the description is {length} bytes, more than the limit of {max}")]
    DescriptionTooLong { length: usize, max: usize },
    #[error("channel {channel:?} is invite-only and {account} has no invitation")]
    NotInvited { channel: String, account: String },
    #[error("{account} is already a member of channel {channel:?}")]
    AlreadyMember { channel: String, account: String },
    #[error("{account} is not a member of channel {channel:?}")]
    NotMember { channel: String, account: String },
    #[error("only the owner of channel {channel:?} ({owner}) may do this")]
    NotOwner { channel: String, owner: String },
    #[error("channel {0:?} is open to everyone; invitations are for invite-only channels")]
    NotInviteOnly(String),
    #[error("{account} is already invited to channel {channel:?}")]
    AlreadyInvited { channel: String, account: String },
    #[error("the chain refused the transaction: {0}")]
    Rejected(String),
}

/// Channel names follow the one rule in the protocol crate (the ledger's).
fn validate_channel(name: &str) -> Result<(), ChannelError> {
    match api::channel_name_problem(name) {
        Some(reason) => Err(ChannelError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// The wire form of a channel. The ledger keys members by the lowercase
/// form of their names; people see the spelling each account registered.
fn to_api(c: &ledger::Channel, state: &LedgerState) -> api::Channel {
    let display = |n: &String| state.account(n).map_or_else(|| n.clone(), |a| a.name.clone());
    api::Channel {
        name: c.name.clone(),
        owner: display(&c.owner),
        description: c.description.clone(),
        invite_only: c.invite_only,
        members: c.members.iter().map(display).collect(),
        invited: c.invited.iter().map(display).collect(),
        created_height: c.created_at,
    }
}

/// Maps a ledger rejection onto what the caller did wrong. `actor` signed;
/// `guest` is the account an invitation was for; `owner_of` names a
/// channel's owner for the NotOwner message.
fn refused(r: Rejection, actor: &str, guest: Option<&str>, owner_of: impl FnOnce(&str) -> String) -> ServiceError {
    let who = |c: String| (c, guest.unwrap_or(actor).to_string());
    let e = match r {
        Rejection::ChannelTaken(c) => ChannelError::Taken(c),
        Rejection::NoSuchChannel(c) => ChannelError::NoSuchChannel(c),
        Rejection::NotInvited(c) => ChannelError::NotInvited {
            channel: c,
            account: actor.to_string(),
        },
        Rejection::AlreadyMember(c) => {
            let (channel, account) = who(c);
            ChannelError::AlreadyMember { channel, account }
        }
        Rejection::NotMember(c) => ChannelError::NotMember {
            channel: c,
            account: actor.to_string(),
        },
        Rejection::NotOwner(c) => ChannelError::NotOwner {
            owner: owner_of(&c),
            channel: c,
        },
        Rejection::NotInviteOnly(c) => ChannelError::NotInviteOnly(c),
        Rejection::AlreadyInvited(c) => {
            let (channel, account) = who(c);
            ChannelError::AlreadyInvited { channel, account }
        }
        Rejection::NoSuchAccount(a) => return ServiceError::NotFound(a),
        Rejection::UnknownSigner => return ServiceError::NotRegistered(actor.to_string()),
        other => ChannelError::Rejected(other.to_string()),
    };
    e.into()
}

fn chain_failure(e: ChainError, chain: &Chain, actor: &str, guest: Option<&str>) -> ServiceError {
    match e {
        ChainError::Rejected(r) => refused(r, actor, guest, |c| {
            chain.read(|s| s.channel(c).map(|ch| to_api(ch, s).owner).unwrap_or_default())
        }),
        ChainError::Timeout(_) => ServiceError::ChainTimeout(e.to_string()),
        ChainError::ShuttingDown => ServiceError::ShuttingDown,
        ChainError::NoChain => ServiceError::NoChain,
        // A full or duplicate pool entry: the request itself was fine.
        ChainError::Pool(reason) => ChannelError::Rejected(reason).into(),
        other => ServiceError::Internal(format!("channel transaction: {other}")),
    }
}

impl Node {
    pub async fn create_channel(self: &Arc<Self>, p: api::CreateChannel) -> Result<api::ChannelChange, ServiceError> {
        validate_channel(&p.channel)?;
        let description = p.description.unwrap_or_default();
        if description.len() > api::MAX_DESCRIPTION_LEN {
            return Err(ChannelError::DescriptionTooLong {
                length: description.len(),
                max: api::MAX_DESCRIPTION_LEN,
            }
            .into());
        }
        let signer = self.local_signer(p.owner).await?;
        let kind = TxKind::CreateChannel {
            name: p.channel.clone(),
            description,
            invite_only: p.invite_only.unwrap_or(false),
        };
        self.change_channel(signer, &p.channel, kind, None).await
    }

    pub async fn join_channel(self: &Arc<Self>, p: api::ChannelMembership) -> Result<api::ChannelChange, ServiceError> {
        validate_channel(&p.channel)?;
        let signer = self.local_signer(p.user).await?;
        let kind = TxKind::JoinChannel {
            channel: p.channel.clone(),
        };
        self.change_channel(signer, &p.channel, kind, None).await
    }

    pub async fn leave_channel(
        self: &Arc<Self>,
        p: api::ChannelMembership,
    ) -> Result<api::ChannelChange, ServiceError> {
        validate_channel(&p.channel)?;
        let signer = self.local_signer(p.user).await?;
        let kind = TxKind::LeaveChannel {
            channel: p.channel.clone(),
        };
        self.change_channel(signer, &p.channel, kind, None).await
    }

    pub async fn invite_to_channel(
        self: &Arc<Self>,
        p: api::InviteToChannel,
    ) -> Result<api::ChannelChange, ServiceError> {
        validate_channel(&p.channel)?;
        let guest = self.guest_name(&p.account)?;
        let signer = self.local_signer(p.owner).await?;
        let kind = TxKind::InviteToChannel {
            channel: p.channel.clone(),
            account: guest.clone(),
        };
        self.change_channel(signer, &p.channel, kind, Some(&guest)).await
    }

    /// Every channel on the finalized chain, ordered by name.
    pub fn list_channels(&self) -> Result<Vec<api::Channel>, ServiceError> {
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        Ok(chain.read(|s| s.channels().map(|c| to_api(c, s)).collect()))
    }

    pub fn show_channel(&self, name: &str) -> Result<api::Channel, ServiceError> {
        validate_channel(name)?;
        let chain = self.chain().ok_or(ServiceError::NoChain)?;
        chain
            .read(|s| s.channel(name).map(|c| to_api(c, s)))
            .ok_or_else(|| ChannelError::NoSuchChannel(name.to_string()).into())
    }

    /// Invitations name accounts; an id is taken too and turned into the
    /// name it registered.
    fn guest_name(&self, account: &str) -> Result<String, ServiceError> {
        if !dchat_keyfile::is_valid_id(account) {
            super::validate_name(account)?;
            return Ok(account.to_string());
        }
        let key = hex::decode(account)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
        self.chain()
            .zip(key)
            .and_then(|(chain, key)| chain.read(|s| s.account_by_key(&key).map(|a| a.name.clone())))
            .ok_or_else(|| ServiceError::NotFound(account.to_string()))
    }

    /// Signs `kind` with `signer`'s key, submits it, waits until it is
    /// final and returns `channel` as the chain then records it.
    async fn change_channel(
        self: &Arc<Self>,
        signer: Signer,
        channel: &str,
        kind: TxKind,
        guest: Option<&str>,
    ) -> Result<api::ChannelChange, ServiceError> {
        let chain = self.committing_chain()?;
        let key = signer.identity.signing_key().verifying_key().to_bytes();
        if chain.read(|s| s.account_by_key(&key).is_none()) {
            return Err(ServiceError::NotRegistered(signer.name));
        }
        let action = match &kind {
            TxKind::CreateChannel { .. } => "channel created",
            TxKind::JoinChannel { .. } => "channel joined",
            TxKind::LeaveChannel { .. } => "channel left",
            _ => "channel invitation sent",
        };
        let chain_id = chain.genesis().chain_id.clone();
        let finalized = chain
            .sign_submit_and_wait(
                &key,
                |nonce| SignedTx::create(&signer.identity, &chain_id, nonce, kind),
                chain.finality_timeout(),
            )
            .await
            .map_err(|e| chain_failure(e, &chain, &signer.name, guest))?;
        tracing::info!(account = %signer.name, channel, guest, height = finalized.height, "{action}");
        let now = chain.read(|s| s.channel(channel).map(|c| to_api(c, s)));
        let channel = now.ok_or_else(|| ChannelError::NoSuchChannel(channel.to_string()))?;
        Ok(api::ChannelChange {
            signer: signer.name,
            channel,
            height: finalized.height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule_is_the_ledgers() {
        for name in [
            "general",
            "Rust-lang",
            "a",
            "0day",
            "x.y_z",
            "",
            "#general",
            "-x",
            ".x",
            "a b",
            "café",
            &"n".repeat(32),
            &"n".repeat(33),
        ] {
            assert_eq!(
                validate_channel(name).is_ok(),
                ledger::validate_name(name).is_ok(),
                "{name:?}"
            );
        }
        assert_eq!(api::MAX_DESCRIPTION_LEN, ledger::MAX_DESCRIPTION_LEN);
    }

    fn kind(e: ServiceError) -> String {
        match e {
            ServiceError::Channel(c) => format!("{c:?}"),
            other => format!("service {other:?}"),
        }
    }

    #[test]
    fn rejections_name_who_and_what() {
        let owner = |_: &str| "alice".to_string();
        let r = refused(Rejection::NotInvited("club".into()), "bob", None, owner);
        assert_eq!(
            r.to_string(),
            r#"channel "club" is invite-only and bob has no invitation"#
        );
        let r = refused(Rejection::AlreadyInvited("club".into()), "alice", Some("bob"), owner);
        assert_eq!(r.to_string(), r#"bob is already invited to channel "club""#);
        let r = refused(Rejection::AlreadyMember("club".into()), "carol", None, owner);
        assert_eq!(r.to_string(), r#"carol is already a member of channel "club""#);
        let r = refused(Rejection::NotOwner("club".into()), "bob", Some("carol"), owner);
        assert_eq!(r.to_string(), r#"only the owner of channel "club" (alice) may do this"#);
        assert!(kind(refused(Rejection::ChannelTaken("c".into()), "a", None, owner)).starts_with("Taken"));
        assert!(kind(refused(Rejection::NoSuchChannel("c".into()), "a", None, owner)).starts_with("NoSuchChannel"));
        assert!(matches!(
            refused(Rejection::NoSuchAccount("zed".into()), "a", Some("zed"), owner),
            ServiceError::NotFound(n) if n == "zed"
        ));
        assert!(matches!(
            refused(Rejection::UnknownSigner, "a", None, owner),
            ServiceError::NotRegistered(n) if n == "a"
        ));
        assert!(kind(refused(Rejection::BadNonce { expected: 1, got: 0 }, "a", None, owner)).starts_with("Rejected"));
    }
}
