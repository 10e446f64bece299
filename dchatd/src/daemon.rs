//! The daemon's lifecycle: start the parts in order, say READY only when it
//! is true, keep STATUS current, reload on SIGHUP, and tear down in reverse
//! order within the shutdown timeout.
//!
//! Start order: state dir → database (open + migrate) → keystore and node
//! key → chain → control socket → metrics and health listeners → network
//! and its protocols → consensus → READY.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::chain::{self, Chain};
use crate::config::Role;
use crate::config::{self, Config};
use crate::consensus;
use crate::error::DaemonError;
use crate::keystore::Keystore;
use crate::logging::LogHandle;
use crate::service::{Node, SharedDb};
use crate::storage::{Database, StorageOptions};
use crate::{control, metrics, node_key, systemd};

/// Extra start time asked of systemd while the database migrates.
const MIGRATION_GRACE: Duration = Duration::from_secs(120);

/// What the binary hands the daemon besides its configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Lets SIGHUP change the log level.
    pub log: Option<LogHandle>,
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_with(config, shutdown, RunOptions::default()).await
}

pub async fn run_with(config: Config, shutdown: CancellationToken, options: RunOptions) -> Result<(), DaemonError> {
    let roles: Vec<&str> = config.roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(version = crate::VERSION, roles = %roles.join(","), dev = config.dev, "dchatd starting");

    let state_dir = config.storage.state_dir.clone();
    prepare_state_dir(&state_dir)?;
    // Held until we return: one daemon per state directory, whatever its socket.
    let _lock = crate::state_lock::acquire(&state_dir)?;
    // Ours alone now: what an interrupted backup or restore left can go.
    crate::storage::backup::remove_stale_temp_files(&config.storage.database_path());
    tracing::info!(state_dir = %state_dir.display(), "state directory ready");

    systemd::extend_timeout(MIGRATION_GRACE);
    let db_path = config.storage.database_path();
    let opts = StorageOptions {
        synchronous: config.storage.synchronous,
    };
    let db = tokio::task::spawn_blocking(move || Database::open(&db_path, &opts))
        .await
        .map_err(|e| DaemonError::Runtime(format!("database open task failed: {e}")))??;
    tracing::info!(database = %db.path().display(), schema = db.schema_version()?, "database open and migrated");

    let keystore = Keystore::open(&state_dir)?;
    let node_identity = node_key::load_or_create(&state_dir)?;
    let peer_id = node_key::peer_id(&node_identity);
    tracing::info!(peer_id = %peer_id, "node identity loaded");

    let db = SharedDb::new(db);
    let chain = open_chain(&config, &node_identity, &db)?;
    let bound = control::bind(&config.control)?;
    let socket_path = bound.path.clone();
    // Status reports the socket actually served (systemd's, when passed).
    let mut node_config = config.clone();
    node_config.control.socket = socket_path.clone();
    let node = Node::new(node_config, db, keystore, peer_id, chain.clone())?;
    if let Some(chain) = &chain {
        chain.set_finality_histogram(node.metrics().finality_latency.clone());
    }
    // The metrics and health listeners: bound now, so a taken port stops the
    // start with a message naming the key; served once the socket is.
    let http = metrics::bind(&config)?;

    // Every task started from here on stops on `stop` and is awaited at
    // teardown; `shutdown` is the caller's signal, `stop` our own.
    let stop = shutdown.child_token();
    let control_tasks = TaskTracker::new();
    control::spawn(bound, &config.control, Arc::clone(&node), stop.clone(), &control_tasks);
    control_tasks.close();
    let http_tasks = TaskTracker::new();
    metrics::spawn(http, Arc::clone(&node), stop.clone(), &http_tasks);
    http_tasks.close();

    // The network and dchat's protocols on it: after the socket (handlers
    // reach them through the node), before consensus and READY.
    let p2p_tasks = TaskTracker::new();
    start_network(&config, &node_identity, &node, stop.clone(), &p2p_tasks).await?;
    p2p_tasks.close();

    let mut consensus = start_consensus(&config, &node_identity, chain.as_ref()).await?;

    node.set_ready(true);
    // Both before READY: from then on systemd may send SIGHUP (whose default
    // action would kill us before the reload task installs its handler), and
    // clients may change what STATUS= shows before that task subscribes.
    let status_changes = node.watch_status();
    let hangups = signal(SignalKind::hangup());
    systemd::ready(&node.status_line());
    tracing::info!(socket = %socket_path.display(), "dchatd ready");

    let aux = TaskTracker::new();
    if let Some(handle) = systemd::watchdog::spawn(stop.clone()) {
        aux.spawn(async move {
            let _ = handle.await;
        });
    }
    aux.spawn(
        publish_status(Arc::clone(&node), status_changes, stop.clone())
            .instrument(tracing::info_span!("status-notify")),
    );
    aux.spawn(
        reload_on_hangup(config.clone(), hangups, options.log, Arc::clone(&node), stop.clone())
            .instrument(tracing::info_span!("reload")),
    );
    if let Some(chain) = chain {
        aux.spawn(
            follow_height(Arc::clone(&node), chain, stop.clone()).instrument(tracing::info_span!("chain-height")),
        );
    }
    aux.close();

    // Run until asked to stop, or until consensus fails under us.
    let mut failure = None;
    match consensus.as_mut() {
        Some(handle) => tokio::select! {
            _ = shutdown.cancelled() => {}
            ended = handle.closed() => {
                let why = match ended { Ok(()) => "consensus stopped by itself".to_string(), Err(e) => e.to_string() };
                tracing::error!(error = %why, "consensus ended; stopping the daemon");
                failure = Some(DaemonError::Runtime(why));
            }
        },
        None => shutdown.cancelled().await,
    }
    systemd::stopping();
    node.set_ready(false);
    tracing::info!(timeout_s = config.shutdown_timeout.as_secs(), "dchatd stopping");

    let teardown = async {
        if let Some(handle) = consensus.take() {
            if let Some(chain) = node.chain() {
                chain.set_consensus_running(false);
            }
            if let Err(e) = handle.stop().await {
                tracing::error!(error = %e, "consensus did not stop cleanly");
            }
            tracing::info!("consensus stopped");
        }
        stop.cancel();
        p2p_tasks.wait().await;
        tracing::info!("network stopped");
        aux.wait().await;
        http_tasks.wait().await;
        // Control connections finish their current request, then close.
        control_tasks.wait().await;
        if let Some(db) = node.take_db() {
            tokio::task::spawn_blocking(move || db.close())
                .await
                .map_err(|e| DaemonError::Runtime(format!("database close task failed: {e}")))??;
            tracing::info!("database closed");
        }
        Ok::<(), DaemonError>(())
    };
    match tokio::time::timeout(config.shutdown_timeout, teardown).await {
        Ok(result) => result?,
        Err(_) => return Err(DaemonError::ShutdownTimeout(config.shutdown_timeout.as_secs())),
    }
    if let Some(e) = failure {
        return Err(e);
    }
    tracing::info!("dchatd stopped");
    Ok(())
}

