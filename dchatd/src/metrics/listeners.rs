//! The `[metrics] listen` and `[health] listen` TCP listeners: bound before
//! READY (a failure stops the start with a message naming the key), served
//! until the stop signal, each connection under the limits of http.rs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::endpoints::{self, Endpoints};
use super::http::{self, Limits, Method, Refused, Response};
use crate::config::Config;
use crate::error::DaemonError;
use crate::service::Node;

/// Connections served at once per listener; more get a 503 at once.
const MAX_CONNECTIONS: usize = 64;

/// The listeners, bound and not yet served.
pub struct Bound {
    listeners: Vec<(TcpListener, Endpoints)>,
}

impl Bound {
    /// The addresses actually bound (port 0 resolved), with what each serves.
    pub fn addresses(&self) -> Vec<(SocketAddr, &'static str)> {
        self.listeners
            .iter()
            .filter_map(|(l, e)| l.local_addr().ok().map(|a| (a, e.describe())))
            .collect()
    }
}

/// Binds the configured listeners. The same address under both keys is one
/// listener serving every path.
pub fn bind(config: &Config) -> Result<Bound, DaemonError> {
    let mut wanted: Vec<(SocketAddr, Endpoints, &'static str)> = Vec::new();
    if let Some(addr) = config.metrics_listen {
        wanted.push((addr, Endpoints::METRICS, "metrics.listen"));
    }
    if let Some(addr) = config.health_listen {
        match wanted.iter_mut().find(|(a, _, _)| *a == addr && addr.port() != 0) {
            Some((_, endpoints, _)) => endpoints.health = true,
            None => wanted.push((addr, Endpoints::HEALTH, "health.listen")),
        }
    }
    let mut listeners = Vec::new();
    for (addr, endpoints, key) in wanted {
        let err = |e: std::io::Error| DaemonError::Listen {
            key,
            addr,
            message: e.to_string(),
        };
        // std's bind sets SO_REUSEADDR, so a restart is not refused while
        // the last run's connections sit in TIME_WAIT.
        let std_listener = std::net::TcpListener::bind(addr).map_err(err)?;
        std_listener.set_nonblocking(true).map_err(err)?;
        let listener = TcpListener::from_std(std_listener).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        tracing::info!(key, addr = %local, serves = endpoints.describe(), "HTTP listener bound");
        listeners.push((listener, endpoints));
    }
    Ok(Bound { listeners })
}

/// Serves every bound listener until `stop`; the tasks are tracked by
/// `tasks` so teardown can wait for them.
pub fn spawn(bound: Bound, node: Arc<Node>, stop: CancellationToken, tasks: &TaskTracker) {
    for (listener, endpoints) in bound.listeners {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let span = tracing::info_span!("http-accept", addr = %addr, serves = endpoints.describe());
        tasks.spawn(accept_loop(listener, endpoints, Arc::clone(&node), stop.clone(), tasks.clone()).instrument(span));
    }
}

async fn accept_loop(
    listener: TcpListener,
    endpoints: Endpoints,
    node: Arc<Node>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let limits = Limits::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = Arc::clone(&slots).try_acquire_owned().ok();
        let node = Arc::clone(&node);
        let stop = stop.clone();
        let Some(permit) = permit else {
            // Answered without waiting (the reply fits a fresh socket buffer)
            // so refusals cannot pile up tasks.
            tracing::warn!(limit = MAX_CONNECTIONS, %peer, "too many HTTP connections; refusing one");
            let _ = stream.try_write(&Response::error(503, "too many connections").to_bytes(false));
            continue;
        };
        tasks.spawn(async move {
            let mut stream = stream;
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve(&mut stream, endpoints, &node, &limits) => {}
            }
            drop(permit);
        });
    }
    tracing::info!("HTTP listener closed");
}

/// One connection: one request, one response.
async fn serve(stream: &mut TcpStream, endpoints: Endpoints, node: &Arc<Node>, limits: &Limits) {
    let read = tokio::time::timeout(limits.head_timeout, http::read_request(stream, limits)).await;
    let (response, head_only) = match read {
        Ok(Ok(request)) => (
            endpoints::route(node, endpoints, &request).await,
            request.method == Method::Head,
        ),
        Ok(Err(Refused::Respond(response))) => {
            tracing::debug!(status = response.status, "HTTP request refused");
            (response, false)
        }
        Ok(Err(Refused::Gone)) => return,
        Err(_) => (Response::error(408, "request head not received in time"), false),
    };
    http::respond(stream, &response, head_only, limits).await;
}
