//! `chain status | block H | tx ID`.

use std::path::Path;

use dchat_control::api;

use super::call;
use crate::cli::ChainCommand;
use crate::error::CtlError;
use crate::outln;
use crate::output;

pub async fn run(cmd: &ChainCommand, socket: &Path, json: bool) -> Result<u8, CtlError> {
    match cmd {
        ChainCommand::Status => {
            let s: api::ChainStatus = call(socket, api::CHAIN_STATUS, &api::Empty {}).await?;
            if json {
                output::json(&s)?;
            } else {
                output::fields(&[
                    ("chain", s.chain_id.clone()),
                    ("height", s.height.to_string()),
                    ("hash", s.hash.clone()),
                    ("block interval", format!("{} ms", s.block_interval_ms)),
                    ("mempool", format!("{} transactions", s.mempool)),
                    ("validators", s.validators.len().to_string()),
                ])?;
                for v in &s.validators {
                    outln!("  {v}")?;
                }
            }
        }
        ChainCommand::Block { height } => {
            let b: api::ChainBlock = call(socket, api::CHAIN_BLOCK, &api::BlockParams { height: *height }).await?;
            if json {
                output::json(&b)?;
            } else {
                output::fields(&[
                    ("height", b.height.to_string()),
                    ("hash", b.hash.clone()),
                    ("parent", b.parent.clone()),
                    ("time (ms)", b.timestamp_ms.to_string()),
                    ("proposer", b.proposer.clone()),
                    ("state root", b.state_root.clone()),
                    ("transactions", b.txs.len().to_string()),
                ])?;
                let rows: Vec<Vec<String>> = b.txs.iter().map(tx_row).collect();
                if !rows.is_empty() {
                    output::table(&["ID", "KIND", "NONCE"], &rows)?;
                }
            }
        }
        ChainCommand::Tx { id } => {
            let t: api::ChainTx = call(socket, api::CHAIN_TX, &api::TxParams { id: id.clone() }).await?;
            if json {
                output::json(&t)?;
            } else {
                output::fields(&[
                    ("id", t.id.clone()),
                    ("block", t.height.to_string()),
                    ("index", t.index.to_string()),
                ])?;
                outln!("{}", serde_json::to_string_pretty(&t.tx).unwrap_or_default())?;
            }
        }
    }
    Ok(0)
}

fn tx_row(tx: &serde_json::Value) -> Vec<String> {
    let field = |k: &str| {
        tx.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let kind = tx
        .get("kind")
        .and_then(|k| k.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_string();
    vec![field("id"), kind, field("nonce")]
}
