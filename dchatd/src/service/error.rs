//! Errors of the application layer, mapped once onto Varlink errors in
//! `control::dispatch`.

use crate::keystore::KeystoreError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    #[error("these keys belong to account {name:?} ({id})")]
    AlreadyExists { name: String, id: String },
    #[error("no account named {0:?}")]
    NotFound(String),
    #[error("invalid account name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no account named; this daemon hosts {0} local accounts")]
    AccountRequired(usize),
    #[error("account {0:?} is not hosted by this daemon")]
    NotLocal(String),
    #[error("account {0:?} is not registered on chain")]
    NotRegistered(String),
    #[error(transparent)]
    Channel(#[from] super::channels::ChannelError),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid parameter {0}")]
    InvalidParameter(String),
    #[error("this node has no chain: no genesis is configured")]
    NoChain,
    #[error("no finalized block at height {0}")]
    NoSuchBlock(u64),
    #[error("no finalized transaction {0}")]
    NoSuchTx(String),
    #[error("{0}")]
    ChainTimeout(String),
    #[error("{0}")]
    NotConnected(String),
    #[error("no account named {0:?} is registered")]
    NoSuchRecipient(String),
    #[error("{account} is not a member of channel {channel}")]
    NotMember { channel: String, account: String },
    #[error("the text is empty")]
    EmptyText,
    #[error("the text is longer than {0} bytes")]
    TextTooLong(usize),
    #[error("this daemon runs no network")]
    NetworkDown,
    #[error("{0}")]
    NotPermitted(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NameTaken(name) => ServiceError::NameTaken(name),
            other => ServiceError::Internal(format!("database: {other}")),
        }
    }
}

impl From<KeystoreError> for ServiceError {
    fn from(e: KeystoreError) -> Self {
        ServiceError::Internal(format!("keystore: {e}"))
    }
}
