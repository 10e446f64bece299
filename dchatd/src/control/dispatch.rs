//! Routes a call to its handler and maps results and errors onto Varlink
//! replies. This is the one place service errors become wire errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dchat_control::api::{self, errors as dchat_errors};
use dchat_control::varlink::errors as std_errors;
use dchat_control::{interfaces, Call, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::auth::Access;
use super::conn::Conn;
use super::handlers;
use crate::metrics::Metrics;
use crate::service::{ChannelError, Node, ServiceError};

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

/// How a call may overlap the calls pipelined around it on one
/// connection. Replies always leave in call order; what a client could
/// observe of the order calls ran in is kept: reads run beside reads,
/// sends beside sends (each DM takes its place in its conversation in call
/// order, before the next call is read), and anything else runs alone,
/// after the calls before it and before the calls after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Read,
    Send,
    Alone,
    /// Streams, upgrades and refusals: the call owns the connection.
    Owns,
}

impl Overlap {
    /// Whether a call of this kind may start while `running` calls run.
    pub fn beside(self, running: Overlap) -> bool {
        self == running && matches!(self, Overlap::Read | Overlap::Send)
    }
}

pub fn overlap(access: Access, call: &Call) -> Overlap {
    let method = call.method.as_str();
    let streams = call.more && (handlers::messages::streams(method) || method == api::STATUS);
    if access == Access::Denied || call.upgrade || streams {
        return Overlap::Owns;
    }
    if method == api::SEND_DM {
        Overlap::Send
    } else if READS.contains(&method) || api::method_info(method).is_none() {
        // An unknown method is answered with an error: nothing changes.
        Overlap::Read
    } else {
        Overlap::Alone
    }
}

/// The methods that change nothing. (Not `MethodInfo::read_only`, which
/// says what `public_read` callers may call: ListDms is private but
/// changes nothing.) A method not listed runs alone.
const READS: &[&str] = &[
    api::GET_INFO,
    api::GET_INTERFACE_DESCRIPTION,
    api::STATUS,
    api::HEALTH,
    api::ACCOUNT_LIST,
    api::ACCOUNT_SHOW,
    api::ACCOUNT_EXPORT,
    api::CHAIN_STATUS,
    api::CHAIN_BLOCK,
    api::CHAIN_TX,
    api::CHANNEL_LIST,
    api::CHANNEL_SHOW,
    api::LIST_DMS,
    api::CHANNEL_MESSAGES,
    api::NETWORK_PEERS,
];

/// The rest of a call with one reply: run beside others, it resolves to
/// the reply to send (None for `oneway`).
pub type Pending = Pin<Box<dyn Future<Output = Option<Reply>> + Send + 'static>>;

/// Starts a call that does not own the connection (see [`overlap`]). What
/// fixes its order among the calls around it is done before this returns
/// (a DM's place in its conversation); the rest is in the returned future.
/// The call is counted before its reply is handed back.
pub async fn start(node: &Arc<Node>, access: Access, mut call: Call) -> Pending {
    let mut outcome = Outcome::new(&call.method);
    let node = Arc::clone(node);
    let oneway = call.oneway;
    let work = match checked(access, &mut call) {
        Err(reply) => {
            // Refused before it ran: answered even when oneway, as ever.
            outcome.note(&reply);
            outcome.count(node.metrics());
            return Box::pin(std::future::ready(Some(reply)));
        }
        Ok(params) => begin(&node, call.method, params).await,
    };
    Box::pin(async move {
        let reply = match work.await {
            Ok(value) => Reply::ok(value),
            Err(reply) => reply,
        };
        outcome.note(&reply);
        outcome.count(node.metrics());
        (!oneway).then_some(reply)
    })
}

type Work = Pin<Box<dyn Future<Output = Result<Value, Reply>> + Send + 'static>>;

/// A SendDm is drafted now and committed later; any other call runs
/// whole in the returned future.
async fn begin(node: &Arc<Node>, method: String, params: Value) -> Work {
    if method == api::SEND_DM {
        let draft = handlers::messages::draft_dm(node, params).await;
        let node = Arc::clone(node);
        return Box::pin(async move { handlers::messages::commit_dm(&node, draft?).await });
    }
    let node = Arc::clone(node);
    Box::pin(async move { reply_for(&node, &method, params).await })
}

/// Answers one call, and counts it: by method, with its latency (streams
/// excepted) and the kind of error it got, if any. A call with one reply is
/// counted before that reply leaves, so a client that has its answer finds
/// the call in the next scrape; a stream is counted when it ends.
pub async fn handle(node: &Arc<Node>, conn: &mut Conn, call: Call, shutdown: &CancellationToken) -> Flow {
    let mut outcome = Outcome::new(&call.method);
    let flow = route(node, conn, call, shutdown, &mut outcome).await;
    outcome.count(node.metrics());
    flow
}

/// What a call came to, for the metrics.
struct Outcome {
    method: &'static str,
    started: Instant,
    /// The Varlink error replied, if any.
    error: Option<String>,
    /// A streaming call, whose length is the client's choice.
    streamed: bool,
    /// Already counted; a call is counted once.
    counted: bool,
}

