//! dchat's request-response protocol: what one node asks another and what
//! it answers, in the ledger's strict binary codec. Each payload (blocks,
//! transactions, envelopes, posts) keeps its own format and is checked by
//! its own decoder; this layer only frames them.

use crate::ledger::codec::{Reader, Writer};
use crate::ledger::DecodeError;
use crate::messaging::{MAX_ENVELOPE_BYTES, MAX_NAME_BYTES, MAX_POST_BYTES};

const REQUEST_MAGIC: &[u8] = b"dchat-req/1";
const RESPONSE_MAGIC: &[u8] = b"dchat-resp/1";
const TX_GOSSIP_MAGIC: &[u8] = b"dchat-txs/1";
/// Largest block plus certificate we pass on (the consensus cap).
const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;
const MAX_TX_BYTES: usize = 64 * 1024;
/// Most items in one answer.
pub const MAX_ITEMS: u32 = 256;
/// Most blocks asked for at once.
pub const MAX_BLOCKS: u16 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Finalized blocks with their certificates, from `from` on.
    Blocks { from: u64, max: u16 },
    /// A signed transaction for a validator's pool.
    SubmitTx(Vec<u8>),
    /// Up to [`MAX_ITEMS`] signed transactions for a validator's pool.
    SubmitTxs(Vec<Vec<u8>>),
    /// A sealed envelope for an account this node hosts.
    Deliver(Vec<u8>),
    /// Up to [`MAX_ITEMS`] sealed envelopes for accounts this node hosts,
    /// in the order they were sent; answered by [`Response::Each`].
    DeliverBatch(Vec<Vec<u8>>),
    /// A sealed envelope for a relay to keep until its recipient fetches it.
    MailboxStore(Vec<u8>),
    /// A signed fetch request (`messaging::FetchRequest`).
    MailboxFetch(Vec<u8>),
    /// A signed receipt (`messaging::Receipt`): delete what was fetched.
    MailboxReceipt(Vec<u8>),
    /// Posts of a channel sent at or after `since_ms`.
    ChannelHistory { channel: String, since_ms: u64, limit: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok,
    Refused(String),
    /// (block, finalization certificate) pairs, in height order.
    Blocks(Vec<(Vec<u8>, Vec<u8>)>),
    Envelopes(Vec<Vec<u8>>),
    Posts(Vec<Vec<u8>>),
    /// One outcome per item of a batch, in order: None when it was taken,
    /// else why it was refused.
    Each(Vec<Option<String>>),
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(REQUEST_MAGIC);
        match self {
            Request::Blocks { from, max } => {
                w.u8(1);
                w.u64(*from);
                w.u32(u32::from(*max));
            }
            Request::SubmitTx(b) => {
                w.u8(2);
                w.bytes(b);
            }
            Request::Deliver(b) => {
                w.u8(3);
                w.bytes(b);
            }
            Request::MailboxStore(b) => {
                w.u8(4);
                w.bytes(b);
            }
            Request::MailboxFetch(b) => {
                w.u8(5);
                w.bytes(b);
            }
            Request::MailboxReceipt(b) => {
                w.u8(6);
                w.bytes(b);
            }
            Request::ChannelHistory {
                channel,
                since_ms,
                limit,
            } => {
                w.u8(7);
                w.str(channel);
                w.u64(*since_ms);
                w.u32(*limit);
            }
            Request::SubmitTxs(txs) => {
                w.u8(8);
                write_list(&mut w, txs);
            }
            Request::DeliverBatch(envelopes) => {
                w.u8(9);
                write_list(&mut w, envelopes);
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(REQUEST_MAGIC)?;
        let req = match r.u8()? {
            1 => {
                let from = r.u64()?;
                let max = u16::try_from(r.u32()?.min(u32::from(MAX_BLOCKS))).unwrap_or(MAX_BLOCKS);
                Request::Blocks { from, max }
            }
            2 => Request::SubmitTx(r.bytes("tx", MAX_TX_BYTES)?.to_vec()),
            3 => Request::Deliver(r.bytes("envelope", MAX_ENVELOPE_BYTES)?.to_vec()),
            4 => Request::MailboxStore(r.bytes("envelope", MAX_ENVELOPE_BYTES)?.to_vec()),
            5 => Request::MailboxFetch(r.bytes("fetch", 1024)?.to_vec()),
            6 => Request::MailboxReceipt(r.bytes("receipt", 64 * 1024)?.to_vec()),
            7 => Request::ChannelHistory {
                channel: r.string("channel", MAX_NAME_BYTES)?,
                since_ms: r.u64()?,
                limit: r.u32()?.min(MAX_ITEMS),
            },
            8 => Request::SubmitTxs(read_list(&mut r, "txs", "tx", MAX_TX_BYTES)?),
            9 => Request::DeliverBatch(read_list(&mut r, "envelopes", "envelope", MAX_ENVELOPE_BYTES)?),
            tag => return Err(DecodeError::UnknownTag { what: "request", tag }),
        };
        r.finish()?;
        Ok(req)
    }
}

/// Most ciphertext bytes a relay puts in one mailbox page, so that the
/// answer, with each envelope's header and length, stays within a
/// response's limit: a page holds up to [`MAX_ITEMS`] envelopes, and an
/// envelope may carry many messages (up to 80 KiB).
pub const MAILBOX_PAGE_BYTES: usize =
    crate::network::MAX_RESPONSE - 64 * 1024 - MAX_ITEMS as usize * PAGE_ENTRY_OVERHEAD;
/// What an envelope adds to a page besides its ciphertext: its header and
/// two length prefixes.
const PAGE_ENTRY_OVERHEAD: usize = 64 + 4 + 4;

/// Whether a mailbox page of `count` envelopes, `bytes` in all (their
/// ciphertexts, or more), may have left envelopes behind: it is full by
/// count, or the largest envelope might not have fitted.
pub fn page_may_be_full(count: usize, bytes: usize) -> bool {
    count >= MAX_ITEMS as usize || bytes.saturating_add(MAX_ENVELOPE_BYTES) > MAILBOX_PAGE_BYTES
}

/// Splits `items` into lists of at most [`MAX_ITEMS`] and `budget` bytes
/// (counting `len` of each plus its 4-byte length prefix), in order. An
/// item bigger than the budget goes alone.
pub fn batches<T>(items: Vec<T>, len: impl Fn(&T) -> usize, budget: usize) -> Vec<Vec<T>> {
    packs(items, len, budget, MAX_ITEMS as usize)
}

/// [`batches`] with lists of at most `max_items`.
pub fn packs<T>(items: Vec<T>, len: impl Fn(&T) -> usize, budget: usize, max_items: usize) -> Vec<Vec<T>> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = len(&item) + 4;
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= max_items || bytes + size > budget);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = batches.last_mut() {
            last.push(item);
        }
    }
    batches
}

