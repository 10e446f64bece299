//! The rules: whether a transaction is acceptable now, and what it would
//! change. Reads the state, never writes it. Checks run cheapest first:
//! shape, signature, signer, nonce, then the rules of the transaction kind.

use ed25519_dalek::{Signature, VerifyingKey};

use super::commit::Plan;
use super::error::Rejection;
use super::names::{canonical, validate_name};
use super::state::{Account, Anchor, Channel, LedgerState};
use super::tx::{SignedTx, TxKind, MAX_DESCRIPTION_LEN, MAX_TX_BYTES};
use super::verified;

impl LedgerState {
    /// Decides `stx` against the current state, as the next transaction of
    /// the block at `height() + 1`.
    pub(super) fn plan(&self, stx: &SignedTx) -> Result<Plan, Rejection> {
        let tx = &stx.tx;
        check_authentic(&self.chain_id, stx)?;
        let signer = match (&tx.kind, self.names_by_key.get(&tx.signer)) {
            (TxKind::RegisterAccount { .. }, _) => None,
            (_, Some(name)) => Some(name.clone()),
            (_, None) => return Err(Rejection::UnknownSigner),
        };
        let expected = self.next_nonce(&tx.signer);
        if tx.nonce != expected {
            return Err(Rejection::BadNonce {
                expected,
                got: tx.nonce,
            });
        }
        let height = self.height.saturating_add(1);
        // `signer` is Some for every kind but RegisterAccount (matched above).
        let me = signer.unwrap_or_default();
        match &tx.kind {
            TxKind::RegisterAccount {
                name,
                identity_key,
                messaging_key,
            } => {
                if self.names_by_key.contains_key(&tx.signer) {
                    return Err(Rejection::KeyAlreadyRegistered);
                }
                if self.accounts.contains_key(&canonical(name)) {
                    return Err(Rejection::NameTaken(name.clone()));
                }
                Ok(Plan::Register(Account {
                    name: name.clone(),
                    identity_key: *identity_key,
                    messaging_key: *messaging_key,
                    registered_at: height,
                }))
            }
            TxKind::CreateChannel {
                name,
                description,
                invite_only,
            } => {
                if self.channels.contains_key(&canonical(name)) {
                    return Err(Rejection::ChannelTaken(name.clone()));
                }
                Ok(Plan::CreateChannel(Channel {
                    name: name.clone(),
                    owner: me.clone(),
                    description: description.clone(),
                    invite_only: *invite_only,
                    members: [me].into_iter().collect(),
                    invited: Default::default(),
                    created_at: height,
                }))
            }
            TxKind::JoinChannel { channel } => {
                let c = self.channel_named(channel)?;
                if c.members.contains(&me) {
                    return Err(Rejection::AlreadyMember(channel.clone()));
                }
                if c.invite_only && c.owner != me && !c.invited.contains(&me) {
                    return Err(Rejection::NotInvited(channel.clone()));
                }
                Ok(Plan::Join {
                    channel: canonical(channel),
                    account: me,
                })
            }
            TxKind::LeaveChannel { channel } => {
                if !self.channel_named(channel)?.members.contains(&me) {
                    return Err(Rejection::NotMember(channel.clone()));
                }
                Ok(Plan::Leave {
                    channel: canonical(channel),
                    account: me,
                })
            }
            TxKind::InviteToChannel { channel, account } => {
                let c = self.channel_named(channel)?;
                if c.owner != me {
                    return Err(Rejection::NotOwner(channel.clone()));
                }
                if !c.invite_only {
                    return Err(Rejection::NotInviteOnly(channel.clone()));
                }
                let guest = canonical(account);
                if !self.accounts.contains_key(&guest) {
                    return Err(Rejection::NoSuchAccount(account.clone()));
                }
                if c.members.contains(&guest) {
                    return Err(Rejection::AlreadyMember(channel.clone()));
                }
                if c.invited.contains(&guest) {
                    return Err(Rejection::AlreadyInvited(channel.clone()));
                }
                Ok(Plan::Invite {
                    channel: canonical(channel),
                    account: guest,
                })
            }
            TxKind::Stake { role, amount } => {
                let have = self.balance(&tx.signer);
                let balance = have
                    .checked_sub(*amount)
                    .ok_or(Rejection::InsufficientBalance { have, need: *amount })?;
                let stake = self
                    .stake(&tx.signer, *role)
                    .checked_add(*amount)
                    .ok_or(Rejection::Overflow)?;
                Ok(Plan::Stake {
                    role: *role,
                    amount: *amount,
                    balance,
                    stake,
                    staking: true,
                })
            }
            TxKind::Unstake { role, amount } => {
                let have = self.stake(&tx.signer, *role);
                let stake = have.checked_sub(*amount).ok_or(Rejection::InsufficientStake {
                    role: *role,
                    have,
                    need: *amount,
                })?;
                let balance = self
                    .balance(&tx.signer)
                    .checked_add(*amount)
                    .ok_or(Rejection::Overflow)?;
                Ok(Plan::Stake {
                    role: *role,
                    amount: *amount,
                    balance,
                    stake,
                    staking: false,
                })
            }
            TxKind::AnchorMessages { merkle_root, count } => Ok(Plan::Anchor(Anchor {
                signer: tx.signer,
                merkle_root: *merkle_root,
                count: *count,
                height,
            })),
        }
    }