impl Outcome {
    fn new(method: &str) -> Outcome {
        Outcome {
            method: Metrics::method_label(method),
            started: Instant::now(),
            error: None,
            streamed: false,
            counted: false,
        }
    }

    fn note(&mut self, reply: &Reply) {
        if self.error.is_none() {
            self.error.clone_from(&reply.error);
        }
    }

    fn count(&mut self, metrics: &Metrics) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let took = (!self.streamed).then(|| self.started.elapsed());
        metrics.control_request(self.method, took, self.error.as_deref());
    }
}

/// Sends `reply`, noting it in `outcome`; a single reply is counted first.
async fn send(node: &Node, conn: &mut Conn, reply: &Reply, outcome: &mut Outcome) -> Flow {
    outcome.note(reply);
    if !outcome.streamed {
        outcome.count(node.metrics());
    }
    flow(conn.send(reply).await)
}

async fn route(
    node: &Arc<Node>,
    conn: &mut Conn,
    mut call: Call,
    shutdown: &CancellationToken,
    outcome: &mut Outcome,
) -> Flow {
    // A refused peer learns nothing, not even which methods exist.
    if conn.access == Access::Denied {
        send(
            node,
            conn,
            &Reply::error(std_errors::PERMISSION_DENIED, json!({})),
            outcome,
        )
        .await;
        return Flow::Close;
    }
    let params = match checked(conn.access, &mut call) {
        Ok(params) => params,
        Err(reply) => return send(node, conn, &reply, outcome).await,
    };
    let method = call.method.as_str();
    if call.upgrade {
        // Backup and Restore: the handler owns the connection from here.
        outcome.streamed = true;
        return handlers::database::upgraded(node, conn, method, params, shutdown).await;
    }
    if call.more && handlers::messages::streams(method) {
        outcome.streamed = true;
        return handlers::messages::stream(node, conn, method, params, shutdown).await;
    }
    if method == api::STATUS && call.more {
        outcome.streamed = true;
        return stream_status(node, conn, params, shutdown, outcome).await;
    }
    let reply = match reply_for(node, method, params).await {
        Ok(value) => Reply::ok(value),
        Err(reply) => reply,
    };
    if call.oneway {
        outcome.note(&reply);
        return Flow::Continue;
    }
    send(node, conn, &reply, outcome).await
}

/// The call's parameters, once the method exists, the caller may call it,
/// and the parameters are an object; else the error to reply.
fn checked(access: Access, call: &mut Call) -> Result<Value, Reply> {
    let method = call.method.as_str();
    let Some(info) = api::method_info(method) else {
        return Err(unknown_method(method));
    };
    if access == Access::ReadOnly && !info.read_only {
        tracing::warn!(
            method,
            "control call refused: read-only access (public_read) covers only read-only methods"
        );
        return Err(Reply::error(std_errors::PERMISSION_DENIED, json!({})));
    }
    if call.upgrade && !handlers::database::upgrades(method) {
        return Err(invalid_parameter("upgrade"));
    }
    match call.parameters.take() {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(invalid_parameter("parameters")),
    }
}

/// Hands the call to the handler of its interface.
async fn reply_for(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    let interface = method.rsplit_once('.').map_or("", |(i, _)| i);
    match interface {
        "org.varlink.service" => handlers::service::call(method, params),
        "io.dchat.Daemon" => handlers::daemon::call(node, method, params),
        "io.dchat.Accounts" => handlers::accounts::call(node, method, params).await,
        "io.dchat.Chain" => handlers::chain::call(node, method, params).await,
        "io.dchat.Channels" => handlers::channels::call(node, method, params).await,
        "io.dchat.Database" => handlers::database::call(node, method, params).await,
        "io.dchat.Messages" | "io.dchat.Network" => handlers::messages::call(node, method, params).await,
        _ => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": method }),
        )),
    }
}

