//! Bytes on our two p2p channels.
//!
//! The relay channel carries one encoded [`Block`] per message: the leader's
//! proposal, or a block forwarded to a validator that missed it.
//!
//! The sync channel carries these, each starting with a tag byte:
//!
//! ```text
//! 1 GetAncestors  digest[32] max:u16       "this block and up to max-1 of its ancestors"
//! 2 Blocks        count:u32 (len:u32 block)*   newest first, each the parent of the one before
//! 3 GetTip                                  "your highest finalized block and its certificate"
//! 4 Tip           len:u32 finalization  len:u32 block
//! ```
//!
//! Asking by digest, newest first, makes every answer self-authenticating:
//! the first block must hash to the digest asked for (which came from a
//! certificate or a proposal), and each next one to the previous block's
//! parent. A peer can withhold blocks but never slip in a wrong one.

use crate::ledger::{Block, MAX_BLOCK_BYTES};

const GET_ANCESTORS: u8 = 1;
const BLOCKS: u8 = 2;
const GET_TIP: u8 = 3;
const TIP: u8 = 4;

/// Most blocks asked for in one request.
pub const MAX_ANCESTORS: u16 = 128;
/// Largest encoded finalization certificate we accept.
const MAX_PROOF_BYTES: usize = 64 * 1024;

/// A message on the sync channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMessage {
    GetAncestors {
        digest: [u8; 32],
        max: u16,
    },
    /// Encoded blocks, newest first. Decoded by the receiver, which checks
    /// the hash chain.
    Blocks(Vec<Vec<u8>>),
    GetTip,
    Tip {
        finalization: Vec<u8>,
        block: Vec<u8>,
    },
}

impl SyncMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SyncMessage::GetAncestors { digest, max } => {
                out.push(GET_ANCESTORS);
                out.extend_from_slice(digest);
                out.extend_from_slice(&max.to_be_bytes());
            }
            SyncMessage::Blocks(blocks) => {
                out.push(BLOCKS);
                put_len(&mut out, blocks.len());
                for b in blocks {
                    put_len(&mut out, b.len());
                    out.extend_from_slice(b);
                }
            }
            SyncMessage::GetTip => out.push(GET_TIP),
            SyncMessage::Tip { finalization, block } => {
                out.push(TIP);
                put_len(&mut out, finalization.len());
                out.extend_from_slice(finalization);
                put_len(&mut out, block.len());
                out.extend_from_slice(block);
            }
        }
        out
    }

    /// Parses one message; `None` for anything malformed or oversized.
    pub fn decode(bytes: &[u8]) -> Option<SyncMessage> {
        let (&tag, mut rest) = bytes.split_first()?;
        let msg = match tag {
            GET_ANCESTORS => {
                let digest = take(&mut rest, 32)?.try_into().ok()?;
                let max = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
                SyncMessage::GetAncestors { digest, max }
            }
            BLOCKS => {
                let count = take_len(&mut rest)?;
                // Each entry takes at least its 4-byte length: never reserve
                // more than the bytes could hold.
                let mut blocks = Vec::with_capacity(count.min(rest.len() / 4));
                for _ in 0..count {
                    let len = take_len(&mut rest)?;
                    if len > MAX_BLOCK_BYTES {
                        return None;
                    }
                    blocks.push(take(&mut rest, len)?.to_vec());
                }
                SyncMessage::Blocks(blocks)
            }
            GET_TIP => SyncMessage::GetTip,
            TIP => {
                let len = take_len(&mut rest)?;
                if len > MAX_PROOF_BYTES {
                    return None;
                }
                let finalization = take(&mut rest, len)?.to_vec();
                let len = take_len(&mut rest)?;
                if len > MAX_BLOCK_BYTES {
                    return None;
                }
                let block = take(&mut rest, len)?.to_vec();
                SyncMessage::Tip { finalization, block }
            }
            _ => return None,
        };
        rest.is_empty().then_some(msg)
    }
}

/// Packs encoded blocks (newest first) into one `Blocks` message of at most
/// `limit` bytes; always at least the first block.
pub fn blocks_within(blocks: impl IntoIterator<Item = Block>, limit: usize) -> SyncMessage {
    let mut size = 1 + 4;
    let mut out = Vec::new();
    for b in blocks {
        let bytes = b.encode();
        size += 4 + bytes.len();
        if size > limit && !out.is_empty() {
            break;
        }
        out.push(bytes);
    }
    SyncMessage::Blocks(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Every length we write is bounded by the message size limit (< 4 GiB).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_len(rest: &mut &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(take(rest, 4)?.try_into().ok()?);
    usize::try_from(len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            SyncMessage::GetAncestors {
                digest: [9; 32],
                max: 17,
            },
            SyncMessage::Blocks(vec![vec![1, 2, 3], vec![], vec![4]]),
            SyncMessage::Blocks(vec![]),
            SyncMessage::GetTip,
            SyncMessage::Tip {
                finalization: vec![5; 70],
                block: vec![6; 3],
            },
        ] {
            assert_eq!(SyncMessage::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn refuses_truncated_trailing_and_unknown() {
        let m = SyncMessage::Blocks(vec![vec![1, 2, 3]]).encode();
        for cut in 0..m.len() {
            assert_eq!(SyncMessage::decode(&m[..cut]), None, "cut at {cut}");
        }
        let mut long = m.clone();
        long.push(0);
        assert_eq!(SyncMessage::decode(&long), None);
        assert_eq!(SyncMessage::decode(&[99]), None);
        // A count far beyond the bytes present must not allocate or panic.
        assert_eq!(SyncMessage::decode(&[BLOCKS, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
