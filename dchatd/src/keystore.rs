//! The daemon's store of local accounts' secret keys.
//!
//! One plaintext `dchat-keystore/1` record per account in
//! `<state_dir>/keys/<id>.key`: the daemon must sign unattended after a
//! restart, so the keys are protected by file modes (directory 0700, files
//! 0600) rather than a password. Password-encrypted export and import live in
//! `dchat_keyfile::{encrypt, decrypt}`.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dchat_keyfile::zeroize::Zeroizing;
use dchat_keyfile::{from_keystore_json, is_valid_id, to_keystore_json, Identity, KeyError};

const DIR_NAME: &str = "keys";
const DIR_MODE: u32 = 0o700;

/// Handle on `<state_dir>/keys/`. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot prepare keystore directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("keystore path {path} exists but is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("invalid account id {id:?}: expected 64 lowercase hex characters")]
    InvalidId { id: String },
    #[error("a key for this account already exists at {path}")]
    AlreadyExists { path: PathBuf },
    #[error("no key at {path}")]
    NotFound { path: PathBuf },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot remove key file {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("key file {path} is invalid: {source}")]
    Invalid { path: PathBuf, source: KeyError },
    #[error("key file {path} holds the key of account {found}, not the one its name says")]
    WrongAccount { path: PathBuf, found: String },
}

