//! Local accounts: create, list, show, import, export.
//!
//! The secret keys go to the keystore first and the database row second:
//! a crash between the two leaves an orphan key file (harmless, never
//! listed), never a listed account without its keys.

use std::sync::Arc;

use dchat_control::api;
use dchat_keyfile::Identity;

use super::{Node, ServiceError};
use crate::keystore::Keystore;
use crate::storage::{AccountRow, Database, StorageError};

/// Account names follow the one rule in the protocol crate.
pub fn validate_name(name: &str) -> Result<(), ServiceError> {
    match api::account_name_problem(name) {
        Some(reason) => Err(ServiceError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn to_api(row: AccountRow) -> api::Account {
    api::Account {
        name: row.name,
        id: row.id,
        identity_key: row.identity_key,
        messaging_key: row.messaging_key,
        burner: row.burner,
        local: row.local,
        created_at: row.created_at,
        registration_block: row.registration_block,
    }
}

/// Stores `identity` as local account `name`: key file, then row.
fn store(
    db: &Database,
    keystore: &Keystore,
    name: &str,
    identity: &Identity,
    burner: bool,
) -> Result<AccountRow, ServiceError> {
    if let Some(existing) = db.account_by_id(&identity.id())? {
        return Err(ServiceError::AlreadyExists {
            name: existing.name,
            id: existing.id,
        });
    }
    if db.account_by_name(name)?.is_some() || name_taken_any_case(db, name)? {
        return Err(ServiceError::NameTaken(name.to_string()));
    }
    keystore.save(identity, burner)?;
    let row = AccountRow {
        name: name.to_string(),
        id: identity.id(),
        identity_key: identity.identity_public_hex(),
        messaging_key: identity.messaging_public_hex(),
        burner,
        local: true,
        created_at: now_rfc3339(),
        registration_block: None,
    };
    match db.insert_account(&row) {
        Ok(()) => Ok(row),
        Err(e) => {
            // The row did not commit: take the key file back out.
            if let Err(rm) = keystore.remove(&row.id) {
                tracing::warn!(id = %row.id, error = %rm, "could not remove the key file of a failed account insert");
            }
            Err(match e {
                StorageError::IdTaken(_) => ServiceError::AlreadyExists {
                    name: name.to_string(),
                    id: row.id,
                },
                other => other.into(),
            })
        }
    }
}

/// The database enforces case-insensitive uniqueness; asking first lets us
/// answer NameTaken before writing a key file.
fn name_taken_any_case(db: &Database, name: &str) -> Result<bool, ServiceError> {
    Ok(db.list_accounts()?.iter().any(|a| a.name.eq_ignore_ascii_case(name)))
}

fn find(db: &Database, name_or_id: &str) -> Result<AccountRow, ServiceError> {
    let row = if dchat_keyfile::is_valid_id(name_or_id) {
        db.account_by_id(name_or_id)?
    } else {
        db.account_by_name(name_or_id)?
    };
    row.ok_or_else(|| ServiceError::NotFound(name_or_id.to_string()))
}

fn parse_secret(label: &str, hex_text: &str) -> Result<[u8; 32], ServiceError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| ServiceError::InvalidKey(format!("{label} is not hex")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ServiceError::InvalidKey(format!("{label} must be 32 bytes")))
}

impl Node {
    pub async fn create_account(self: &Arc<Self>, params: api::CreateAccount) -> Result<api::Account, ServiceError> {
        validate_name(&params.name)?;
        let burner = params.burner.unwrap_or(false);
        let identity = Identity::generate().map_err(|e| ServiceError::Internal(format!("key generation: {e}")))?;
        let row = self
            .with_db(move |db, ks| {
                let row = store(db, ks, &params.name, &identity, burner)?;
                Ok((row, db.count_accounts()?))
            })
            .await;
        let (row, count) = row?;
        self.update_accounts(count);
        tracing::info!(account = %row.name, account_id = %row.id, burner, "account created");
        Ok(to_api(row))
    }

    pub async fn import_account(self: &Arc<Self>, params: api::ImportAccount) -> Result<api::Account, ServiceError> {
        validate_name(&params.name)?;
        let identity_secret = parse_secret("identity_secret", &params.identity_secret)?;
        let messaging_secret = parse_secret("messaging_secret", &params.messaging_secret)?;
        let identity = Identity::from_secrets(&identity_secret, &messaging_secret);
        let burner = params.burner.unwrap_or(false);
        let (row, count) = self
            .with_db(move |db, ks| {
                let row = store(db, ks, &params.name, &identity, burner)?;
                Ok((row, db.count_accounts()?))
            })
            .await?;
        self.update_accounts(count);
        tracing::info!(account = %row.name, account_id = %row.id, "account imported");
        Ok(to_api(row))
    }

    pub async fn list_accounts(self: &Arc<Self>) -> Result<Vec<api::Account>, ServiceError> {
        let rows = self.with_db(|db, _| Ok(db.list_accounts()?)).await?;
        Ok(rows.into_iter().map(to_api).collect())
    }

    pub async fn show_account(self: &Arc<Self>, name: String) -> Result<api::Account, ServiceError> {
        self.with_db(move |db, _| find(db, &name).map(to_api)).await
    }

    pub async fn export_account(self: &Arc<Self>, name: String) -> Result<api::ExportedAccount, ServiceError> {
        let exported = self
            .with_db(move |db, ks| {
                let row = find(db, &name)?;
                if !row.local {
                    return Err(ServiceError::NotFound(name));
                }
                let (identity, burner) = ks.load(&row.id)?;
                Ok(api::ExportedAccount {
                    name: row.name,
                    burner,
                    identity_secret: hex::encode(*identity.identity_secret()),
                    messaging_secret: hex::encode(*identity.messaging_secret()),
                })
            })
            .await?;
        tracing::info!(account = %exported.name, "account exported");
        Ok(exported)
    }
}
