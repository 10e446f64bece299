//! The node's own ed25519 key, distinct from any account's. It names the
//! node on the network: the peer id is derived exactly as libp2p derives it
//! for an ed25519 key, so the P2P layer can adopt this key unchanged.

use std::path::{Path, PathBuf};

use dchat_keyfile::Identity;

#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
}

/// Loads `<state_dir>/node.key`, creating it (mode 0600) on first start.
pub fn load_or_create(state_dir: &Path) -> Result<Identity, NodeKeyError> {
    let path = state_dir.join("node.key");
    let bad = |message: String| NodeKeyError::Bad {
        path: path.clone(),
        message,
    };
    match std::fs::read(&path) {
        Ok(bytes) => dchat_keyfile::from_keystore_json(&bytes)
            .map(|(identity, _)| identity)
            .map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate().map_err(|e| bad(e.to_string()))?;
            dchat_keyfile::write_private_file(&path, &dchat_keyfile::to_keystore_json(&identity, false), false)
                .map_err(|e| bad(format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "created the node key");
            Ok(identity)
        }
        Err(e) => Err(bad(format!("cannot read: {e}"))),
    }
}

/// libp2p's peer id for an ed25519 public key: the base58btc identity
/// multihash of the protobuf-encoded public key.
pub fn peer_id(identity: &Identity) -> String {
    let public = identity.signing_key().verifying_key().to_bytes();
    // protobuf PublicKey { Type = Ed25519 (1), Data = 32 bytes }
    let mut proto = vec![0x08, 0x01, 0x12, 0x20];
    proto.extend_from_slice(&public);
    // multihash: identity code 0x00, length 36
    let mut multihash = vec![0x00, u8::try_from(proto.len()).unwrap_or(36)];
    multihash.extend_from_slice(&proto);
    bs58::encode(multihash).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_has_the_libp2p_ed25519_shape() {
        let id = peer_id(&Identity::from_secrets(&[7; 32], &[9; 32]));
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id.len(), 52);
    }

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.id(), b.id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