/// Longest reason a refusal carries (decoders refuse longer ones).
const MAX_REASON_BYTES: usize = 1024;

/// `why`, cut to [`MAX_REASON_BYTES`] at a character boundary, so that a
/// long error never makes the whole answer undecodable.
fn reason(why: &str) -> &str {
    if why.len() <= MAX_REASON_BYTES {
        return why;
    }
    let mut end = MAX_REASON_BYTES;
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    &why[..end]
}

/// A list of byte strings: its length, then each one length-prefixed.
fn write_list(w: &mut Writer, items: &[Vec<u8>]) {
    w.u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
    for item in items {
        w.bytes(item);
    }
}

/// A list [`write_list`] wrote: at most [`MAX_ITEMS`] items (`list` names
/// the list in errors), each at most `cap` bytes (`item` names it).
fn read_list(
    r: &mut Reader<'_>,
    list: &'static str,
    item: &'static str,
    cap: usize,
) -> Result<Vec<Vec<u8>>, DecodeError> {
    let n = item_count(r, list)?;
    let mut items = Vec::with_capacity(n as usize);
    for _ in 0..n {
        items.push(r.bytes(item, cap)?.to_vec());
    }
    Ok(items)
}

/// A list's length, refused above [`MAX_ITEMS`].
fn item_count(r: &mut Reader<'_>, field: &'static str) -> Result<u32, DecodeError> {
    let n = r.u32()?;
    if n > MAX_ITEMS {
        return Err(DecodeError::TooLong {
            field,
            len: n as usize,
            max: MAX_ITEMS as usize,
        });
    }
    Ok(n)
}

