//! One control connection: read frames under the idle timeout and the frame
//! cap, hand each call to dispatch, write the replies.

use std::sync::Arc;
use std::time::Duration;

use dchat_control::api::errors as dchat_errors;
use dchat_control::frame::{read_frame, write_frame, FrameError};
use dchat_control::{Call, Reply};
use interprocess::os::unix::uds_local_socket::tokio::Stream;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::auth::Access;
use super::dispatch::{self, Flow};
use crate::service::Node;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame: usize,
    pub idle_timeout: Duration,
}

pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    limits: Limits,
    pub access: Access,
}

impl Conn {
    pub fn new(stream: Stream, access: Access, limits: Limits) -> Conn {
        // tokio's own halves, not the generic split: a backup receives a
        // file descriptor through the read half's socket.
        let (read, write) = UnixStream::from(stream).into_split();
        Conn {
            reader: BufReader::new(read),
            writer: write,
            buf: Vec::new(),
            limits,
            access,
        }
    }

    /// Writes one reply; a client that stops reading is cut off after the
    /// idle timeout instead of holding a task forever.
    pub async fn send(&mut self, reply: &Reply) -> Result<(), ()> {
        let payload = serde_json::to_vec(reply).map_err(|e| tracing::error!(error = %e, "cannot encode reply"))?;
        match tokio::time::timeout(self.limits.idle_timeout, write_frame(&mut self.writer, &payload)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "client went away while we replied");
                Err(())
            }
            Err(_) => {
                tracing::info!("client stopped reading replies; closing");
                Err(())
            }
        }
    }

    /// The connection's halves and limits, for a method called with
    /// `upgrade` that now speaks `dchat_control::bulk` on it.
    pub fn upgraded(&mut self) -> (&mut BufReader<OwnedReadHalf>, &mut OwnedWriteHalf, Limits) {
        (&mut self.reader, &mut self.writer, self.limits)
    }

    /// Resolves when the client sends anything or hangs up; used while a
    /// reply stream is open, when the client has nothing more to say.
    pub async fn closed(&mut self) {
        let _ = self.reader.fill_buf().await;
    }

    /// Serves calls until the client leaves, misbehaves, idles out, or the
    /// daemon shuts down.
    pub async fn serve(mut self, node: Arc<Node>, shutdown: CancellationToken) {
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(self.limits.idle_timeout, read_frame(&mut self.reader, &mut self.buf, self.limits.max_frame)) => r,
            };
            match read {
                Err(_) => {
                    tracing::debug!("idle timeout; closing control connection");
                    return;
                }
                Ok(Ok(false)) => return,
                Ok(Ok(true)) => {}
                Ok(Err(FrameError::TooLarge { max })) => {
                    tracing::warn!(max, "control request larger than the frame cap; closing");
                    let _ = self.send(&invalid(&format!("request larger than {max} bytes"))).await;
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "control connection broke");
                    return;
                }
            }
            // After a frame that is not a call we cannot trust what follows:
            // say why, then hang up.
            let call = match parse_call(&self.buf) {
                Ok(call) => call,
                Err(reason) => {
                    tracing::info!(error = %reason, "malformed control request");
                    let _ = self.send(&invalid(&reason)).await;
                    return;
                }
            };
            if dispatch::handle(&node, &mut self, call, &shutdown).await == Flow::Close {
                return;
            }
        }
    }
}

/// A call must be a JSON object; serde alone would also take an array in
/// field order, which Varlink does not allow.
fn parse_call(bytes: &[u8]) -> Result<Call, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("a Varlink call must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("not a Varlink call: {e}"))
}

fn invalid(reason: &str) -> Reply {
    Reply::error(dchat_errors::INVALID_REQUEST, json!({ "reason": reason }))
}
