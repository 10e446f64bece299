//! The request-response codec for dchat's own protocol: one request and
//! one response per stream, each a length-prefixed byte string. What the
//! bytes mean is the protocol layer's business (`crate::p2p::wire`); this
//! layer only enforces the size caps, so a peer cannot make us buffer more
//! than a cap, whatever it claims.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol name peers negotiate, versioned with
/// [`super::behaviour::PROTOCOL_VERSION`]: envelopes may carry several
/// messages (2, ADR 0017) under one signature (3, ADR 0018); a node of an
/// earlier version could otherwise fetch them from a relay before identify
/// tells the two apart, and drop them.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/dchat/req/3");
/// Largest request accepted (a sealed DM is at most 80 KiB; a block batch
/// request is tiny).
pub const MAX_REQUEST: usize = 256 * 1024;
/// Largest response accepted (a batch of blocks or mailbox envelopes).
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Clone, Default)]
pub struct BytesCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {max}-byte cap"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8], max: usize) -> io::Result<()> {
    if data.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes is over the {max}-byte cap", data.len()),
        ));
    }
    let len = u32::try_from(data.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl libp2p::request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_REQUEST).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_RESPONSE).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req, MAX_REQUEST).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &res, MAX_RESPONSE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_reading_it() {
        futures::executor::block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"hello", 16).await.unwrap();
            let mut input = Cursor::new(out.into_inner());
            assert_eq!(read_frame(&mut input, 16).await.unwrap(), b"hello");

            // A peer claiming 4 GiB gets an error, not an allocation.
            let mut claim = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
            let err = read_frame(&mut claim, MAX_REQUEST).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // Truncated frames are errors too.
            let mut short = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
            assert!(read_frame(&mut short, 16).await.is_err());

            let mut out = Cursor::new(Vec::new());
            assert!(write_frame(&mut out, &[0; 17], 16).await.is_err());
        });
    }
}
