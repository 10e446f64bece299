//! Finding the genesis: the configured file, or in `--dev` a one-validator
//! genesis made on first start with this node as the validator.

use std::path::Path;

use crate::ledger::Genesis;

use super::ChainError;

/// Block interval of a `--dev` chain: short, so a dev node feels instant.
pub const DEV_BLOCK_INTERVAL_MS: u64 = 500;

/// Loads the genesis at `path`. In `--dev`, makes it first when missing.
pub fn load(path: &Path, dev: bool, node_key: [u8; 32]) -> Result<Option<Genesis>, ChainError> {
    match std::fs::read(path) {
        Ok(bytes) => Genesis::from_json(&bytes)
            .map(Some)
            .map_err(|e| ChainError::Genesis(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dev => {
            let genesis = Genesis::single_validator("dchat-dev", node_key, DEV_BLOCK_INTERVAL_MS);
            dchat_keyfile::write_private_file(path, genesis.to_json().as_bytes(), false)
                .map_err(|e| ChainError::Genesis(format!("cannot write {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "made a one-validator dev genesis");
            Ok(Some(genesis))
        }
        // A node without a genesis runs, without a chain, and says so.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ChainError::Genesis(format!("cannot read {}: {e}", path.display()))),
    }
}
