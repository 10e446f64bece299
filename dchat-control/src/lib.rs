//! The dchat control-socket protocol, shared by `dchatd` and `dchatctl`.
//!
//! The wire protocol is [Varlink](https://varlink.org): JSON objects, each
//! terminated by a NUL byte, over a Unix stream socket. This crate holds the
//! framing (with a frame-size cap), the Varlink message types, the typed
//! `io.dchat.*` API with its interface definitions, and an async client. It
//! depends on serde and tokio only, so the CLI links nothing of the daemon.

pub mod api;
pub mod bulk;
pub mod client;
pub mod frame;
pub mod interfaces;
pub mod varlink;

pub use client::{CallError, Client, ClientError};
pub use frame::{FrameError, DEFAULT_MAX_FRAME, MAX_REPLY_FRAME};
pub use varlink::{Call, Reply};

/// Where the packaged daemon listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/dchat/dchatd.sock";
