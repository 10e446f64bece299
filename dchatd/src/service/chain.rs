//! Chain queries for the control socket: status, blocks and transactions
//! of the finalized chain, shaped as CLI.md promises.

use std::sync::Arc;

use dchat_control::api;
use serde_json::Value;

use super::{Node, ServiceError};
use crate::chain::Chain;
use crate::ledger::{Block, SignedTx};

impl Node {
    fn chain_or_err(&self) -> Result<&Arc<Chain>, ServiceError> {
        self.chain().ok_or(ServiceError::NoChain)
    }

    /// The chain, when a transaction submitted here can become final.
    pub(super) fn committing_chain(&self) -> Result<Arc<Chain>, ServiceError> {
        let chain = self.chain_or_err()?;
        ensure_can_commit(chain)?;
        Ok(Arc::clone(chain))
    }

    pub fn chain_status(&self) -> Result<api::ChainStatus, ServiceError> {
        let chain = self.chain_or_err()?;
        let tip = chain.tip();
        Ok(api::ChainStatus {
            chain_id: chain.genesis().chain_id.clone(),
            height: tip.height,
            hash: hex::encode(tip.hash()),
            validators: chain.genesis().validators.iter().map(|v| hex::encode(v.key)).collect(),
            block_interval_ms: chain.genesis().block_interval_ms,
            mempool: u64::try_from(chain.mempool_len()).unwrap_or(u64::MAX),
        })
    }

    pub async fn chain_block(self: &Arc<Self>, height: u64) -> Result<api::ChainBlock, ServiceError> {
        let chain = Arc::clone(self.chain_or_err()?);
        let found = tokio::task::spawn_blocking(move || chain.block_by_height(height))
            .await
            .map_err(|e| ServiceError::Internal(format!("block lookup failed: {e}")))?;
        let (block, _) = found.ok_or(ServiceError::NoSuchBlock(height))?;
        Ok(block_json(&block))
    }

    /// Puts signed transactions (hex) in the mempool, which relays them to
    /// the validators; does not wait for finality. Each gets its id or the
    /// reason it was refused; one bad transaction does not refuse the rest.
    pub async fn chain_submit(self: &Arc<Self>, transactions: Vec<String>) -> Result<api::SubmitReply, ServiceError> {
        if transactions.len() > api::MAX_SUBMIT {
            return Err(ServiceError::InvalidParameter(format!(
                "transactions: {} given, at most {} per call",
                transactions.len(),
                api::MAX_SUBMIT
            )));
        }
        let chain = self.committing_chain()?;
        // Decoding checks and signature checks cost CPU: off the runtime.
        tokio::task::spawn_blocking(move || {
            let results = transactions
                .iter()
                .map(|hex_tx| {
                    let submitted = hex::decode(hex_tx.trim())
                        .map_err(|e| format!("not hex: {e}"))
                        .and_then(|bytes| SignedTx::decode(&bytes).map_err(|e| format!("not a transaction: {e}")))
                        .and_then(|tx| chain.submit(tx).map_err(|e| e.to_string()));
                    match submitted {
                        Ok(id) => api::SubmitResult {
                            id: Some(hex::encode(id)),
                            error: None,
                        },
                        Err(error) => api::SubmitResult {
                            id: None,
                            error: Some(error),
                        },
                    }
                })
                .collect();
            api::SubmitReply { results }
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("submit failed: {e}")))
    }

    pub async fn chain_tx(self: &Arc<Self>, id_hex: String) -> Result<api::ChainTx, ServiceError> {
        let id = parse_id(&id_hex).ok_or_else(|| ServiceError::InvalidParameter("id".into()))?;
        let chain = Arc::clone(self.chain_or_err()?);
        let found = tokio::task::spawn_blocking(move || -> Result<Option<(u64, u64, Value)>, ServiceError> {
            let Some(height) = chain
                .tx_height(&id)
                .map_err(|e| ServiceError::Internal(e.to_string()))?
            else {
                return Ok(None);
            };
            let Some((block, _)) = chain.block_by_height(height) else {
                return Ok(None);
            };
            Ok(block.txs.iter().position(|t| t.id() == id).and_then(|index| {
                let tx = serde_json::to_value(&block.txs[index]).ok()?;
                Some((height, u64::try_from(index).ok()?, tx))
            }))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("tx lookup failed: {e}")))??;
        let (height, index, tx) = found.ok_or(ServiceError::NoSuchTx(id_hex.clone()))?;
        Ok(api::ChainTx {
            id: hex::encode(id),
            height,
            index,
            tx,
        })
    }
}

fn parse_id(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Refuses, before signing anything, a transaction that could never be
/// final: this node runs no consensus and cannot reach a validator.
pub(super) fn ensure_can_commit(chain: &Chain) -> Result<(), ServiceError> {
    if chain.can_commit() {
        return Ok(());
    }
    Err(ServiceError::NotConnected(
        "this node runs no consensus engine and no network to reach a validator".into(),
    ))
}

fn block_json(block: &Block) -> api::ChainBlock {
    api::ChainBlock {
        height: block.height,
        hash: hex::encode(block.hash()),
        parent: hex::encode(block.parent),
        timestamp_ms: block.timestamp_ms,
        proposer: hex::encode(block.proposer),
        state_root: hex::encode(block.state_root),
        txs: block.txs.iter().filter_map(|t| serde_json::to_value(t).ok()).collect(),
    }
}
