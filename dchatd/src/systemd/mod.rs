//! Everything dchatd knows about systemd, in one place.
//!
//! Every function here is a harmless no-op when the daemon is not running
//! under systemd (no `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `LISTEN_FDS` or
//! `JOURNAL_STREAM` in the environment), so the rest of the daemon calls them
//! unconditionally instead of asking "are we under systemd?" everywhere.
//!
//! - [`notify`]: `sd_notify` state changes (READY, STATUS, RELOADING, STOPPING,
//!   EXTEND_TIMEOUT_USEC, WATCHDOG).
//! - [`watchdog`]: the WATCHDOG_USEC interval and a task that keeps it fed.
//! - [`activation`]: sockets handed over by a `.socket` unit.
//! - [`journal`]: whether stderr is connected to the journal.

pub mod activation;
pub mod journal;
pub mod notify;
pub mod watchdog;

pub use activation::{adopt_inherited, take_listener, ActivationError};
pub use journal::stderr_is_journal;
pub use notify::{extend_timeout, ready, reloading, status, stopping, watchdog_ping};
