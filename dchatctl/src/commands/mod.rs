//! One module per command group; each returns the exit status to use.

pub mod account;
pub mod chain;
pub mod channel;
pub mod daemon;
pub mod db;
pub mod follow;
pub mod keygen;
pub mod messages;
pub mod peers;
pub mod testnet;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dchat_control::{Client, DEFAULT_SOCKET};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CtlError;

/// How long one request may take before we give up on the daemon.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const DEV_SOCKET: &str = "dchat-dev/dchatd.sock";

/// `--socket`/`DCHAT_SOCKET`, else the packaged path, else a `--dev` node
/// started in the current directory.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let packaged = Path::new(DEFAULT_SOCKET);
    let dev = Path::new(DEV_SOCKET);
    if !packaged.exists() && dev.exists() {
        return dev.to_path_buf();
    }
    packaged.to_path_buf()
}

/// Connects and makes one call, bounded by [`CALL_TIMEOUT`].
pub async fn call<P, R>(socket: &Path, method: &str, params: &P) -> Result<R, CtlError>
where
    P: Serialize + ?Sized,
    R: DeserializeOwned,
{
    let work = async {
        let mut client = Client::connect(socket).await?;
        Ok::<R, CtlError>(client.call(method, params).await?)
    };
    tokio::time::timeout(CALL_TIMEOUT, work).await.map_err(|_| {
        CtlError::Failed(format!(
            "dchatd did not answer {method} within {} s",
            CALL_TIMEOUT.as_secs()
        ))
    })?
}
