//! The plaintext keystore record (`dchat-keystore/1`) the daemon keeps for
//! each local account in its state directory.
//!
//! It is unencrypted on purpose: the daemon must sign unattended after a
//! restart. Protection is the file mode (0600) inside a 0700 directory; the
//! daemon's keystore module enforces both.

use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::identity::is_valid_id;
use crate::{Identity, KeyError};

const FORMAT: &str = "dchat-keystore/1";

/// Serializes `identity` as a small JSON object:
/// `{"format":"dchat-keystore/1","id":..,"identity_secret":hex,"messaging_secret":hex,"burner":..}`.
///
/// The result contains the secrets; callers write it straight to a 0600 file.
/// Built by hand because every value is hex or a bool (nothing to escape), so
/// there is no serializer error to handle.
pub fn to_keystore_json(identity: &Identity, burner: bool) -> Vec<u8> {
    let identity_secret = Zeroizing::new(hex::encode(*identity.identity_secret()));
    let messaging_secret = Zeroizing::new(hex::encode(*identity.messaging_secret()));
    format!(
        "{{\n  \"format\": \"{FORMAT}\",\n  \"id\": \"{}\",\n  \"identity_secret\": \"{}\",\n  \
         \"messaging_secret\": \"{}\",\n  \"burner\": {burner}\n}}\n",
        identity.id(),
        identity_secret.as_str(),
        messaging_secret.as_str(),
    )
    .into_bytes()
}

/// The parsed record. Its secret strings are wiped on drop.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: String,
    id: String,
    identity_secret: String,
    messaging_secret: String,
    burner: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.identity_secret.zeroize();
        self.messaging_secret.zeroize();
    }
}

/// Parses a keystore record, checking that the stored id matches the key.
pub fn from_keystore_json(bytes: &[u8]) -> Result<(Identity, bool), KeyError> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if record.format != FORMAT {
        return Err(KeyError::UnsupportedFormat(format!("format {:?}", record.format)));
    }
    if !is_valid_id(&record.id) {
        return Err(KeyError::Malformed("id is not 64 lowercase hex characters".into()));
    }
    let identity_secret = decode_secret("identity_secret", &record.identity_secret)?;
    let messaging_secret = decode_secret("messaging_secret", &record.messaging_secret)?;
    let identity = Identity::from_secrets(&identity_secret, &messaging_secret);
    if identity.id() != record.id {
        return Err(KeyError::Malformed("the key does not match the record's id".into()));
    }
    Ok((identity, record.burner))
}

fn decode_secret(what: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, &mut out[..]).map_err(|e| KeyError::Malformed(format!("{what}: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn keystore_json_round_trip() {
        for burner in [false, true] {
            let identity = Identity::generate().unwrap();
            let bytes = to_keystore_json(&identity, burner);
            let (back, back_burner) = from_keystore_json(&bytes).unwrap();
            assert_eq!(back.id(), identity.id());
            assert_eq!(*back.identity_secret(), *identity.identity_secret());
            assert_eq!(*back.messaging_secret(), *identity.messaging_secret());
            assert_eq!(back_burner, burner);
        }
    }

    #[test]
    fn keystore_json_layout() {
        let identity = Identity::from_secrets(&[1; 32], &[2; 32]);
        let doc: Value = serde_json::from_slice(&to_keystore_json(&identity, true)).unwrap();
        assert_eq!(
            doc,
            json!({
                "format": "dchat-keystore/1",
                "id": identity.id(),
                "identity_secret": hex::encode([1u8; 32]),
                "messaging_secret": hex::encode([2u8; 32]),
                "burner": true,
            })
        );
    }

    #[test]
    fn keystore_json_rejects_bad_records() {
        let identity = Identity::generate().unwrap();
        let good: Value = serde_json::from_slice(&to_keystore_json(&identity, false)).unwrap();
        let with = |field: &str, value: Value| {
            let mut doc = good.clone();
            doc[field] = value;
            serde_json::to_vec(&doc).unwrap()
        };
        let other = Identity::generate().unwrap().id();
        let malformed = [
            b"not json".to_vec(),
            b"{}".to_vec(),
            with("id", json!(other)),
            with("id", json!("ABC")),
            with("identity_secret", json!("00")),
            with("messaging_secret", json!("zz".repeat(32))),
            with("extra", json!(1)),
        ];
        for bytes in malformed {
            let got = from_keystore_json(&bytes);
            assert!(matches!(got, Err(KeyError::Malformed(_))), "{got:?}");
        }
        let got = from_keystore_json(&with("format", json!("dchat-keystore/2")));
        assert!(matches!(got, Err(KeyError::UnsupportedFormat(_))), "{got:?}");
    }
}
