//! Chain history: finalized blocks with their transactions, the blocks
//! consensus holds before finality, and recorded misbehaviour evidence.
//! Blocks are stored in the ledger's canonical encoding; decoding them is
//! the caller's job, so this layer knows nothing of ledger rules.

use rusqlite::{params, OptionalExtension};

use super::{Database, StorageError};

/// Where a transaction was finalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    pub kind: String,
    pub view: u64,
    pub signer: Vec<u8>,
    pub recorded_at: String,
}

/// A finalized block as stored: its columns and its canonical encoding.
pub struct FinalizedBlock<'a> {
    pub height: u64,
    pub hash: &'a [u8; 32],
    pub parent: &'a [u8; 32],
    pub timestamp_ms: u64,
    pub encoded: &'a [u8],
    /// The finalization certificate, when this block has its own.
    pub proof: Option<&'a [u8]>,
    pub txs: &'a [TxEntry<'a>],
}

/// An encoded block and its finalization certificate, if it has one.
pub type StoredBlock = (Vec<u8>, Option<Vec<u8>>);

/// One transaction of a block being stored: id, signer and nonce.
pub struct TxEntry<'a> {
    pub id: &'a [u8; 32],
    pub signer: &'a [u8; 32],
    pub nonce: u64,
}

fn to_i64(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Sqlite(rusqlite::Error::IntegralValueOutOfRange(0, i64::MAX)))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Database {
    /// Stores a finalized block and its transactions in one transaction, and
    /// drops it from the unfinalized set. Storing the same block again is a
    /// no-op (finality can be reported more than once).
    pub fn store_finalized_block(&self, block: &FinalizedBlock<'_>) -> Result<(), StorageError> {
        let FinalizedBlock {
            height,
            hash,
            parent,
            timestamp_ms,
            encoded,
            proof,
            txs,
        } = *block;
        let tx = self.conn().unchecked_transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO blocks (height, hash, parent, timestamp_ms, encoded, proof, finalized_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                to_i64(height)?,
                &hash[..],
                &parent[..],
                to_i64(timestamp_ms)?,
                encoded,
                proof,
                now()
            ],
        )?;
        if inserted == 1 {
            let mut stmt =
                tx.prepare("INSERT INTO txs (id, height, idx, signer, nonce) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (idx, t) in txs.iter().enumerate() {
                stmt.execute(params![
                    &t.id[..],
                    to_i64(height)?,
                    to_i64(idx as u64)?,
                    &t.signer[..],
                    to_i64(t.nonce)?
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM unfinalized_blocks WHERE hash = ?1 OR height <= ?2",
            params![&hash[..], to_i64(height)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Height of the newest finalized block, if any block was stored.
    pub fn chain_tip_height(&self) -> Result<Option<u64>, StorageError> {
        let h: Option<i64> = self
            .conn()
            .query_row("SELECT MAX(height) FROM blocks", [], |r| r.get(0))?;
        Ok(h.and_then(|h| u64::try_from(h).ok()))
    }

    /// Encoded finalized blocks from `from` upwards, at most `limit`.
    pub fn finalized_blocks_from(&self, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut stmt = self
            .conn()
            .prepare("SELECT encoded FROM blocks WHERE height >= ?1 ORDER BY height LIMIT ?2")?;
        let rows = stmt.query_map(params![to_i64(from)?, limit], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn finalized_block(&self, height: u64) -> Result<Option<StoredBlock>, StorageError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT encoded, proof FROM blocks WHERE height = ?1",
                params![to_i64(height)?],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// A block by hash, finalized or not.
    pub fn block_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let finalized: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT encoded FROM blocks WHERE hash = ?1", params![&hash[..]], |r| {
                r.get(0)
            })
            .optional()?;
        if finalized.is_some() {
            return Ok(finalized);
        }
        Ok(self
            .conn()
            .query_row(
                "SELECT encoded FROM unfinalized_blocks WHERE hash = ?1",
                params![&hash[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps a block consensus is voting on. Committed (and so durable)
    /// before this returns, as a vote for it must not outlive it.
    pub fn store_unfinalized_block(&self, hash: &[u8; 32], height: u64, encoded: &[u8]) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO unfinalized_blocks (hash, height, encoded, stored_at) VALUES (?1, ?2, ?3, ?4)",
            params![&hash[..], to_i64(height)?, encoded, now()],
        )?;
        Ok(())
    }

    pub fn tx_location(&self, id: &[u8; 32]) -> Result<Option<TxLocation>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT height, idx FROM txs WHERE id = ?1", params![&id[..]], |r| {
                let h: i64 = r.get(0)?;
                let i: i64 = r.get(1)?;
                Ok(TxLocation {
                    height: u64::try_from(h).unwrap_or(0),
                    index: u32::try_from(i).unwrap_or(0),
                })
            })
            .optional()?)
    }

    pub fn record_evidence(&self, kind: &str, view: u64, signer: &[u8], bytes: &[u8]) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO evidence (kind, view, signer, bytes, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kind, to_i64(view)?, signer, bytes, now()],
        )?;
        Ok(())
    }

    pub fn list_evidence(&self) -> Result<Vec<EvidenceRow>, StorageError> {
        let mut stmt = self
            .conn()
            .prepare("SELECT kind, view, signer, recorded_at FROM evidence ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let view: i64 = r.get(1)?;
            Ok(EvidenceRow {
                kind: r.get(0)?,
                view: u64::try_from(view).unwrap_or(0),
                signer: r.get(2)?,
                recorded_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn finalized_blocks_and_txs_round_trip_idempotently() {
        let db = Database::in_memory().unwrap();
        assert_eq!(db.chain_tip_height().unwrap(), None);
        db.store_unfinalized_block(&h(1), 1, b"b1").unwrap();
        assert_eq!(db.block_by_hash(&h(1)).unwrap().as_deref(), Some(&b"b1"[..]));
        let txs = [TxEntry {
            id: &h(9),
            signer: &h(8),
            nonce: 0,
        }];
        for _ in 0..2 {
            let block = FinalizedBlock {
                height: 1,
                hash: &h(1),
                parent: &h(0),
                timestamp_ms: 5,
                encoded: b"b1",
                proof: Some(b"proof"),
                txs: &txs,
            };
            db.store_finalized_block(&block).unwrap();
        }
        assert_eq!(db.chain_tip_height().unwrap(), Some(1));
        assert_eq!(db.tx_location(&h(9)).unwrap(), Some(TxLocation { height: 1, index: 0 }));
        assert_eq!(db.finalized_blocks_from(0, 10).unwrap(), vec![b"b1".to_vec()]);
        assert_eq!(
            db.finalized_block(1).unwrap().unwrap().1.as_deref(),
            Some(&b"proof"[..])
        );
        let left: i64 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM unfinalized_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn evidence_is_kept() {
        let db = Database::in_memory().unwrap();
        db.record_evidence("ConflictingNotarize", 3, &h(2), b"x").unwrap();
        let ev = db.list_evidence().unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].view, 3);
    }
}
