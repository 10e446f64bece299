//! dchatctl's errors and the exit status each maps to (CLI.md).

use dchat_control::{CallError, ClientError};

pub const EX_FAILED: u8 = 1;
pub const EX_USAGE: u8 = 2;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_NOPERM: u8 = 77;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Connect(#[from] ClientError),
    #[error("{0}")]
    Call(#[from] CallError),
    /// The request was bad before it reached the daemon.
    #[error("{0}")]
    Usage(String),
    /// Anything else that failed locally (files, passwords, keys).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Connect(ClientError::Unreachable { .. }) => EX_UNAVAILABLE,
            CtlError::Connect(ClientError::PermissionDenied { .. }) => EX_NOPERM,
            CtlError::Call(e) if e.is_permission_denied() => EX_NOPERM,
            // The daemon went away mid-call.
            CtlError::Call(CallError::Io(_)) => EX_UNAVAILABLE,
            CtlError::Usage(_) => EX_USAGE,
            _ => EX_FAILED,
        }
    }

    /// The one line printed on stderr.
    pub fn message(&self) -> String {
        match self {
            CtlError::Call(e) if e.is_permission_denied() => {
                "permission denied: the daemon accepts only root, its own user and members of its control group".into()
            }
            other => other.to_string(),
        }
    }
}

impl From<dchat_keyfile::KeyError> for CtlError {
    fn from(e: dchat_keyfile::KeyError) -> Self {
        CtlError::Failed(e.to_string())
    }
}
