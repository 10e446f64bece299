//! Writing down a decided change. Everything that could fail was decided
//! in `rules.rs`, so committing cannot fail and never half-applies.

use super::apply::Event;
use super::names::canonical;
use super::state::{Account, Anchor, Channel, LedgerState};
use super::tx::{StakeRole, Tx};

/// A decided change, with everything `commit` needs precomputed.
pub(super) enum Plan {
    Register(Account),
    CreateChannel(Channel),
    Join {
        channel: String,
        account: String,
    },
    Leave {
        channel: String,
        account: String,
    },
    Invite {
        channel: String,
        account: String,
    },
    Stake {
        role: StakeRole,
        amount: u64,
        balance: u64,
        stake: u64,
        staking: bool,
    },
    Anchor(Anchor),
}

impl LedgerState {
    /// Writes down a planned change and advances the signer's nonce.
    pub(super) fn commit(&mut self, tx: &Tx, plan: Plan) -> Event {
        self.nonces.insert(tx.signer, tx.nonce.saturating_add(1));
        match plan {
            Plan::Register(account) => {
                let key = canonical(&account.name);
                self.names_by_key.insert(account.identity_key, key.clone());
                self.accounts.insert(key.clone(), account);
                Event::AccountRegistered { account: key }
            }
            Plan::CreateChannel(channel) => {
                let key = canonical(&channel.name);
                let owner = channel.owner.clone();
                self.channels.insert(key.clone(), channel);
                Event::ChannelCreated { channel: key, owner }
            }
            Plan::Join { channel, account } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    c.invited.remove(&account);
                    c.members.insert(account.clone());
                }
                Event::ChannelJoined { channel, account }
            }
            Plan::Leave { channel, account } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    c.members.remove(&account);
                }
                Event::ChannelLeft { channel, account }
            }
            Plan::Invite { channel, account } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    c.invited.insert(account.clone());
                }
                Event::Invited { channel, account }
            }
            Plan::Stake {
                role,
                amount,
                balance,
                stake,
                staking,
            } => {
                self.set_balance(tx.signer, balance);
                self.set_stake(tx.signer, role, stake);
                if staking {
                    Event::Staked {
                        role,
                        amount,
                        balance,
                        stake,
                    }
                } else {
                    Event::Unstaked {
                        role,
                        amount,
                        balance,
                        stake,
                    }
                }
            }
            Plan::Anchor(anchor) => {
                self.anchors.push(anchor);
                Event::MessagesAnchored {
                    index: u64::try_from(self.anchors.len().saturating_sub(1)).unwrap_or(u64::MAX),
                }
            }
        }
    }
}
