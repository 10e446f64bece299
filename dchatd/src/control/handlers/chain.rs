//! io.dchat.Chain: the finalized chain.

use std::sync::Arc;

use dchat_control::api;
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};

use crate::control::dispatch::{encode, parse, service_error};
use crate::service::Node;

pub async fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::CHAIN_STATUS => {
            parse::<api::Empty>(params)?;
            encode(node.chain_status().map_err(service_error)?)
        }
        api::CHAIN_BLOCK => {
            let p: api::BlockParams = parse(params)?;
            encode(node.chain_block(p.height).await.map_err(service_error)?)
        }
        api::CHAIN_TX => {
            let p: api::TxParams = parse(params)?;
            encode(node.chain_tx(p.id).await.map_err(service_error)?)
        }
        api::CHAIN_SUBMIT => {
            let p: api::SubmitParams = parse(params)?;
            encode(node.chain_submit(p.transactions).await.map_err(service_error)?)
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}
