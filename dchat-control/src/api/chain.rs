//! io.dchat.Chain: the finalized chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MethodInfo;

pub const CHAIN_STATUS: &str = "io.dchat.Chain.Status";
pub const CHAIN_BLOCK: &str = "io.dchat.Chain.Block";
pub const CHAIN_TX: &str = "io.dchat.Chain.Tx";
pub const CHAIN_SUBMIT: &str = "io.dchat.Chain.Submit";

/// Most transactions one `Submit` call may carry.
pub const MAX_SUBMIT: usize = 1000;

pub const NO_CHAIN: &str = "io.dchat.Chain.NoChain";
pub const NO_SUCH_BLOCK: &str = "io.dchat.Chain.NoSuchBlock";
pub const NO_SUCH_TX: &str = "io.dchat.Chain.NoSuchTx";
pub const CHAIN_TIMEOUT: &str = "io.dchat.Chain.Timeout";
pub const NOT_CONNECTED: &str = "io.dchat.Chain.NotConnected";

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: CHAIN_STATUS,
        read_only: true,
    },
    MethodInfo {
        method: CHAIN_BLOCK,
        read_only: true,
    },
    MethodInfo {
        method: CHAIN_TX,
        read_only: true,
    },
    MethodInfo {
        method: CHAIN_SUBMIT,
        read_only: false,
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    pub chain_id: String,
    pub height: u64,
    pub hash: String,
    pub validators: Vec<String>,
    pub block_interval_ms: u64,
    pub mempool: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockParams {
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainBlock {
    pub height: u64,
    pub hash: String,
    pub parent: String,
    pub timestamp_ms: u64,
    pub proposer: String,
    pub state_root: String,
    pub txs: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxParams {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainTx {
    pub id: String,
    pub height: u64,
    pub index: u64,
    pub tx: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// Hex of each signed transaction's binary encoding.
    pub transactions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResult {
    /// The transaction id (hex) when it entered the mempool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitReply {
    pub results: Vec<SubmitResult>,
}
