//! dchat identities and the files that hold them.
//!
//! Linked by both the daemon and `dchatctl` (whose `keygen` works offline), so
//! it depends only on the crypto crates, serde and std: no libp2p, SQLite,
//! tokio or AWS.
//!
//! - [`Identity`]: an ed25519 identity key plus an X25519 messaging key.
//! - [`encrypt`] / [`decrypt`]: the password-protected `dchat-identity/1`
//!   file used for export, import and `keygen`.
//! - [`to_keystore_json`] / [`from_keystore_json`]: the daemon's plaintext
//!   per-account record, kept 0600 in its state directory.
//! - [`write_private_file`] / [`read_password_file`]: the file handling both
//!   sides share.

mod encrypted;
mod error;
mod fsutil;
mod identity;
mod keystore;

pub use encrypted::{decrypt, encrypt, IdentityFile, KdfParams};
pub use error::KeyError;
pub use fsutil::{read_password_file, write_private_file};
pub use identity::{is_valid_id, Identity, ID_HEX_LEN};
pub use keystore::{from_keystore_json, to_keystore_json};
/// Re-exported because the API hands out `Zeroizing` values; users need not
/// depend on (and keep in step with) `zeroize` themselves.
pub use zeroize;
