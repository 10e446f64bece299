//! An async Varlink client for the daemon's control socket.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::bulk::Upgraded;
use crate::frame::{read_frame, write_frame, FrameError, MAX_REPLY_FRAME};
use crate::varlink::{errors, Call, Reply};

/// Why the daemon could not be reached at all.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach dchatd at {path}: {source} (is the daemon running?)")]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("permission denied opening {path}: your user must be root, the daemon's user, or in its control group")]
    PermissionDenied { path: PathBuf },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The daemon answered with a typed Varlink error.
    #[error("{}", describe_remote(.error, .parameters))]
    Remote { error: String, parameters: Value },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection to dchatd lost: {0}")]
    Io(#[from] std::io::Error),
}

impl CallError {
    /// True when the daemon refused the caller.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, CallError::Remote { error, .. } if error == errors::PERMISSION_DENIED)
    }
}

fn describe_remote(error: &str, parameters: &Value) -> String {
    let short = error.rsplit('.').next().unwrap_or(error);
    match parameters.as_object() {
        Some(map) if !map.is_empty() => {
            let details: Vec<String> = map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect();
            format!("{short} ({})", details.join(", "))
        }
        _ => short.to_string(),
    }
}

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    max_frame: usize,
}

impl Client {
    /// Connects to the control socket at `path`.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            if source.kind() == ErrorKind::PermissionDenied {
                ClientError::PermissionDenied {
                    path: path.to_path_buf(),
                }
            } else {
                ClientError::Unreachable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let (read, write) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(read),
            writer: write,
            buf: Vec::new(),
            max_frame: MAX_REPLY_FRAME,
        })
    }

    /// Calls `method` and decodes its single reply.
    pub async fn call<P, R>(&mut self, method: &str, params: &P) -> Result<R, CallError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.send(method, params, false).await?;
        let reply = self.next_raw().await?;
        decode(reply)
    }

    /// Calls `method` with `"upgrade": true` and decodes its reply; the
    /// connection then carries the method's bulk messages ([`crate::bulk`]).
    pub async fn call_upgrade<P, R>(mut self, method: &str, params: &P) -> Result<(R, Upgraded), CallError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.send_call(method, params, false, true).await?;
        let reply = decode(self.next_raw().await?)?;
        let upgraded = Upgraded {
            reader: self.reader,
            writer: self.writer,
            buf: self.buf,
            max_frame: self.max_frame,
        };
        Ok((reply, upgraded))
    }

    /// Calls `method` with `"more": true`; read replies with [`Client::next`].
    pub async fn call_more<P>(&mut self, method: &str, params: &P) -> Result<(), CallError>
    where
        P: Serialize + ?Sized,
    {
        self.send(method, params, true).await
    }

    /// The next reply of a streaming call and whether more will follow.
    pub async fn next<R: DeserializeOwned>(&mut self) -> Result<(R, bool), CallError> {
        let reply = self.next_raw().await?;
        let continues = reply.continues;
        Ok((decode(reply)?, continues))
    }

    async fn send<P>(&mut self, method: &str, params: &P, more: bool) -> Result<(), CallError>
    where
        P: Serialize + ?Sized,
    {
        self.send_call(method, params, more, false).await
    }

    async fn send_call<P>(&mut self, method: &str, params: &P, more: bool, upgrade: bool) -> Result<(), CallError>
    where
        P: Serialize + ?Sized,
    {
        let parameters =
            serde_json::to_value(params).map_err(|e| CallError::Protocol(format!("cannot encode parameters: {e}")))?;
        let call = Call {
            method: method.to_string(),
            parameters: Some(parameters),
            oneway: false,
            more,
            upgrade,
        };
        let payload = serde_json::to_vec(&call).map_err(|e| CallError::Protocol(format!("cannot encode call: {e}")))?;
        write_frame(&mut self.writer, &payload).await?;
        Ok(())
    }

    async fn next_raw(&mut self) -> Result<Reply, CallError> {
        match read_frame(&mut self.reader, &mut self.buf, self.max_frame).await {
            Ok(true) => {
                serde_json::from_slice(&self.buf).map_err(|e| CallError::Protocol(format!("malformed reply: {e}")))
            }
            Ok(false) => Err(CallError::Io(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            ))),
            Err(FrameError::Io(e)) => Err(CallError::Io(e)),
            Err(e) => Err(CallError::Protocol(e.to_string())),
        }
    }
}

fn decode<R: DeserializeOwned>(reply: Reply) -> Result<R, CallError> {
    let parameters = reply.parameters_object();
    if let Some(error) = reply.error {
        return Err(CallError::Remote { error, parameters });
    }
    serde_json::from_value(parameters).map_err(|e| CallError::Protocol(format!("unexpected reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remote_errors_read_as_one_line() {
        let e = CallError::Remote {
            error: "io.dchat.Accounts.NameTaken".into(),
            parameters: json!({"name": "alice"}),
        };
        assert_eq!(e.to_string(), "NameTaken (name: alice)");
        let bare = CallError::Remote {
            error: errors::PERMISSION_DENIED.into(),
            parameters: json!({}),
        };
        assert!(bare.is_permission_denied());
        assert_eq!(bare.to_string(), "PermissionDenied");
    }

    /// A reply larger than any request the daemon takes (a full block as
    /// JSON is several MiB) is read; an endless one is still refused.
    #[tokio::test(flavor = "current_thread")]
    async fn replies_beyond_the_request_cap_are_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let big = "x".repeat(3 * crate::DEFAULT_MAX_FRAME);
        let reply = format!("{{\"parameters\":{{\"text\":\"{big}\"}}}}\0");
        let server = tokio::spawn(async move {
            for answer in [reply.into_bytes(), vec![b'x'; MAX_REPLY_FRAME + 1]] {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut call = vec![0u8; 4096];
                let _ = conn.read(&mut call).await;
                let _ = conn.write_all(&answer).await;
            }
        });
        let mut client = Client::connect(&path).await.expect("connect");
        let got: serde_json::Value = client.call("x.y.Z", &json!({})).await.expect("a 3 MiB reply");
        assert_eq!(got["text"].as_str().map(str::len), Some(big.len()));
        let mut client = Client::connect(&path).await.expect("connect");
        let endless = client.call::<_, serde_json::Value>("x.y.Z", &json!({})).await;
        assert!(
            matches!(&endless, Err(CallError::Protocol(m)) if m.contains("frame larger")),
            "{endless:?}"
        );
        server.await.expect("server");
    }
}
