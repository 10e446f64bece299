//! The daemon's application layer: the state every handler shares and the
//! handlers themselves. Nothing here touches a socket, so handlers can be
//! called directly in tests; `control/` maps them onto the wire.

mod accounts;
mod error;
mod status;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

pub use accounts::validate_name;
pub use error::ServiceError;
pub use status::StatusSnapshot;

use crate::config::Config;
use crate::keystore::Keystore;
use crate::storage::Database;

/// Everything a request handler may use.
pub struct Node {
    config: Config,
    db: Mutex<Option<Database>>,
    keystore: Keystore,
    peer_id: String,
    started: Instant,
    status: watch::Sender<StatusSnapshot>,
}

impl Node {
    pub fn new(config: Config, db: Database, keystore: Keystore, peer_id: String) -> Result<Arc<Node>, ServiceError> {
        let accounts = db.count_accounts()?;
        let (status, _) = watch::channel(StatusSnapshot {
            accounts,
            ..StatusSnapshot::default()
        });
        Ok(Arc::new(Node {
            config,
            db: Mutex::new(Some(db)),
            keystore,
            peer_id,
            started: Instant::now(),
            status,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    fn lock_db(&self) -> MutexGuard<'_, Option<Database>> {
        // A panic while holding the lock cannot leave SQLite half-written (its
        // own transactions guard that), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the database out for a clean close at shutdown; later requests
    /// get `ShuttingDown`.
    pub fn take_db(&self) -> Option<Database> {
        self.lock_db().take()
    }

    pub(crate) fn update_accounts(&self, accounts: u64) {
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.accounts, accounts) != accounts);
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