/// `Status` with `"more": true`: the current status, then again on every
/// change, until the client hangs up or the daemon stops.
async fn stream_status(
    node: &Arc<Node>,
    conn: &mut Conn,
    params: Value,
    shutdown: &CancellationToken,
    outcome: &mut Outcome,
) -> Flow {
    if let Err(reply) = parse::<api::Empty>(params) {
        return send(node, conn, &reply, outcome).await;
    }
    let mut changes = node.watch_status();
    loop {
        changes.borrow_and_update();
        let mut reply = match encode(node.status()) {
            Ok(v) => Reply::ok(v),
            Err(reply) => return send(node, conn, &reply, outcome).await,
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

fn unknown_method(method: &str) -> Reply {
    match method.rsplit_once('.') {
        Some((iface, _)) if interfaces::description(iface).is_some() => {
            Reply::error(std_errors::METHOD_NOT_FOUND, json!({ "method": method }))
        }
        Some((iface, _)) => Reply::error(std_errors::INTERFACE_NOT_FOUND, json!({ "interface": iface })),
        None => Reply::error(std_errors::METHOD_NOT_FOUND, json!({ "method": method })),
    }
}

pub(super) fn invalid_parameter(name: &str) -> Reply {
    Reply::error(std_errors::INVALID_PARAMETER, json!({ "parameter": name }))
}

/// Decodes parameters; on failure names the offending parameter.
pub(super) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, Reply> {
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

pub(super) fn encode<T: Serialize>(value: T) -> Result<Value, Reply> {
    serde_json::to_value(value).map_err(|e| service_error(ServiceError::Internal(format!("cannot encode reply: {e}"))))
}

pub(super) fn service_error(e: ServiceError) -> Reply {
    let (name, params) = match &e {
        ServiceError::NameTaken(name) => (dchat_errors::NAME_TAKEN, json!({ "name": name })),
        ServiceError::AlreadyExists { name, id } => (dchat_errors::ALREADY_EXISTS, json!({ "name": name, "id": id })),
        ServiceError::NotFound(name) => (dchat_errors::NOT_FOUND, json!({ "name": name })),
        ServiceError::InvalidName { name, reason } => {
            (dchat_errors::INVALID_NAME, json!({ "name": name, "reason": reason }))
        }
        ServiceError::AccountRequired(count) => (dchat_errors::ACCOUNT_REQUIRED, json!({ "count": count })),
        ServiceError::NotLocal(name) => (dchat_errors::NOT_LOCAL, json!({ "name": name })),
        ServiceError::NotRegistered(name) => (dchat_errors::NOT_REGISTERED, json!({ "name": name })),
        ServiceError::Channel(e) => channel_error(e),
        ServiceError::InvalidKey(reason) => (dchat_errors::INVALID_KEY, json!({ "reason": reason })),
        ServiceError::InvalidParameter(p) => (std_errors::INVALID_PARAMETER, json!({ "parameter": p })),
        ServiceError::ShuttingDown => (dchat_errors::SHUTTING_DOWN, json!({})),
        ServiceError::NoChain => (api::NO_CHAIN, json!({})),
        ServiceError::NoSuchBlock(height) => (api::NO_SUCH_BLOCK, json!({ "height": height })),
        ServiceError::NoSuchTx(id) => (api::NO_SUCH_TX, json!({ "id": id })),
        ServiceError::ChainTimeout(message) => (api::CHAIN_TIMEOUT, json!({ "message": message })),
        ServiceError::NotConnected(message) => (api::NOT_CONNECTED, json!({ "message": message })),
        ServiceError::NoSuchRecipient(name) => (api::message_errors::NO_SUCH_RECIPIENT, json!({ "name": name })),
        ServiceError::NotMember { channel, account } => (
            api::message_errors::NOT_MEMBER,
            json!({ "channel": channel, "account": account }),
        ),
        ServiceError::EmptyText => (api::message_errors::EMPTY_TEXT, json!({})),
        ServiceError::TextTooLong(max) => (api::message_errors::TEXT_TOO_LONG, json!({ "max": max })),
        ServiceError::NetworkDown => (api::message_errors::NETWORK_DOWN, json!({})),
        ServiceError::NotPermitted(message) => (std_errors::INVALID_PARAMETER, json!({ "parameter": message })),
        ServiceError::Internal(message) => {
            tracing::error!(error = %message, "control request failed");
            (dchat_errors::INTERNAL, json!({ "message": message }))
        }
    };
    Reply::error(name, params)
}

fn channel_error(e: &ChannelError) -> (&'static str, Value) {
    use api::channel_errors as c;
    match e {
        ChannelError::Taken(channel) => (c::CHANNEL_TAKEN, json!({ "channel": channel })),
        ChannelError::NoSuchChannel(channel) => (c::NO_SUCH_CHANNEL, json!({ "channel": channel })),
        ChannelError::InvalidName { name, reason } => (c::INVALID_NAME, json!({ "channel": name, "reason": reason })),
        ChannelError::DescriptionTooLong { length, max } => {
            (c::DESCRIPTION_TOO_LONG, json!({ "length": length, "max": max }))
        }
        ChannelError::NotInvited { channel, account } => {
            (c::NOT_INVITED, json!({ "channel": channel, "account": account }))
        }
        ChannelError::AlreadyMember { channel, account } => {
            (c::ALREADY_MEMBER, json!({ "channel": channel, "account": account }))
        }
        ChannelError::NotMember { channel, account } => {
            (c::NOT_MEMBER, json!({ "channel": channel, "account": account }))
        }
        ChannelError::NotOwner { channel, owner } => (c::NOT_OWNER, json!({ "channel": channel, "owner": owner })),
        ChannelError::NotInviteOnly(channel) => (c::NOT_INVITE_ONLY, json!({ "channel": channel })),
        ChannelError::AlreadyInvited { channel, account } => {
            (c::ALREADY_INVITED, json!({ "channel": channel, "account": account }))
        }
        ChannelError::Rejected(reason) => (c::REJECTED, json!({ "reason": reason })),
    }
}