/// A batch of signed transactions as gossiped on the transaction topic:
/// when it was sent (so that sending the same transactions again is a new
/// gossip message, not a duplicate), then up to [`MAX_ITEMS`] transactions,
/// each in the ledger's own encoding.
pub fn encode_tx_gossip(sent_ms: u64, txs: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(TX_GOSSIP_MAGIC);
    w.u64(sent_ms);
    write_list(&mut w, txs);
    w.into_bytes()
}

pub fn decode_tx_gossip(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut r = Reader::new(bytes);
    r.magic(TX_GOSSIP_MAGIC)?;
    let _sent_ms = r.u64()?;
    let txs = read_list(&mut r, "txs", "tx", MAX_TX_BYTES)?;
    r.finish()?;
    Ok(txs)
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(RESPONSE_MAGIC);
        match self {
            Response::Ok => w.u8(1),
            Response::Refused(why) => {
                w.u8(2);
                w.str(reason(why));
            }
            Response::Blocks(blocks) => {
                w.u8(3);
                w.u32(u32::try_from(blocks.len()).unwrap_or(u32::MAX));
                for (block, proof) in blocks {
                    w.bytes(block);
                    w.bytes(proof);
                }
            }
            Response::Envelopes(items) => {
                w.u8(4);
                write_list(&mut w, items);
            }
            Response::Posts(items) => {
                w.u8(5);
                write_list(&mut w, items);
            }
            Response::Each(outcomes) => {
                w.u8(6);
                w.u32(u32::try_from(outcomes.len()).unwrap_or(u32::MAX));
                for outcome in outcomes {
                    match outcome {
                        None => w.u8(0),
                        Some(why) => {
                            w.u8(1);
                            w.str(reason(why));
                        }
                    }
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(RESPONSE_MAGIC)?;
        let count = |r: &mut Reader<'_>| item_count(r, "items");
        let resp = match r.u8()? {
            1 => Response::Ok,
            2 => Response::Refused(r.string("reason", MAX_REASON_BYTES)?),
            3 => {
                let n = count(&mut r)?;
                let mut blocks = Vec::new();
                for _ in 0..n {
                    let block = r.bytes("block", MAX_BLOCK_BYTES)?.to_vec();
                    let proof = r.bytes("proof", 64 * 1024)?.to_vec();
                    blocks.push((block, proof));
                }
                Response::Blocks(blocks)
            }
            4 => Response::Envelopes(read_list(&mut r, "items", "envelope", MAX_ENVELOPE_BYTES)?),
            5 => Response::Posts(read_list(&mut r, "items", "post", MAX_POST_BYTES)?),
            6 => {
                let n = count(&mut r)?;
                let mut outcomes = Vec::new();
                for _ in 0..n {
                    outcomes.push(match r.u8()? {
                        0 => None,
                        1 => Some(r.string("reason", MAX_REASON_BYTES)?),
                        tag => return Err(DecodeError::UnknownTag { what: "outcome", tag }),
                    });
                }
                Response::Each(outcomes)
            }
            tag => return Err(DecodeError::UnknownTag { what: "response", tag }),
        };
        r.finish()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_mailbox_page_at_its_budget_fits_a_response() {
        let envelope = |len: usize| {
            crate::messaging::Envelope {
                mailbox: [1; 32],
                expires_at_ms: 5,
                ciphertext: vec![0; len],
            }
            .encode()
        };
        let max = crate::network::MAX_RESPONSE;
        // As many envelopes as a page holds, sharing the byte budget…
        let small = envelope(MAILBOX_PAGE_BYTES / MAX_ITEMS as usize);
        let page = Response::Envelopes(vec![small; MAX_ITEMS as usize]).encode();
        assert!(page.len() <= max, "{} > {max}", page.len());
        // …or the largest envelopes, as many as fit (a page stops before
        // the envelope that would cross the budget).
        let len = MAX_ENVELOPE_BYTES - 64;
        let fit = MAILBOX_PAGE_BYTES / len;
        let page = Response::Envelopes(vec![envelope(len); fit]).encode();
        assert!(page.len() <= max, "{} > {max}", page.len());
        // Such pages may have left more behind; a page well under both
        // limits has not.
        assert!(page_may_be_full(MAX_ITEMS as usize, 0));
        assert!(page_may_be_full(fit, fit * len));
        assert!(!page_may_be_full(40, 40 * 1400));
    }

    #[test]
    fn every_request_and_response_round_trips() {
        let requests = [
            Request::Blocks { from: 7, max: 3 },
            Request::SubmitTx(vec![1, 2]),
            Request::SubmitTxs(vec![vec![1, 2], vec![], vec![3; 300]]),
            Request::DeliverBatch(vec![vec![4; 50], vec![]]),
            Request::Deliver(vec![3]),
            Request::MailboxStore(vec![4; 100]),
            Request::MailboxFetch(vec![5]),
            Request::MailboxReceipt(vec![6]),
            Request::ChannelHistory {
                channel: "general".into(),
                since_ms: 9,
                limit: 10,
            },
        ];
        for r in requests {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let responses = [
            Response::Ok,
            Response::Refused("no".into()),
            Response::Blocks(vec![(vec![1], vec![2]), (vec![3], vec![])]),
            Response::Envelopes(vec![vec![1], vec![]]),
            Response::Posts(vec![vec![9; 10]]),
            Response::Each(vec![None, Some("no such account here".into()), None]),
        ];
        for r in responses {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
        let txs = vec![vec![1, 2], vec![], vec![3; 300]];
        assert_eq!(decode_tx_gossip(&encode_tx_gossip(5, &txs)).unwrap(), txs);
    }

    #[test]
    fn long_reasons_are_cut_so_the_answer_still_decodes() {
        let long = "é".repeat(700);
        for r in [Response::Refused(long.clone()), Response::Each(vec![None, Some(long)])] {
            let decoded = Response::decode(&r.encode()).unwrap();
            let why = match decoded {
                Response::Refused(why) => why,
                Response::Each(mut outcomes) => outcomes.pop().flatten().unwrap(),
                other => panic!("{other:?}"),
            };
            assert!(why.len() <= MAX_REASON_BYTES && why.starts_with("éé"), "{}", why.len());
        }
    }

    #[test]
    fn tx_gossip_refuses_other_payloads_trailing_bytes_and_too_many_items() {
        let mut bytes = encode_tx_gossip(5, &[vec![1]]);
        bytes.push(0);
        assert!(decode_tx_gossip(&bytes).is_err());
        assert!(decode_tx_gossip(&Request::SubmitTxs(vec![vec![1]]).encode()).is_err());
        let too_many = vec![Vec::new(); MAX_ITEMS as usize + 1];
        assert!(matches!(
            decode_tx_gossip(&encode_tx_gossip(5, &too_many)),
            Err(DecodeError::TooLong { field: "txs", .. })
        ));
    }

    #[test]
    fn trailing_bytes_unknown_tags_and_oversize_counts_are_errors() {
        let mut bytes = Request::Deliver(vec![1]).encode();
        bytes.push(0);
        assert!(Request::decode(&bytes).is_err());
        let mut bad = REQUEST_MAGIC.to_vec();
        bad.push(99);
        assert!(Request::decode(&bad).is_err());
        let mut many = RESPONSE_MAGIC.to_vec();
        many.push(4);
        many.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Response::decode(&many).is_err());
        let mut txs = REQUEST_MAGIC.to_vec();
        txs.push(8);
        txs.extend_from_slice(&(MAX_ITEMS + 1).to_be_bytes());
        assert!(matches!(
            Request::decode(&txs),
            Err(DecodeError::TooLong { field: "txs", .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
            let _ = decode_tx_gossip(&bytes);
            let mut gossip = TX_GOSSIP_MAGIC.to_vec();
            gossip.extend_from_slice(&bytes);
            let _ = decode_tx_gossip(&gossip);
            let mut prefixed = REQUEST_MAGIC.to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = Request::decode(&prefixed);
            let mut prefixed = RESPONSE_MAGIC.to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = Response::decode(&prefixed);
        }
    }
}
