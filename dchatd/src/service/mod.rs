//! The daemon's application layer: the state every handler shares and the
//! handlers themselves. Nothing here touches a socket, so handlers can be
//! called directly in tests; `control/` maps them onto the wire.

mod accounts;
mod chain;
mod channels;
pub mod database;
mod db;
mod error;
mod messages;
mod status;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

pub use accounts::validate_name;
pub use channels::ChannelError;
pub use db::SharedDb;
pub use error::ServiceError;
pub use status::StatusSnapshot;

use crate::chain::Chain;
use crate::config::Config;
use crate::keystore::Keystore;
use crate::storage::Database;

/// Everything a request handler may use.
pub struct Node {
    config: Config,
    db: SharedDb,
    keystore: Keystore,
    peer_id: String,
    /// None when no genesis is configured: the node runs without a chain.
    chain: Option<Arc<Chain>>,
    started: Instant,
    status: watch::Sender<StatusSnapshot>,
    db_ops: database::DbOps,
    metrics: crate::metrics::Metrics,
    /// The protocols over the network, once they run.
    p2p: std::sync::OnceLock<Arc<crate::p2p::Shared>>,
    /// Local accounts' keys by account id, read from the keystore once.
    /// The id is the identity public key only, so an account taken back
    /// (`undo_local_account`) is forgotten here too: the same identity key
    /// imported again with another messaging key must not find the old one.
    signing_keys: std::sync::Mutex<std::collections::HashMap<String, dchat_keyfile::Identity>>,
    /// The local accounts, read once: every DM names its signer, and
    /// finding it must not queue behind the database's writes.
    local_accounts: std::sync::Mutex<LocalAccounts>,
}

/// A local account's name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalAccount {
    pub name: String,
    pub id: String,
}

/// What [`Node::local_accounts`] remembers. Any change to the accounts
/// ([`Node::update_accounts`]) forgets it and counts a generation, so a read
/// that began before the change cannot store what it read.
#[derive(Default)]
struct LocalAccounts {
    generation: u64,
    known: Option<Arc<Vec<LocalAccount>>>,
}

impl Node {
    pub fn new(
        config: Config,
        db: SharedDb,
        keystore: Keystore,
        peer_id: String,
        chain: Option<Arc<Chain>>,
    ) -> Result<Arc<Node>, ServiceError> {
        let accounts = db.lock().as_ref().ok_or(ServiceError::ShuttingDown)?.count_accounts()?;
        let height = chain.as_ref().map_or(0, |c| c.tip().height);
        let (status, _) = watch::channel(StatusSnapshot {
            accounts,
            height,
            ..StatusSnapshot::default()
        });
        Ok(Arc::new(Node {
            config,
            db,
            keystore,
            peer_id,
            chain,
            started: Instant::now(),
            status,
            db_ops: database::DbOps::default(),
            metrics: crate::metrics::Metrics::new(),
            p2p: std::sync::OnceLock::new(),
            signing_keys: std::sync::Mutex::new(std::collections::HashMap::new()),
            local_accounts: std::sync::Mutex::new(LocalAccounts::default()),
        }))
    }

    /// The metric families; subsystems clone this and count into it.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The network side, when it runs.
    pub fn p2p(&self) -> Option<&Arc<crate::p2p::Shared>> {
        self.p2p.get()
    }

    pub(crate) fn set_p2p(&self, shared: Arc<crate::p2p::Shared>) {
        let _ = self.p2p.set(shared);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn chain(&self) -> Option<&Arc<Chain>> {
        self.chain.as_ref()
    }

    pub(crate) fn set_height(&self, height: u64) {
        self.status.send_if_modified(|s| {
            if s.height == height {
                return false;
            }
            s.height = height;
            // The chain-stall check (status.rs) measures from here.
            s.last_block_at = Some(Instant::now());
            true
        });
    }

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Receives every change of the status facts.
    pub fn watch_status(&self) -> watch::Receiver<StatusSnapshot> {
        self.status.subscribe()
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        self.status.borrow().clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.ready, ready) != ready);
    }

    /// Runs `f` with the database on a blocking thread: SQLite calls block,
    /// and the async workers must keep serving other connections.
    pub async fn with_db<T, F>(self: &Arc<Self>, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Keystore) -> Result<T, ServiceError> + Send + 'static,
    {
        let node = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let guard = node.lock_db();
            let db = guard.as_ref().ok_or(ServiceError::ShuttingDown)?;
            f(db, &node.keystore)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("database task failed: {e}")))?
    }

    pub(crate) fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    pub(crate) fn cached_signing_key(&self, id: &str) -> Option<dchat_keyfile::Identity> {
        self.signing_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// After anything that may have changed the accounts table, whether or
    /// not it succeeded: the local accounts are read again on next use.
    pub(crate) fn forget_local_accounts(&self) {
        let mut locals = self.local_accounts.lock().unwrap_or_else(|p| p.into_inner());
        locals.generation += 1;
        locals.known = None;
    }

    /// The local accounts, from memory after the first read.
    pub(crate) async fn local_accounts(self: &Arc<Self>) -> Result<Arc<Vec<LocalAccount>>, ServiceError> {
        let generation = {
            let locals = self.local_accounts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(known) = &locals.known {
                return Ok(Arc::clone(known));
            }
            locals.generation
        };
        let read = self
            .with_db(|db, _| {
                Ok(db
                    .list_accounts()?
                    .into_iter()
                    .filter(|a| a.local)
                    .map(|a| LocalAccount { name: a.name, id: a.id })
                    .collect::<Vec<_>>())
            })
            .await?;
        let read = Arc::new(read);
        let mut locals = self.local_accounts.lock().unwrap_or_else(|p| p.into_inner());
        if locals.generation == generation {
            locals.known = Some(Arc::clone(&read));
        }
        Ok(read)
    }

    pub(crate) fn forget_signing_key(&self, id: &str) {
        let removed = self.signing_keys.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(identity) = removed {
            crate::messaging::forget_signer(&identity);
        }
    }

    pub(crate) fn cache_signing_key(&self, id: String, identity: dchat_keyfile::Identity) {
        self.signing_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, identity);
    }

    fn lock_db(&self) -> std::sync::MutexGuard<'_, Option<Database>> {
        self.db.lock()
    }

    /// The database handle, for subsystems that run outside request handlers.
    pub fn shared_db(&self) -> SharedDb {
        self.db.clone()
    }

    /// Takes the database out for a clean close at shutdown; later requests
    /// get `ShuttingDown`.
    pub fn take_db(&self) -> Option<Database> {
        self.lock_db().take()
    }

    /// After any change to the accounts table: the count for the status,
    /// and the local accounts read again on next use.
    pub(crate) fn update_accounts(&self, accounts: u64) {
        self.forget_local_accounts();
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.accounts, accounts) != accounts);
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
