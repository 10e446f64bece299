//! The canonical encoding of transactions (primitives in `codec`):
//!
//! ```text
//! "dchat-tx/1"  signer[32]  nonce:u64  kind:u8  kind fields…  signature[64]
//! ```
//!
//! Kind tags and their fields, in order: 1 RegisterAccount (name, identity
//! key[32], messaging key[32]); 2 CreateChannel (name, description,
//! invite_only:bool); 3 JoinChannel (channel); 4 LeaveChannel (channel);
//! 5 InviteToChannel (channel, account); 6 Stake and 7 Unstake (role:u8
//! 1=validator 2=relay, amount:u64); 8 AnchorMessages (merkle_root[32],
//! count:u32). Strings are u32-length-prefixed UTF-8: names at most 32
//! bytes, descriptions 1024. A signed transaction is at most 4 KiB.

use super::codec::{Reader, Writer};
use super::error::DecodeError;
use super::names::MAX_NAME_LEN;
use super::tx::{SignedTx, StakeRole, Tx, TxKind, MAX_DESCRIPTION_LEN, MAX_TX_BYTES, TX_MAGIC};

impl StakeRole {
    pub(super) fn tag(self) -> u8 {
        match self {
            StakeRole::Validator => 1,
            StakeRole::Relay => 2,
        }
    }

    fn from_tag(tag: u8) -> Result<StakeRole, DecodeError> {
        match tag {
            1 => Ok(StakeRole::Validator),
            2 => Ok(StakeRole::Relay),
            tag => Err(DecodeError::UnknownTag {
                what: "stake role",
                tag,
            }),
        }
    }
}

impl Tx {
    /// The canonical encoding of the unsigned transaction.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    pub(super) fn write(&self, w: &mut Writer) {
        w.raw(TX_MAGIC);
        w.raw(&self.signer);
        w.u64(self.nonce);
        match &self.kind {
            TxKind::RegisterAccount {
                name,
                identity_key,
                messaging_key,
            } => {
                w.u8(1);
                w.str(name);
                w.raw(identity_key);
                w.raw(messaging_key);
            }
            TxKind::CreateChannel {
                name,
                description,
                invite_only,
            } => {
                w.u8(2);
                w.str(name);
                w.str(description);
                w.bool(*invite_only);
            }
            TxKind::JoinChannel { channel } => {
                w.u8(3);
                w.str(channel);
            }
            TxKind::LeaveChannel { channel } => {
                w.u8(4);
                w.str(channel);
            }
            TxKind::InviteToChannel { channel, account } => {
                w.u8(5);
                w.str(channel);
                w.str(account);
            }
            TxKind::Stake { role, amount } => {
                w.u8(6);
                w.u8(role.tag());
                w.u64(*amount);
            }
            TxKind::Unstake { role, amount } => {
                w.u8(7);
                w.u8(role.tag());
                w.u64(*amount);
            }
            TxKind::AnchorMessages { merkle_root, count } => {
                w.u8(8);
                w.raw(merkle_root);
                w.u32(*count);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Tx, DecodeError> {
        r.magic(TX_MAGIC)?;
        let signer = r.array()?;
        let nonce = r.u64()?;
        let kind = match r.u8()? {
            1 => TxKind::RegisterAccount {
                name: r.string("name", MAX_NAME_LEN)?,
                identity_key: r.array()?,
                messaging_key: r.array()?,
            },
            2 => TxKind::CreateChannel {
                name: r.string("name", MAX_NAME_LEN)?,
                description: r.string("description", MAX_DESCRIPTION_LEN)?,
                invite_only: r.bool()?,
            },
            3 => TxKind::JoinChannel {
                channel: r.string("channel", MAX_NAME_LEN)?,
            },
            4 => TxKind::LeaveChannel {
                channel: r.string("channel", MAX_NAME_LEN)?,
            },
            5 => TxKind::InviteToChannel {
                channel: r.string("channel", MAX_NAME_LEN)?,
                account: r.string("account", MAX_NAME_LEN)?,
            },
            6 => TxKind::Stake {
                role: StakeRole::from_tag(r.u8()?)?,
                amount: r.u64()?,
            },
            7 => TxKind::Unstake {
                role: StakeRole::from_tag(r.u8()?)?,
                amount: r.u64()?,
            },
            8 => TxKind::AnchorMessages {
                merkle_root: r.array()?,
                count: r.u32()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "transaction kind",
                    tag,
                })
            }
        };
        Ok(Tx { kind, signer, nonce })
    }
}

impl SignedTx {
    /// The canonical encoding: the transaction, then the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    fn write(&self, w: &mut Writer) {
        self.tx.write(w);
        w.raw(&self.signature);
    }

    /// Parses exactly one signed transaction. Refuses anything over
    /// [`MAX_TX_BYTES`], unknown tags, oversize strings and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLarge {
                what: "transaction",
                len: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let tx = Tx::read(&mut r)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(SignedTx { tx, signature })
    }
}
