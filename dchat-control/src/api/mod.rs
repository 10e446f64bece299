//! Typed parameters and replies of the `io.dchat.*` methods.
//!
//! Field names are the JSON names scripts rely on (see CLI.md); keep them.

/// What the daemon needs to know about a method before dispatching it.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    pub method: &'static str,
    /// Read-only methods may be opened to every local user by config.
    pub read_only: bool,
}

mod accounts;
mod chain;
mod channels;
mod daemon;
mod database;
mod messages;
mod network;
mod service;

pub use accounts::*;
pub use chain::*;
pub use channels::*;
pub use daemon::*;
pub use database::*;
pub use messages::*;
pub use network::*;
pub use service::*;

/// Every method the daemon serves: one table per interface. A new
/// interface adds its module and one line here.
const TABLES: &[&[MethodInfo]] = &[
    service::METHODS,
    daemon::METHODS,
    accounts::METHODS,
    chain::METHODS,
    channels::METHODS,
    database::METHODS,
    network::METHODS,
    messages::METHODS,
];

/// Every method, in interface order.
pub fn methods() -> impl Iterator<Item = &'static MethodInfo> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// Looks a method up by its full name.
pub fn method_info(method: &str) -> Option<&'static MethodInfo> {
    methods().find(|m| m.method == method)
}

/// Typed errors of the `io.dchat.*` interfaces.
pub mod errors {
    pub const INVALID_REQUEST: &str = "io.dchat.Daemon.InvalidRequest";
    pub const TOO_MANY_CONNECTIONS: &str = "io.dchat.Daemon.TooManyConnections";
    pub const SHUTTING_DOWN: &str = "io.dchat.Daemon.ShuttingDown";
    pub const INTERNAL: &str = "io.dchat.Daemon.Internal";
    pub const NAME_TAKEN: &str = "io.dchat.Accounts.NameTaken";
    pub const ALREADY_EXISTS: &str = "io.dchat.Accounts.AlreadyExists";
    pub const NOT_FOUND: &str = "io.dchat.Accounts.NotFound";
    pub const INVALID_NAME: &str = "io.dchat.Accounts.InvalidName";
    pub const INVALID_KEY: &str = "io.dchat.Accounts.InvalidKey";
    pub const ACCOUNT_REQUIRED: &str = "io.dchat.Accounts.AccountRequired";
    pub const NOT_LOCAL: &str = "io.dchat.Accounts.NotLocal";
    pub const NOT_REGISTERED: &str = "io.dchat.Accounts.NotRegistered";
}
