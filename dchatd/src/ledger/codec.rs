//! The primitives of the canonical binary encoding shared by transactions,
//! blocks and the state root.
//!
//! Integers are big-endian and fixed width; byte strings and UTF-8 strings
//! carry a big-endian `u32` length prefix; booleans are one byte, 0 or 1;
//! keys, hashes and signatures are written raw at their fixed width. There is
//! exactly one encoding of every value, so the bytes can be signed and
//! hashed. The reader never trusts a length: it checks it against the caller's
//! cap and against the bytes that are actually left before it copies anything.

use sha2::{Digest, Sha256};

use super::error::DecodeError;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where a [`Writer`] puts its bytes: a buffer, or straight into a hasher
/// (the state root is hashed without building the whole encoding in memory).
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Appends canonical fields to a sink. Writing cannot fail.
#[derive(Debug, Default)]
pub struct Writer<S = Vec<u8>> {
    sink: S,
}

impl Writer<Vec<u8>> {
    pub fn new() -> Writer<Vec<u8>> {
        Writer::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.sink
    }
}

impl Writer<Sha256> {
    pub fn hasher() -> Writer<Sha256> {
        Writer { sink: Sha256::new() }
    }

    pub fn finish_hash(self) -> [u8; 32] {
        self.sink.finalize().into()
    }
}

impl<S: Sink> Writer<S> {
    /// Raw bytes with no length prefix: magic tags and fixed-width values.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.sink.put(bytes);
    }

    pub fn u8(&mut self, v: u8) {
        self.sink.put(&[v]);
    }

    pub fn bool(&mut self, v: bool) {
        self.sink.put(&[u8::from(v)]);
    }

    pub fn u32(&mut self, v: u32) {
        self.sink.put(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.sink.put(&v.to_be_bytes());
    }

    /// A length-prefixed byte string. Lengths past `u32::MAX` cannot occur in
    /// practice (every caller caps sizes far lower first); if one did, the
    /// prefix saturates and the reader rejects the result as oversize rather
    /// than silently mis-framing it.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.sink.put(bytes);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads canonical fields from a byte slice, front to back.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Succeeds only when every byte was consumed: a canonical value has no
    /// trailing data, so two different byte strings never decode to the same
    /// value (which would give one transaction two ids).
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Checks a fixed tag such as `b"dchat-tx/1"`.
    pub fn magic(&mut self, expected: &'static [u8]) -> Result<(), DecodeError> {
        if self.take(expected.len())? == expected {
            Ok(())
        } else {
            Err(DecodeError::BadMagic)
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::BadBool(other)),
        }
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(len)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.bytes(field, max)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }
}

/// serde helpers that show fixed-width byte arrays as lowercase hex, the way
/// keys and hashes appear everywhere else in dchat's JSON.
pub mod hex_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|e| D::Error::custom(format!("expected {} hex characters: {e}", 2 * N)))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree() {
        let mut w = Writer::new();
        w.raw(b"tag");
        w.u8(7);
        w.bool(true);
        w.u32(0x0102_0304);
        w.u64(u64::MAX - 1);
        w.str("héllo");
        let bytes = w.into_bytes();
        assert_eq!(&bytes[4..5], &[1]);
        assert_eq!(&bytes[5..9], &[1, 2, 3, 4], "big-endian");

        let mut r = Reader::new(&bytes);
        r.magic(b"tag").unwrap();
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.u32().unwrap(), 0x0102_0304);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.string("s", 16).unwrap(), "héllo");
        r.finish().unwrap();
    }

    #[test]
    fn reader_rejects_bad_input_without_panicking() {
        assert_eq!(Reader::new(&[1, 2]).u32(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[2]).bool(), Err(DecodeError::BadBool(2)));
        assert_eq!(Reader::new(b"tax").magic(b"tag"), Err(DecodeError::BadMagic));
        assert_eq!(Reader::new(&[1]).finish(), Err(DecodeError::TrailingBytes { extra: 1 }));
        // A huge length prefix with nothing behind it is refused by the cap
        // before any allocation, and by the remaining length under the cap.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Reader::new(&huge).bytes("f", 10), Err(DecodeError::TooLong { len, .. }) if len > 10));
        assert_eq!(
            Reader::new(&[0, 0, 0, 5, 1]).bytes("f", 10),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0, 0, 0, 1, 0xff]).string("f", 10),
            Err(DecodeError::InvalidUtf8 { field: "f" })
        );
    }
}
