//! One handler module per Varlink interface. Each decodes its parameters,
//! calls the service layer and encodes the reply; `dispatch` does routing,
//! access checks and the mapping of service errors.

pub mod accounts;
pub mod chain;
pub mod channels;
pub mod daemon;
pub mod database;
pub mod messages;
pub mod service;
