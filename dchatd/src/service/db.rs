//! The database shared by the control handlers, the chain and (later) the
//! network: one connection behind a mutex, taken out at shutdown or for a
//! restore so later users get a clear "shutting down" instead of a panic.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::Database;

#[derive(Clone)]
pub struct SharedDb(Arc<Mutex<Option<Database>>>);

impl SharedDb {
    pub fn new(db: Database) -> SharedDb {
        SharedDb(Arc::new(Mutex::new(Some(db))))
    }

    pub fn lock(&self) -> MutexGuard<'_, Option<Database>> {
        // A panic while holding the lock cannot leave SQLite half-written (its
        // own transactions guard that), so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the database is open, without waiting: a lock held by a
    /// request in progress means it is.
    pub fn is_open(&self) -> bool {
        match self.0.try_lock() {
            Ok(guard) => guard.is_some(),
            Err(std::sync::TryLockError::WouldBlock) => true,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().is_some(),
        }
    }

    /// Takes the database out (shutdown, restore).
    pub fn take(&self) -> Option<Database> {
        self.lock().take()
    }

    /// Puts a (re)opened database back.
    pub fn put(&self, db: Database) {
        *self.lock() = Some(db);
    }
}
