//! Transactions: what they say, how they are signed and named. The byte
//! format is in `tx_encoding.rs`.
//!
//! The signature covers `"dchat-tx-sig/1" ‖ len:u32 ‖ chain_id ‖ <tx bytes
//! without the signature>`, so a transaction signed for one chain (a testnet)
//! cannot be replayed on another. The transaction id is the SHA-256 of the
//! whole signed encoding.

use dchat_keyfile::Identity;
use serde::{Deserialize, Serialize};

use super::codec::{hex_bytes, sha256, Writer};

/// Format tag and version at the start of every encoded transaction.
pub const TX_MAGIC: &[u8] = b"dchat-tx/1";
/// Domain separation for transaction signatures.
pub const SIGN_DOMAIN: &[u8] = b"dchat-tx-sig/1";
/// Largest encoded signed transaction.
pub const MAX_TX_BYTES: usize = 4096;
/// Longest channel description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// What a stake is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StakeRole {
    Validator,
    Relay,
}

impl std::fmt::Display for StakeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StakeRole::Validator => "validator",
            StakeRole::Relay => "relay",
        })
    }
}

/// The action a transaction asks for. Tags in the encoding are 1..=8 in the
/// order listed; they are part of the format and never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxKind {
    /// Claims `name` for the signer. `identity_key` must equal the signer.
    RegisterAccount {
        name: String,
        #[serde(with = "hex_bytes")]
        identity_key: [u8; 32],
        #[serde(with = "hex_bytes")]
        messaging_key: [u8; 32],
    },
    /// Creates a channel owned by the signer, who becomes its first member.
    CreateChannel {
        name: String,
        description: String,
        invite_only: bool,
    },
    JoinChannel {
        channel: String,
    },
    LeaveChannel {
        channel: String,
    },
    /// Lets `account` join an invite-only channel. Owner only.
    InviteToChannel {
        channel: String,
        account: String,
    },
    /// Moves `amount` from the signer's balance into its stake for `role`.
    Stake {
        role: StakeRole,
        amount: u64,
    },
    /// Moves `amount` back from the stake for `role` to the balance.
    Unstake {
        role: StakeRole,
        amount: u64,
    },
    /// Reserved for batched message anchors: the Merkle root of `count`
    /// message hashes. Only its shape is checked for now.
    AnchorMessages {
        #[serde(with = "hex_bytes")]
        merkle_root: [u8; 32],
        count: u32,
    },
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    pub kind: TxKind,
    /// The signer's ed25519 public key.
    #[serde(with = "hex_bytes")]
    pub signer: [u8; 32],
    /// Must equal the signer's next expected nonce (0 for a fresh key).
    pub nonce: u64,
}

/// A transaction with the signer's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub tx: Tx,
    pub signature: [u8; 64],
}

impl Tx {
    /// The exact bytes the signer signs on chain `chain_id`.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(SIGN_DOMAIN);
        w.str(chain_id);
        self.write(&mut w);
        w.into_bytes()
    }

    /// Signs with `identity`. The result only verifies if `self.signer` is
    /// `identity`'s public key; [`SignedTx::create`] sets it for you.
    pub fn sign(self, chain_id: &str, identity: &Identity) -> SignedTx {
        let signature = identity.sign(&self.signing_message(chain_id));
        SignedTx { tx: self, signature }
    }
}

impl SignedTx {
    /// Builds and signs a transaction from `identity` on chain `chain_id`.
    pub fn create(identity: &Identity, chain_id: &str, nonce: u64, kind: TxKind) -> SignedTx {
        let signer = identity.signing_key().verifying_key().to_bytes();
        Tx { kind, signer, nonce }.sign(chain_id, identity)
    }

    /// The transaction id: SHA-256 of the signed encoding.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.encode())
    }
}

/// JSON for `chain tx` and `chain block`: the id, the transaction's fields and
/// the signature, with every key and hash in hex.
impl Serialize for SignedTx {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: String,
            #[serde(flatten)]
            tx: &'a Tx,
            signature: String,
        }
        View {
            id: hex::encode(self.id()),
            tx: &self.tx,
            signature: hex::encode(self.signature),
        }
        .serialize(s)
    }
}