/// Starts the libp2p network on the configured addresses and dchat's
/// protocols on top of it.
async fn start_network(
    config: &Config,
    identity: &dchat_keyfile::Identity,
    node: &Arc<crate::service::Node>,
    stop: tokio_util::sync::CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), DaemonError> {
    let parse = |key: &str, addrs: &[String]| {
        addrs
            .iter()
            .map(|a| {
                a.parse::<libp2p::Multiaddr>()
                    .map_err(|e| DaemonError::Runtime(format!("network.{key}: {a:?} is not a multiaddress: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let listen = parse("listen", &config.network.listen)?;
    let bootstrap = parse("bootstrap", &config.network.bootstrap)?;
    let roles: Vec<&str> = config.roles.iter().map(|r| r.as_str()).collect();
    let mut params = crate::network::NetworkParams::new(listen, bootstrap, &roles);
    params.mdns = config.dev;
    params.max_connections = config.network.max_connections;
    params.rate =
        crate::network::RateLimit::per_second(config.network.peer_messages_per_s, config.network.peer_bytes_per_s);
    params.max_circuit_bytes = config.network.relay_circuit_bytes;
    params.metrics = Some(node.metrics().clone());
    let network = crate::network::start(&identity.identity_secret(), params, stop.clone())
        .await
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    crate::p2p::start(node, network, stop, tasks);
    Ok(())
}

/// Starts this node's consensus engine when it is a genesis validator.
async fn start_consensus(
    config: &Config,
    identity: &dchat_keyfile::Identity,
    chain: Option<&Arc<Chain>>,
) -> Result<Option<consensus::ConsensusHandle>, DaemonError> {
    let Some(chain) = chain else { return Ok(None) };
    if !config.roles.contains(&Role::Validator) {
        return Ok(None);
    }
    let key = identity.signing_key().verifying_key().to_bytes();
    if !chain.genesis().validators.iter().any(|v| v.key == key) {
        tracing::warn!(key = %hex::encode(key), "validator role, but this node's key is not a genesis validator: following only");
        return Ok(None);
    }
    let listen = config.chain.consensus_listen;
    let local = config.dev || is_local(listen.ip()) && config.chain.peers.iter().all(|p| is_local(p.addr.ip()));
    let cfg = consensus::ConsensusConfig {
        identity_seed: *identity.identity_secret(),
        genesis: chain.genesis().clone(),
        listen,
        peers: config.chain.peers.iter().map(|p| (p.key, p.addr)).collect(),
        storage_dir: config.storage.state_dir.join("consensus"),
        timing: None,
        local_network: local,
        worker_threads: 2,
    };
    let store: Arc<dyn consensus::ChainStore> = Arc::clone(chain) as Arc<dyn consensus::ChainStore>;
    let handle = consensus::start(cfg, store)
        .await
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    chain.set_consensus_running(true);
    tracing::info!(listen = %listen, validators = chain.genesis().validators.len(), "consensus running");
    Ok(Some(handle))
}

/// Loopback and private addresses: a testnet or a LAN.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}

/// Loads the genesis and the chain history. Without a genesis (outside
/// `--dev`) the node runs without a chain and says so.
fn open_chain(
    config: &Config,
    node: &dchat_keyfile::Identity,
    db: &SharedDb,
) -> Result<Option<Arc<Chain>>, DaemonError> {
    let key = node.signing_key().verifying_key().to_bytes();
    let Some(genesis) = chain::genesis::load(&config.chain.genesis, config.dev, key)? else {
        tracing::warn!(genesis = %config.chain.genesis.display(), "no genesis file: running without a chain");
        return Ok(None);
    };
    Ok(Some(Chain::open(genesis, db.clone())?))
}

/// Keeps the status height in step with the finalized chain.
async fn follow_height(node: Arc<Node>, chain: Arc<Chain>, stop: CancellationToken) {
    let mut heights = chain.watch_height();
    loop {
        node.set_height(*heights.borrow_and_update());
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = heights.changed() => if changed.is_err() { return },
        }
    }
}

/// The state directory holds keys: create it private, tighten it if loose.
fn prepare_state_dir(dir: &Path) -> Result<(), DaemonError> {
    let err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Keeps systemd's STATUS= line in step with the status facts.
async fn publish_status(
    node: Arc<Node>,
    mut changes: tokio::sync::watch::Receiver<crate::service::StatusSnapshot>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                systemd::status(&node.status_line());
            }
        }
    }
}

/// SIGHUP: reread the configuration and apply what can change live (the
/// log level); anything else is reported as needing a restart. A bad file
/// keeps the running configuration.
async fn reload_on_hangup(
    running: Config,
    hangups: std::io::Result<Signal>,
    log: Option<LogHandle>,
    node: Arc<Node>,
    stop: CancellationToken,
) {
    let mut hangups = match hangups {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload disabled");
            return;
        }
    };
    let mut current = running;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        systemd::reloading();
        tracing::info!("SIGHUP: reloading configuration");
        match config::load(&current.source.flags) {
            Ok(new) => {
                if new.log.level != current.log.level {
                    match log.as_ref().map(|h| h.set_level(&new.log.level)) {
                        Some(Err(e)) => tracing::error!(error = %e, "cannot apply the new log level"),
                        _ => tracing::info!(level = %new.log.level, "log level changed"),
                    }
                }
                for changed in restart_only_changes(&current, &new) {
                    tracing::warn!(
                        key = changed,
                        "changed in the configuration; takes effect after a restart"
                    );
                }
                current = new;
            }
            Err(e) => tracing::error!(error = %e, "reload failed; keeping the running configuration"),
        }
        systemd::ready(&node.status_line());
    }
}

/// Keys that SIGHUP does not apply; each change is named in a warning.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let checks: [(&'static str, bool); 19] = [
        ("node.roles", old.roles != new.roles),
        ("node.shutdown_timeout", old.shutdown_timeout != new.shutdown_timeout),
        ("network.listen", old.network.listen != new.network.listen),
        ("network.bootstrap", old.network.bootstrap != new.network.bootstrap),
        (
            "network.max_connections",
            old.network.max_connections != new.network.max_connections,
        ),
        (
            "network.peer_messages_per_s",
            old.network.peer_messages_per_s != new.network.peer_messages_per_s,
        ),
        (
            "network.peer_bytes_per_s",
            old.network.peer_bytes_per_s != new.network.peer_bytes_per_s,
        ),
        (
            "network.relay_circuit_bytes",
            old.network.relay_circuit_bytes != new.network.relay_circuit_bytes,
        ),
        ("control.socket", old.control.socket != new.control.socket),
        ("control.group", old.control.group != new.control.group),
        ("control.mode", old.control.mode != new.control.mode),
        (
            "control.public_read",
            old.control.public_read != new.control.public_read,
        ),
        (
            "control.max_frame_bytes",
            old.control.max_frame_bytes != new.control.max_frame_bytes,
        ),
        (
            "control.max_connections",
            old.control.max_connections != new.control.max_connections,
        ),
        (
            "control.idle_timeout",
            old.control.idle_timeout != new.control.idle_timeout,
        ),
        ("storage.state_dir", old.storage.state_dir != new.storage.state_dir),
        (
            "storage.synchronous",
            old.storage.synchronous != new.storage.synchronous,
        ),
        (
            "metrics.listen / health.listen / health.stall_intervals",
            old.metrics_listen != new.metrics_listen
                || old.health_listen != new.health_listen
                || old.health_stall_intervals != new.health_stall_intervals,
        ),
        ("log.format", old.log.format != new.log.format),
    ];
    checks
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| *key)
        .collect()
}