impl Keystore {
    /// Opens `<state_dir>/keys/`, creating it 0700 if missing. An existing
    /// directory with any other mode is reset to 0700: other users must not
    /// even learn which accounts live here.
    pub fn open(state_dir: &Path) -> Result<Keystore, KeystoreError> {
        let dir = state_dir.join(DIR_NAME);
        let dir_err = |source| KeystoreError::Dir {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(dir_err)?;
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => tracing::info!(path = %dir.display(), "created keystore directory"),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(dir_err(e)),
        }
        // symlink_metadata: a symlink planted as `keys` is refused rather than
        // followed, so its target's permissions are never touched.
        let meta = fs::symlink_metadata(&dir).map_err(dir_err)?;
        if !meta.is_dir() {
            return Err(KeystoreError::NotADirectory { path: dir });
        }
        // Also covers a fresh directory whose mode the umask narrowed.
        let mode = meta.permissions().mode() & 0o7777;
        if mode != DIR_MODE {
            tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "tightening keystore directory to 0700");
            fs::set_permissions(&dir, Permissions::from_mode(DIR_MODE)).map_err(dir_err)?;
        }
        Ok(Keystore { dir })
    }

    /// Stores `identity` as `<id>.key` (0600). Never replaces an existing key:
    /// losing a secret key loses the account.
    pub fn save(&self, identity: &Identity, burner: bool) -> Result<PathBuf, KeystoreError> {
        let path = self.path_for(&identity.id());
        let record = Zeroizing::new(to_keystore_json(identity, burner));
        match dchat_keyfile::write_private_file(&path, &record, false) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(KeystoreError::AlreadyExists { path }),
            Err(source) => Err(KeystoreError::Write { path, source }),
        }
    }

    /// Loads the key of account `id` and its burner flag. The id is checked
    /// before it is used in a path, so `../x` cannot escape the directory.
    pub fn load(&self, id: &str) -> Result<(Identity, bool), KeystoreError> {
        let path = self.checked_path(id)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeystoreError::NotFound { path }),
            Err(source) => return Err(KeystoreError::Read { path, source }),
        };
        let (identity, burner) = match from_keystore_json(&bytes) {
            Ok(found) => found,
            Err(source) => return Err(KeystoreError::Invalid { path, source }),
        };
        // A file copied or renamed by hand would otherwise let one account
        // sign as another.
        if identity.id() != id {
            return Err(KeystoreError::WrongAccount {
                path,
                found: identity.id(),
            });
        }
        Ok((identity, burner))
    }

    /// Deletes the key of account `id`. The bytes are not overwritten first:
    /// on journaling and copy-on-write filesystems that would not reach the
    /// old blocks anyway.
    pub fn remove(&self, id: &str) -> Result<(), KeystoreError> {
        let path = self.checked_path(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(KeystoreError::NotFound { path }),
            Err(source) => Err(KeystoreError::Remove { path, source }),
        }
    }

    /// Where the key of account `id` lives. Does not validate `id`; callers
    /// that take ids from outside go through `load`/`remove`, which do.
    pub fn path_for(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    fn checked_path(&self, id: &str) -> Result<PathBuf, KeystoreError> {
        if !is_valid_id(id) {
            return Err(KeystoreError::InvalidId { id: id.to_owned() });
        }
        Ok(self.path_for(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_creates_private_dir_and_save_writes_private_file() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        assert_eq!(mode(&state.path().join("keys")), 0o700);
        let identity = Identity::generate().unwrap();
        let path = store.save(&identity, false).unwrap();
        assert_eq!(path, state.path().join("keys").join(format!("{}.key", identity.id())));
        assert_eq!(path, store.path_for(&identity.id()));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn save_load_round_trip() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        for burner in [false, true] {
            let identity = Identity::generate().unwrap();
            store.save(&identity, burner).unwrap();
            // A second handle, as after a daemon restart.
            let reopened = Keystore::open(state.path()).unwrap();
            let (back, back_burner) = reopened.load(&identity.id()).unwrap();
            assert_eq!(*back.identity_secret(), *identity.identity_secret());
            assert_eq!(*back.messaging_secret(), *identity.messaging_secret());
            assert_eq!(back_burner, burner);
        }
    }

    #[test]
    fn duplicate_save_refused_and_original_kept() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        let identity = Identity::generate().unwrap();
        store.save(&identity, false).unwrap();
        let err = store.save(&identity, true).unwrap_err();
        assert!(matches!(err, KeystoreError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains(&identity.id()), "{err}");
        assert!(!store.load(&identity.id()).unwrap().1, "burner flag unchanged");
    }

    #[test]
    fn bad_ids_refused() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        let upper = "AB".repeat(32);
        for id in ["", "../../etc/passwd", "abc", upper.as_str()] {
            assert!(matches!(store.load(id), Err(KeystoreError::InvalidId { .. })), "{id}");
            assert!(matches!(store.remove(id), Err(KeystoreError::InvalidId { .. })), "{id}");
        }
    }

    #[test]
    fn remove_and_missing_keys() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        let identity = Identity::generate().unwrap();
        store.save(&identity, false).unwrap();
        store.remove(&identity.id()).unwrap();
        let err = store.load(&identity.id()).unwrap_err();
        assert!(matches!(err, KeystoreError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("keys"), "message names the path: {err}");
        assert!(matches!(
            store.remove(&identity.id()),
            Err(KeystoreError::NotFound { .. })
        ));
    }

    #[test]
    fn key_under_another_accounts_name_refused() {
        let state = tempfile::tempdir().unwrap();
        let store = Keystore::open(state.path()).unwrap();
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let a_path = store.save(&a, false).unwrap();
        fs::rename(&a_path, store.path_for(&b.id())).unwrap();
        let err = store.load(&b.id()).unwrap_err();
        assert!(matches!(err, KeystoreError::WrongAccount { .. }), "{err}");
        fs::write(store.path_for(&a.id()), b"{}").unwrap();
        assert!(matches!(store.load(&a.id()), Err(KeystoreError::Invalid { .. })));
    }

    #[test]
    fn loose_dir_mode_tightened() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("keys");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        Keystore::open(state.path()).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn keys_that_is_not_a_directory_refused() {
        let state = tempfile::tempdir().unwrap();
        fs::write(state.path().join("keys"), b"").unwrap();
        let err = Keystore::open(state.path()).unwrap_err();
        assert!(matches!(err, KeystoreError::NotADirectory { .. }), "{err}");
        let other = tempfile::tempdir().unwrap();
        fs::remove_file(state.path().join("keys")).unwrap();
        std::os::unix::fs::symlink(other.path(), state.path().join("keys")).unwrap();
        let err = Keystore::open(state.path()).unwrap_err();
        assert!(matches!(err, KeystoreError::NotADirectory { .. }), "{err}");
    }
}
