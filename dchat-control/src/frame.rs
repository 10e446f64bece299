//! NUL-terminated frames with a size cap.
//!
//! Varlink ends every message with a NUL byte. A peer that never sends one,
//! or sends more than the cap, must not make us buffer without bound, so the
//! reader counts as it goes and gives up at `max` bytes.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Frame cap used by both sides unless configured: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Frame cap of a reply the client reads. The daemon's answers can be
/// larger than any request it accepts: a full block (2 MiB of binary
/// transactions) is about 5 MiB of JSON. This only stops an endless frame.
pub const MAX_REPLY_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame into `buf` (cleared first), without its terminating NUL.
///
/// Returns `Ok(false)` on a clean end of stream between frames.
pub async fn read_frame<R>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<bool, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let (chunk, done) = match available.iter().position(|b| *b == 0) {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > max {
            return Err(FrameError::TooLarge { max });
        }
        buf.extend_from_slice(chunk);
        let consumed = chunk.len() + usize::from(done);
        reader.consume(consumed);
        if done {
            return Ok(true);
        }
    }
}

/// Writes `payload` followed by the NUL terminator and flushes.
pub async fn write_frame<W>(writer: &mut W, payload: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    writer.write_all(payload).await?;
    writer.write_all(&[0]).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            match read_frame(&mut reader, &mut buf, max).await {
                Ok(true) => out.push(Ok(buf.clone())),
                Ok(false) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_on_nul_across_small_reads() {
        let got = frames(b"{\"a\":1}\0{}\0", 64).await;
        assert_eq!(got, vec![Ok(b"{\"a\":1}".to_vec()), Ok(b"{}".to_vec())]);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let got = frames(&[b'x'; 100], 10).await;
        assert_eq!(got, vec![Err("frame larger than 10 bytes".to_string())]);
    }

    #[tokio::test]
    async fn frame_of_exactly_max_is_accepted() {
        let mut input = vec![b'x'; 10];
        input.push(0);
        assert_eq!(frames(&input, 10).await, vec![Ok(vec![b'x'; 10])]);
    }

    #[tokio::test]
    async fn eof_mid_frame_is_truncated() {
        let got = frames(b"{\"a\"", 64).await;
        assert_eq!(got, vec![Err("connection closed in the middle of a frame".to_string())]);
    }
}
