//! io.dchat.Daemon: status and health (the streaming form of Status lives in
//! dispatch, which owns the connection).

use std::sync::Arc;

use dchat_control::api;
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};

use crate::control::dispatch::{encode, parse};
use crate::service::Node;

pub fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::STATUS => {
            parse::<api::Empty>(params)?;
            encode(node.status())
        }
        api::HEALTH => {
            parse::<api::Empty>(params)?;
            encode(node.health())
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}
