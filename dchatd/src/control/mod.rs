//! The control socket: Varlink over a Unix stream socket.
//!
//! listener.rs gets the socket (systemd's or our own), auth.rs decides who
//! may use it, conn.rs runs one connection, dispatch.rs maps calls onto the
//! service layer.

mod auth;
mod conn;
mod dispatch;
mod fd_passing;
mod handlers;
mod listener;

use std::sync::Arc;

use dchat_control::api::errors as dchat_errors;
use dchat_control::frame::write_frame;
use dchat_control::Reply;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::os::unix::uds_local_socket::tokio::{Listener, Stream};
use nix::unistd::{Gid, Uid};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use auth::{Access, Peer, Policy};
pub use conn::Limits;
pub use listener::{bind, resolve_group, BoundSocket, FD_NAME};

use crate::config::ControlConfig;
use crate::service::Node;

/// Serves the bound socket until `shutdown`; every connection task is
/// tracked by `tasks` so teardown can wait for them.
pub fn spawn(
    bound: BoundSocket,
    config: &ControlConfig,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let policy = Policy {
        daemon_uid: Uid::effective(),
        group: bound.group,
        public_read: config.public_read,
    };
    let limits = Limits {
        max_frame: config.max_frame_bytes,
        idle_timeout: config.idle_timeout,
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let max = config.max_connections;
    let inner_tasks = tasks.clone();
    tasks.spawn(
        accept_loop(bound.listener, policy, limits, slots, max, node, shutdown, inner_tasks)
            .instrument(tracing::info_span!("control-accept")),
    );
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn accept_loop(
    listener: Listener,
    policy: Policy,
    limits: Limits,
    slots: Arc<Semaphore>,
    max: usize,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let denied_slots = Arc::new(Semaphore::new(DENIED_SLOTS));
    let call_slots = Arc::new(Semaphore::new(conn::CALLS_AT_ONCE));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a control connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(peer) = peer_of(&stream) else { continue };
        let access = policy.decide(&peer);
        if access == Access::Denied {
            tracing::warn!(
                peer_uid = peer.uid.as_raw(),
                peer_gid = peer.gid.as_raw(),
                peer_pid = peer.pid,
                "control connection refused: not root, the daemon's user, or in the control group"
            );
        }
        // Refused peers are answered from their own small pool with a short
        // timeout, so they cannot use up the slots of permitted clients.
        let (pool, limits) = if access == Access::Denied {
            (
                &denied_slots,
                Limits {
                    idle_timeout: limits.idle_timeout.min(DENIED_TIMEOUT),
                    ..limits
                },
            )
        } else {
            (&slots, limits)
        };
        let Ok(permit) = Arc::clone(pool).try_acquire_owned() else {
            tracing::warn!(
                limit = max,
                peer_uid = peer.uid.as_raw(),
                "too many control connections; refusing one"
            );
            tasks.spawn(refuse_busy(stream, max, limits));
            continue;
        };
        let conn = conn::Conn::new(stream, access, limits);
        let span = tracing::info_span!("control-conn", peer_uid = peer.uid.as_raw(), peer_pid = peer.pid);
        let node = Arc::clone(&node);
        let shutdown = shutdown.clone();
        let calls = conn::Calls {
            tasks: tasks.clone(),
            slots: Arc::clone(&call_slots),
        };
        tasks.spawn(
            async move {
                conn.serve(node, shutdown, calls).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    // Dropping the listener unlinks a socket we bound (not systemd's).
    drop(listener);
    tracing::info!("control socket closed");
}

/// How long a refused peer may take to send the call we refuse.
const DENIED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How many refused peers are answered at once.
const DENIED_SLOTS: usize = 8;

fn peer_of(stream: &Stream) -> Option<Peer> {
    match stream.peer_creds() {
        Ok(creds) => match (creds.euid(), creds.egid()) {
            (Some(uid), Some(gid)) => Some(Peer {
                uid: Uid::from_raw(uid),
                gid: Gid::from_raw(gid),
                pid: creds.pid(),
            }),
            _ => {
                tracing::warn!("control peer without credentials; closing");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read control peer credentials; closing");
            None
        }
    }
}

/// Tells a client over the connection limit why it is turned away.
async fn refuse_busy(stream: Stream, limit: usize, limits: Limits) {
    let (_read, mut write) = tokio::io::split(stream);
    let reply = Reply::error(dchat_errors::TOO_MANY_CONNECTIONS, json!({ "limit": limit }));
    if let Ok(payload) = serde_json::to_vec(&reply) {
        let _ = tokio::time::timeout(
            limits.idle_timeout.min(std::time::Duration::from_secs(1)),
            write_frame(&mut write, &payload),
        )
        .await;
    }
}
