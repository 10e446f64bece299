//! The password-encrypted identity file (`dchat-identity/1`) that
//! `dchatctl keygen` writes and `account import`/`export` read and write.
//!
//! A pretty JSON document. The account id, name and burner flag stay in clear
//! so users can tell files apart without a password; every clear field is
//! bound into the AEAD's associated data, so editing any of them makes
//! decryption fail. The plaintext is the identity secret followed by the
//! messaging secret (64 bytes).

use argon2::{Algorithm, Argon2, Params, Version};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use chacha20poly1305::{AeadInOut, Key, KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::is_valid_id;
use crate::{Identity, KeyError};

const FORMAT: &str = "dchat-identity/1";
const KDF_ALG: &str = "argon2id";
const CIPHER: &str = "xchacha20poly1305";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const PLAINTEXT_LEN: usize = 64;
const TAG_LEN: usize = 16;
/// Ceilings applied before running the KDF, so a hostile file cannot make us
/// allocate more than 1 GiB or spin for minutes.
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 8;

/// What an identity file holds once decrypted.
#[derive(Debug, Clone)]
pub struct IdentityFile {
    pub name: Option<String>,
    pub burner: bool,
    pub identity: Identity,
}

/// Argon2id cost parameters, stored in the file so they can be raised later
/// without breaking old files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// argon2id with 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// The smallest argon2 accepts; only for tests, where the default would be slow.
    pub const TEST: KdfParams = KdfParams {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    /// Our ceilings plus argon2's own floors, checked before any hashing.
    fn check(&self) -> Result<Params, String> {
        if self.m_cost_kib > MAX_M_COST_KIB {
            return Err(format!("m_cost_kib {} exceeds {MAX_M_COST_KIB}", self.m_cost_kib));
        }
        if self.t_cost > MAX_T_COST {
            return Err(format!("t_cost {} exceeds {MAX_T_COST}", self.t_cost));
        }
        if self.p_cost > MAX_P_COST {
            return Err(format!("p_cost {} exceeds {MAX_P_COST}", self.p_cost));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN)).map_err(|e| {
            format!(
                "{e} (m_cost_kib {}, t_cost {}, p_cost {})",
                self.m_cost_kib, self.t_cost, self.p_cost
            )
        })
    }
}

