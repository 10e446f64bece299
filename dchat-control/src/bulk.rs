//! Bulk transfer on an upgraded Varlink connection.
//!
//! A call made with `"upgrade": true` gets one ordinary reply; after it the
//! connection belongs to the method (Varlink's protocol upgrade). Methods
//! that move whole files (io.dchat.Database.Backup and Restore) then speak
//! this: NUL-terminated JSON messages shaped like Varlink replies, where a
//! message whose parameters are exactly `{"data": N}` is followed by N raw
//! bytes. Raw bytes instead of base64 chunks in JSON keep a multi-gigabyte
//! transfer near the speed of a local copy (ADR 0006).

use std::io;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::varlink::Reply;

/// Bytes per data message a sender should use.
pub const CHUNK: usize = 1024 * 1024;
/// The largest data message a receiver accepts.
pub const MAX_DATA: usize = 8 * CHUNK;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("malformed bulk message: {0}")]
    Malformed(String),
    #[error("the peer closed the connection")]
    Closed,
}

impl From<io::Error> for BulkError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            BulkError::Closed
        } else {
            BulkError::Frame(FrameError::Io(e))
        }
    }
}

/// What the next message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A reply-shaped message (parameters, or an error).
    Message(Reply),
    /// This many raw bytes follow; read them with [`receive_data`].
    Data(usize),
}

/// Writes one reply-shaped message.
pub async fn send_message<W: AsyncWrite + Unpin>(writer: &mut W, message: &Reply) -> io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
    write_frame(writer, &payload).await
}

/// Writes `bytes` as one data message.
pub async fn send_data<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    let header = Reply {
        parameters: Some(json!({ "data": bytes.len() })),
        continues: true,
        error: None,
    };
    let payload = serde_json::to_vec(&header).map_err(io::Error::other)?;
    // One buffer for header, NUL and bytes: a single write for small
    // chunks, and no flush between header and data.
    let mut head = payload;
    head.push(0);
    writer.write_all(&head).await?;
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Reads the next message; `buf` is scratch space kept between calls.
pub async fn receive<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame: usize,
) -> Result<Incoming, BulkError> {
    if !read_frame(reader, buf, max_frame).await? {
        return Err(BulkError::Closed);
    }
    let message: Reply = serde_json::from_slice(buf).map_err(|e| BulkError::Malformed(e.to_string()))?;
    if message.error.is_none() {
        if let Some(Value::Object(map)) = &message.parameters {
            if let (1, Some(n)) = (map.len(), map.get("data")) {
                let n = n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n <= MAX_DATA)
                    .ok_or_else(|| BulkError::Malformed(format!("data length {n} (at most {MAX_DATA})")))?;
                return Ok(Incoming::Data(n));
            }
        }
    }
    Ok(Incoming::Message(message))
}

/// Reads the raw bytes announced by [`Incoming::Data`] into `out`, which
/// must be exactly that long.
pub async fn receive_data<R: AsyncBufRead + Unpin>(reader: &mut R, out: &mut [u8]) -> Result<(), BulkError> {
    reader.read_exact(out).await?;
    Ok(())
}

/// The client's side of an upgraded connection, from
/// [`crate::Client::call_upgrade`].
pub struct Upgraded {
    pub(crate) reader: BufReader<OwnedReadHalf>,
    pub(crate) writer: OwnedWriteHalf,
    pub(crate) buf: Vec<u8>,
    pub(crate) max_frame: usize,
}

impl Upgraded {
    pub async fn send_message(&mut self, message: &Reply) -> io::Result<()> {
        send_message(&mut self.writer, message).await
    }

    pub async fn send_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        send_data(&mut self.writer, bytes).await
    }

    pub async fn receive(&mut self) -> Result<Incoming, BulkError> {
        receive(&mut self.reader, &mut self.buf, self.max_frame).await
    }

    pub async fn receive_data(&mut self, out: &mut [u8]) -> Result<(), BulkError> {
        receive_data(&mut self.reader, out).await
    }

    /// The socket itself, for what tokio's halves cannot do, such as
    /// sending a file descriptor with `SCM_RIGHTS` (ADR 0006).
    pub fn socket(&self) -> &tokio::net::UnixStream {
        self.writer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_and_messages_round_trip() {
        let mut wire = Vec::new();
        send_data(&mut wire, b"\0raw\0bytes").await.unwrap();
        send_message(&mut wire, &Reply::ok(json!({"sha256": "ab"})))
            .await
            .unwrap();
        send_data(&mut wire, b"").await.unwrap();

        let mut reader = BufReader::with_capacity(3, wire.as_slice());
        let mut buf = Vec::new();
        let Incoming::Data(n) = receive(&mut reader, &mut buf, 1024).await.unwrap() else {
            panic!("expected data");
        };
        let mut out = vec![0; n];
        receive_data(&mut reader, &mut out).await.unwrap();
        assert_eq!(out, b"\0raw\0bytes");
        let Incoming::Message(m) = receive(&mut reader, &mut buf, 1024).await.unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(m.parameters, Some(json!({"sha256": "ab"})));
        assert_eq!(receive(&mut reader, &mut buf, 1024).await.unwrap(), Incoming::Data(0));
        assert!(matches!(
            receive(&mut reader, &mut buf, 1024).await,
            Err(BulkError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_or_odd_data_headers_are_refused() {
        let too_big = format!("{{\"parameters\":{{\"data\":{}}}}}\0", MAX_DATA + 1);
        let mut reader = BufReader::new(too_big.as_bytes());
        let mut buf = Vec::new();
        assert!(matches!(
            receive(&mut reader, &mut buf, 1024).await,
            Err(BulkError::Malformed(_))
        ));
        // "data" beside other fields is an ordinary message.
        let mixed = b"{\"parameters\":{\"data\":3,\"x\":1}}\0";
        let mut reader = BufReader::new(&mixed[..]);
        assert!(matches!(
            receive(&mut reader, &mut buf, 1024).await.unwrap(),
            Incoming::Message(_)
        ));
    }

    #[tokio::test]
    async fn short_data_is_an_error() {
        let mut wire = Vec::new();
        send_data(&mut wire, b"12345").await.unwrap();
        wire.truncate(wire.len() - 2);
        let mut reader = BufReader::new(wire.as_slice());
        let mut buf = Vec::new();
        let Incoming::Data(n) = receive(&mut reader, &mut buf, 1024).await.unwrap() else {
            panic!("expected data");
        };
        let mut out = vec![0; n];
        assert!(matches!(
            receive_data(&mut reader, &mut out).await,
            Err(BulkError::Closed)
        ));
    }
}
