//! `--follow`: a streaming call ("more": true) printed reply by reply until
//! the user stops it, the reader of stdout goes away, or the daemon does.

use std::path::Path;

use dchat_control::api::errors;
use dchat_control::{CallError, Client};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

use super::CALL_TIMEOUT;
use crate::error::CtlError;

/// Calls `method` with "more": true and hands every reply to `each`.
///
/// Returns 0 on Ctrl-C or SIGTERM (stopping is what the user asked for),
/// and when the daemon ends the stream with a last reply. The daemon
/// hanging up or shutting down mid-stream is exit 69, like any daemon that
/// went away. A closed stdout surfaces from `each` as
/// [`CtlError::StdoutClosed`], which `main` turns into a quiet 0.
pub async fn follow<P, R>(
    socket: &Path,
    method: &str,
    params: &P,
    mut each: impl FnMut(R) -> Result<(), CtlError>,
) -> Result<u8, CtlError>
where
    P: Serialize + ?Sized,
    R: DeserializeOwned,
{
    // Installed before connecting, so an early Ctrl-C is already ours.
    let stop = stop_requested()?;
    let stream = async {
        let work = async {
            let mut client = Client::connect(socket).await?;
            client.call_more(method, params).await?;
            let first = client.next::<R>().await?;
            Ok::<_, CtlError>((client, first))
        };
        // Only the first reply is bounded: later ones come when there is news.
        let (mut client, (mut reply, mut continues)) =
            tokio::time::timeout(CALL_TIMEOUT, work).await.map_err(|_| {
                CtlError::Failed(format!(
                    "dchatd did not answer {method} within {} s",
                    CALL_TIMEOUT.as_secs()
                ))
            })??;
        loop {
            each(reply)?;
            if !continues {
                return Ok(0);
            }
            (reply, continues) = client.next::<R>().await.map_err(went_away)?;
        }
    };
    tokio::select! {
        result = stream => result,
        () = stop => Ok(0),
    }
}

/// A daemon that stops mid-stream has gone away (exit 69), whether it said
/// so first or just closed the connection.
fn went_away(e: CallError) -> CtlError {
    match e {
        CallError::Remote { error, .. } if error == errors::SHUTTING_DOWN => CtlError::Call(CallError::Io(
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "dchatd is shutting down"),
        )),
        other => CtlError::Call(other),
    }
}

/// Resolves on SIGINT or SIGTERM.
fn stop_requested() -> Result<impl std::future::Future<Output = ()>, CtlError> {
    let install = |kind: SignalKind| signal(kind).map_err(|e| CtlError::Failed(format!("cannot handle signals: {e}")));
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutting_down_mid_stream_is_exit_69() {
        let e = went_away(CallError::Remote {
            error: errors::SHUTTING_DOWN.into(),
            parameters: serde_json::json!({}),
        });
        assert_eq!(e.exit_code(), crate::error::EX_UNAVAILABLE);
        assert!(e.message().contains("shutting down"), "{}", e.message());
        let other = went_away(CallError::Remote {
            error: errors::INTERNAL.into(),
            parameters: serde_json::json!({"message": "x"}),
        });
        assert_eq!(other.exit_code(), crate::error::EX_FAILED);
    }
}