/// The on-disk document. Unknown fields are refused: they would not be
/// authenticated, and a new layout gets a new `format` tag instead.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    id: String,
    name: Option<String>,
    burner: bool,
    kdf: KdfDocument,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfDocument {
    alg: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

/// Read first, alone, so a future format is reported as unsupported rather
/// than as malformed.
#[derive(Deserialize)]
struct FormatProbe {
    format: String,
}

/// Encrypts `file` under `password`. Refuses an empty password and KDF
/// parameters that [`decrypt`] would refuse.
pub fn encrypt(file: &IdentityFile, password: &[u8], params: &KdfParams) -> Result<Vec<u8>, KeyError> {
    seal(&file.identity.id(), file, password, params)
}

/// `encrypt` with the clear id given separately, so tests can build a file
/// whose authenticated id does not match its key.
fn seal(id: &str, file: &IdentityFile, password: &[u8], params: &KdfParams) -> Result<Vec<u8>, KeyError> {
    if password.is_empty() {
        return Err(KeyError::EmptyPassword);
    }
    let argon_params = params.check().map_err(KeyError::InvalidKdfParams)?;
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt)?;
    getrandom::fill(&mut nonce)?;

    let aad = header_aad(id, file.name.as_deref(), file.burner, params, &salt);
    let cipher = cipher_for(password, &salt, argon_params).map_err(KeyError::InvalidKdfParams)?;
    // The buffer holds the secrets until it is encrypted in place; wipe it in
    // case encryption fails half way.
    let mut buf = Zeroizing::new(Vec::with_capacity(PLAINTEXT_LEN + TAG_LEN));
    buf.extend_from_slice(&file.identity.identity_secret()[..]);
    buf.extend_from_slice(&file.identity.messaging_secret()[..]);
    cipher
        .encrypt_in_place(&XNonce::from(nonce), &aad, &mut *buf)
        .map_err(|_| KeyError::Malformed("encryption failed".into()))?;

    let doc = Document {
        format: FORMAT.into(),
        id: id.into(),
        name: file.name.clone(),
        burner: file.burner,
        kdf: KdfDocument {
            alg: KDF_ALG.into(),
            m_cost_kib: params.m_cost_kib,
            t_cost: params.t_cost,
            p_cost: params.p_cost,
            salt: B64.encode(salt),
        },
        cipher: CIPHER.into(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(&*buf),
    };
    let mut out = serde_json::to_vec_pretty(&doc).map_err(|e| KeyError::Malformed(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Decrypts an identity file. `WrongPassword` when the AEAD tag fails (wrong
/// password or edited header), `Malformed` for anything structurally wrong,
/// including KDF costs above our ceilings, which are checked before hashing.
pub fn decrypt(bytes: &[u8], password: &[u8]) -> Result<IdentityFile, KeyError> {
    let probe: FormatProbe = serde_json::from_slice(bytes).map_err(malformed)?;
    if probe.format != FORMAT {
        return Err(KeyError::UnsupportedFormat(format!("format {:?}", probe.format)));
    }
    let doc: Document = serde_json::from_slice(bytes).map_err(malformed)?;
    if doc.kdf.alg != KDF_ALG {
        return Err(KeyError::UnsupportedFormat(format!("key derivation {:?}", doc.kdf.alg)));
    }
    if doc.cipher != CIPHER {
        return Err(KeyError::UnsupportedFormat(format!("cipher {:?}", doc.cipher)));
    }
    if !is_valid_id(&doc.id) {
        return Err(KeyError::Malformed("id is not 64 lowercase hex characters".into()));
    }
    let params = KdfParams {
        m_cost_kib: doc.kdf.m_cost_kib,
        t_cost: doc.kdf.t_cost,
        p_cost: doc.kdf.p_cost,
    };
    let argon_params = params.check().map_err(KeyError::Malformed)?;
    let salt = decode_field("salt", &doc.kdf.salt, 8..=64)?;
    let nonce = decode_field("nonce", &doc.nonce, NONCE_LEN..=NONCE_LEN)?;
    let ciphertext = decode_field(
        "ciphertext",
        &doc.ciphertext,
        PLAINTEXT_LEN + TAG_LEN..=PLAINTEXT_LEN + TAG_LEN,
    )?;
    if password.is_empty() {
        return Err(KeyError::EmptyPassword);
    }

    let aad = header_aad(&doc.id, doc.name.as_deref(), doc.burner, &params, &salt);
    let cipher = cipher_for(password, &salt, argon_params).map_err(KeyError::Malformed)?;
    let nonce = XNonce::try_from(&nonce[..]).map_err(|_| KeyError::Malformed("nonce length".into()))?;
    let mut buf = Zeroizing::new(ciphertext);
    cipher
        .decrypt_in_place(&nonce, &aad, &mut *buf)
        .map_err(|_| KeyError::WrongPassword)?;

    let mut identity_secret = Zeroizing::new([0u8; 32]);
    let mut messaging_secret = Zeroizing::new([0u8; 32]);
    identity_secret.copy_from_slice(&buf[..32]);
    messaging_secret.copy_from_slice(&buf[32..PLAINTEXT_LEN]);
    let identity = Identity::from_secrets(&identity_secret, &messaging_secret);
    // The header is authenticated, but only a matching key proves the file
    // was written by an encoder that derived the id honestly.
    if identity.id() != doc.id {
        return Err(KeyError::Malformed("the key does not match the file's id".into()));
    }
    Ok(IdentityFile {
        name: doc.name,
        burner: doc.burner,
        identity,
    })
}

fn malformed(e: serde_json::Error) -> KeyError {
    KeyError::Malformed(e.to_string())
}

fn decode_field(what: &str, b64: &str, len: std::ops::RangeInclusive<usize>) -> Result<Vec<u8>, KeyError> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| KeyError::Malformed(format!("{what}: {e}")))?;
    if !len.contains(&bytes.len()) {
        return Err(KeyError::Malformed(format!(
            "{what}: unexpected length {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Argon2id(password, salt) as the XChaCha20-Poly1305 key. The cipher wipes
/// its copy of the key on drop; ours is wiped here.
fn cipher_for(password: &[u8], salt: &[u8], params: Params) -> Result<XChaCha20Poly1305, String> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut key[..])
        .map_err(|e| e.to_string())?;
    let key: &Key = (&key[..]).try_into().map_err(|_| "key length".to_string())?;
    Ok(XChaCha20Poly1305::new(key))
}

/// Canonical encoding of every clear field: a domain tag, then each field
/// length-prefixed (or fixed-width), so no two headers encode alike.
fn header_aad(id: &str, name: Option<&str>, burner: bool, params: &KdfParams, salt: &[u8]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, field: &[u8]) {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    let mut out = Vec::with_capacity(256);
    put(&mut out, b"dchat identity file header");
    put(&mut out, FORMAT.as_bytes());
    put(&mut out, id.as_bytes());
    match name {
        None => out.push(0),
        Some(name) => {
            out.push(1);
            put(&mut out, name.as_bytes());
        }
    }
    out.push(u8::from(burner));
    put(&mut out, KDF_ALG.as_bytes());
    out.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    out.extend_from_slice(&params.t_cost.to_be_bytes());
    out.extend_from_slice(&params.p_cost.to_be_bytes());
    put(&mut out, salt);
    put(&mut out, CIPHER.as_bytes());
    out
}

#[cfg(test)]
#[path = "encrypted_tests.rs"]
mod tests;
