//! io.dchat.Accounts: local accounts and their keys.

use std::sync::Arc;

use dchat_control::api;
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};

use crate::control::dispatch::{encode, parse, service_error};
use crate::service::Node;

pub async fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::ACCOUNT_CREATE => {
            let account = node.create_account(parse(params)?).await.map_err(service_error)?;
            encode(api::AccountReply { account })
        }
        api::ACCOUNT_LIST => {
            parse::<api::Empty>(params)?;
            let accounts = node.list_accounts().await.map_err(service_error)?;
            encode(api::AccountList { accounts })
        }
        api::ACCOUNT_SHOW => {
            let p: api::AccountName = parse(params)?;
            let account = node.show_account(p.name).await.map_err(service_error)?;
            encode(api::AccountReply { account })
        }
        api::ACCOUNT_IMPORT => {
            let account = node.import_account(parse(params)?).await.map_err(service_error)?;
            encode(api::AccountReply { account })
        }
        api::ACCOUNT_EXPORT => {
            let p: api::AccountName = parse(params)?;
            encode(node.export_account(p.name).await.map_err(service_error)?)
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}
