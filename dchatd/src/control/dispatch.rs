//! Routes a call to its handler and maps results and errors onto Varlink
//! replies. This is the one place service errors become wire errors.

use std::sync::Arc;

use dchat_control::api::{self, errors as dchat_errors};
use dchat_control::varlink::errors as std_errors;
use dchat_control::{interfaces, Call, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::auth::Access;
use super::conn::Conn;
use crate::service::{Node, ServiceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

fn flow(sent: Result<(), ()>) -> Flow {
    if sent.is_ok() {
        Flow::Continue
    } else {
        Flow::Close
    }
}

pub async fn handle(node: &Arc<Node>, conn: &mut Conn, call: Call, shutdown: &CancellationToken) -> Flow {
    let method = call.method.as_str();
    // A refused peer learns nothing, not even which methods exist.
    if conn.access == Access::Denied {
        let _ = conn.send(&Reply::error(std_errors::PERMISSION_DENIED, json!({}))).await;
        return Flow::Close;
    }
    let Some(info) = api::method_info(method) else {
        return flow(conn.send(&unknown_method(method)).await);
    };
    if conn.access == Access::ReadOnly && !info.read_only {
        tracing::warn!(
            method,
            "control call refused: read-only access (public_read) covers only read-only methods"
        );
        return flow(conn.send(&Reply::error(std_errors::PERMISSION_DENIED, json!({}))).await);
    }
    if call.upgrade {
        return flow(conn.send(&invalid_parameter("upgrade")).await);
    }
    let params = match call.parameters {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return flow(conn.send(&invalid_parameter("parameters")).await),
    };
    if method == api::STATUS && call.more {
        return stream_status(node, conn, params, shutdown).await;
    }
    let reply = match reply_for(node, method, params).await {
        Ok(value) => Reply::ok(value),
        Err(reply) => reply,
    };
    if call.oneway {
        return Flow::Continue;
    }
    flow(conn.send(&reply).await)
}

async fn reply_for(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::GET_INFO => {
            parse::<api::Empty>(params)?;
            encode(service_info())
        }
        api::GET_INTERFACE_DESCRIPTION => {
            let p: api::InterfaceDescriptionParams = parse(params)?;
            match interfaces::description(&p.interface) {
                Some(d) => encode(api::InterfaceDescription {
                    description: d.to_string(),
                }),
                None => Err(Reply::error(
                    std_errors::INTERFACE_NOT_FOUND,
                    json!({ "interface": p.interface }),
                )),
            }
        }
        api::STATUS => {
            parse::<api::Empty>(params)?;
            encode(node.status())
        }
        api::HEALTH => {
            parse::<api::Empty>(params)?;
            encode(node.health())
        }
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

/// `Status` with `"more": true`: the current status, then again on every
/// change, until the client hangs up or the daemon stops.
async fn stream_status(node: &Arc<Node>, conn: &mut Conn, params: Value, shutdown: &CancellationToken) -> Flow {
    if let Err(reply) = parse::<api::Empty>(params) {
        return flow(conn.send(&reply).await);
    }
    let mut changes = node.watch_status();
    loop {
        changes.borrow_and_update();
        let mut reply = match encode(node.status()) {
            Ok(v) => Reply::ok(v),
            Err(reply) => return flow(conn.send(&reply).await),
        };
        reply.continues = true;
        if conn.send(&reply).await.is_err() {
            return Flow::Close;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Flow::Close },
            _ = shutdown.cancelled() => {
                let _ = conn.send(&Reply::error(dchat_errors::SHUTTING_DOWN, json!({}))).await;
                return Flow::Close;
            }
            _ = conn.closed() => return Flow::Close,
        }
    }
}

fn service_info() -> api::ServiceInfo {
    api::ServiceInfo {
        vendor: "dchat".into(),
        product: "dchatd".into(),
        version: crate::VERSION.into(),
        url: "https://example.invalid/dchat".into(),
        interfaces: interfaces::ALL.iter().map(|(name, _)| name.to_string()).collect(),
    }
}

fn unknown_method(method: &str) -> Reply {
    match method.rsplit_once('.') {
        Some((iface, _)) if interfaces::description(iface).is_some() => {
            Reply::error(std_errors::METHOD_NOT_FOUND, json!({ "method": method }))
        }
        Some((iface, _)) => Reply::error(std_errors::INTERFACE_NOT_FOUND, json!({ "interface": iface })),
        None => Reply::error(std_errors::METHOD_NOT_FOUND, json!({ "method": method })),
    }
}

fn invalid_parameter(name: &str) -> Reply {
    Reply::error(std_errors::INVALID_PARAMETER, json!({ "parameter": name }))
}

/// Decodes parameters; on failure names the offending parameter.
fn parse<T: DeserializeOwned>(params: Value) -> Result<T, Reply> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let name = if path == "." || path.is_empty() {
            // Missing and unknown fields are reported at the top level.
            inner.split('`').nth(1).unwrap_or("parameters").to_string()
        } else {
            path
        };
        invalid_parameter(&name)
    })
}

fn encode<T: Serialize>(value: T) -> Result<Value, Reply> {
    serde_json::to_value(value).map_err(|e| service_error(ServiceError::Internal(format!("cannot encode reply: {e}"))))
}

fn service_error(e: ServiceError) -> Reply {
    let (name, params) = match &e {
        ServiceError::NameTaken(name) => (dchat_errors::NAME_TAKEN, json!({ "name": name })),
        ServiceError::AlreadyExists { name, id } => (dchat_errors::ALREADY_EXISTS, json!({ "name": name, "id": id })),
        ServiceError::NotFound(name) => (dchat_errors::NOT_FOUND, json!({ "name": name })),
        ServiceError::InvalidName { name, reason } => {
            (dchat_errors::INVALID_NAME, json!({ "name": name, "reason": reason }))
        }
        ServiceError::InvalidKey(reason) => (dchat_errors::INVALID_KEY, json!({ "reason": reason })),
        ServiceError::InvalidParameter(p) => (std_errors::INVALID_PARAMETER, json!({ "parameter": p })),
        ServiceError::ShuttingDown => (dchat_errors::SHUTTING_DOWN, json!({})),
        ServiceError::Internal(message) => {
            tracing::error!(error = %message, "control request failed");
            (dchat_errors::INTERNAL, json!({ "message": message }))
        }
    };
    Reply::error(name, params)
}