    fn channel_named(&self, name: &str) -> Result<&Channel, Rejection> {
        self.channels
            .get(&canonical(name))
            .ok_or_else(|| Rejection::NoSuchChannel(name.to_string()))
    }
}

/// The checks that need no state: the transaction is well formed and
/// signed by its signer for chain `chain_id`. What a node that only passes
/// a transaction on can check; [`LedgerState::apply`] checks it again.
pub fn check_authentic(chain_id: &str, stx: &SignedTx) -> Result<(), Rejection> {
    check_shape(stx)?;
    let message = stx.tx.signing_message(chain_id);
    let seen = verified::key(&message, &stx.signature);
    if verified::contains(&seen) {
        return Ok(());
    }
    let key = VerifyingKey::from_bytes(&stx.tx.signer).map_err(|_| Rejection::BadSignature)?;
    let signature = Signature::from_bytes(&stx.signature);
    // Strict verification refuses weak keys and non-canonical signatures,
    // so every node agrees on exactly which signatures are valid.
    key.verify_strict(&message, &signature)
        .map_err(|_| Rejection::BadSignature)?;
    verified::insert(seen);
    Ok(())
}

/// Stateless checks: sizes, names, amounts, and fields that must agree.
fn check_shape(stx: &SignedTx) -> Result<(), Rejection> {
    let len = stx.encode().len();
    if len > MAX_TX_BYTES {
        return Err(Rejection::Malformed(format!(
            "transaction is {len} bytes, limit {MAX_TX_BYTES}"
        )));
    }
    match &stx.tx.kind {
        TxKind::RegisterAccount { name, identity_key, .. } => {
            if *identity_key != stx.tx.signer {
                return Err(Rejection::Malformed("identity_key must be the signer's key".into()));
            }
            validate_name(name)
        }
        TxKind::CreateChannel { name, description, .. } => {
            if description.len() > MAX_DESCRIPTION_LEN {
                return Err(Rejection::Malformed(format!(
                    "description longer than {MAX_DESCRIPTION_LEN} bytes"
                )));
            }
            validate_name(name)
        }
        TxKind::JoinChannel { channel } | TxKind::LeaveChannel { channel } => validate_name(channel),
        TxKind::InviteToChannel { channel, account } => validate_name(channel).and_then(|()| validate_name(account)),
        TxKind::Stake { amount, .. } | TxKind::Unstake { amount, .. } => match amount {
            0 => Err(Rejection::ZeroAmount),
            _ => Ok(()),
        },
        TxKind::AnchorMessages { merkle_root, count } => {
            if *count == 0 {
                return Err(Rejection::Malformed("an anchor must cover at least one message".into()));
            }
            if *merkle_root == [0; 32] {
                return Err(Rejection::Malformed("anchor merkle_root is all zero".into()));
            }
            Ok(())
        }
    }
}
