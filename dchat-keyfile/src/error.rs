//! The one error type of this crate.
//!
//! Callers (the daemon's keystore, `dchatctl keygen`, account import/export)
//! map it once to their own error or exit code, so the variants say what the
//! user can do about it rather than which library failed.

/// Everything that can go wrong creating, reading or writing identities.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The AEAD tag did not verify. With an authenticated header this also
    /// covers a file whose clear fields were edited: the two cannot be told
    /// apart without the password.
    #[error("wrong password, or the identity file has been modified")]
    WrongPassword,
    /// The input is not a well-formed identity or keystore file.
    #[error("malformed key file: {0}")]
    Malformed(String),
    /// A well-formed file in a format, KDF or cipher this version does not know.
    #[error("unsupported key file: {0}")]
    UnsupportedFormat(String),
    /// KDF parameters given to `encrypt` that `decrypt` would refuse.
    #[error("invalid key derivation parameters: {0}")]
    InvalidKdfParams(String),
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
    /// Reading or writing a file; the message names the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An empty password (or an empty first line in a password file).
    #[error("the password is empty")]
    EmptyPassword,
}

impl From<getrandom::Error> for KeyError {
    fn from(e: getrandom::Error) -> Self {
        KeyError::Random(e.to_string())
    }
}
