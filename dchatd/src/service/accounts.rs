//! Local accounts: create, list, show, import, export.
//!
//! The secret keys go to the keystore first and the database row second:
//! a crash between the two leaves an orphan key file (harmless, never
//! listed), never a listed account without its keys.

use std::sync::Arc;

use dchat_control::api;
use dchat_keyfile::Identity;

use super::{LocalAccount, Node, ServiceError};
use crate::chain::ChainError;
use crate::keystore::Keystore;
use crate::ledger::{Rejection, SignedTx, TxKind};
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

/// An account known only from the chain.
fn chain_account(a: &crate::ledger::Account) -> api::Account {
    api::Account {
        name: a.name.clone(),
        id: hex::encode(a.identity_key),
        identity_key: hex::encode(a.identity_key),
        messaging_key: hex::encode(a.messaging_key),
        burner: false,
        local: false,
        created_at: String::new(),
        registration_block: Some(a.registered_at),
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

/// A local account that can sign transactions: its name and its keys.
pub(crate) struct Signer {
    pub name: String,
    pub identity: Identity,
}

/// The local account `wanted` names (by name in any case, or by id), or the
/// only local account when `wanted` is None. `Ok(None)`: no local account
/// has that name; the caller tells "unknown" from "not hosted here".
fn pick_local<'a>(locals: &'a [LocalAccount], wanted: Option<&str>) -> Result<Option<&'a LocalAccount>, ServiceError> {
    let Some(wanted) = wanted else {
        return match locals {
            [only] => Ok(Some(only)),
            all => Err(ServiceError::AccountRequired(all.len())),
        };
    };
    let by_id = dchat_keyfile::is_valid_id(wanted);
    Ok(locals.iter().find(|a| {
        if by_id {
            a.id == wanted
        } else {
            a.name.eq_ignore_ascii_case(wanted)
        }
    }))
}

fn parse_secret_hex(hex_text: &str) -> Result<[u8; 32], ServiceError> {
    parse_secret("key", hex_text)
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
        self.check_name_on_chain(&params.name)?;
        let stored = identity.clone();
        let name = params.name.clone();
        let stored = self
            .with_db(move |db, ks| {
                let row = store(db, ks, &name, &stored, burner)?;
                Ok((row, db.count_accounts()?))
            })
            .await;
        self.forget_local_accounts();
        let (row, count) = stored?;
        self.update_accounts(count);
        let row = match self.register_on_chain(&row, &identity).await {
            Ok(row) => row,
            Err(e) => {
                self.undo_local_account(&row).await;
                return Err(e);
            }
        };
        tracing::info!(account = %row.name, account_id = %row.id, burner, block = row.registration_block, "account created");
        Ok(to_api(row))
    }

    /// A name registered on chain by anyone is taken here too.
    fn check_name_on_chain(&self, name: &str) -> Result<(), ServiceError> {
        match self.chain() {
            Some(chain) if chain.read(|s| s.account(name).is_some()) => Err(ServiceError::NameTaken(name.to_string())),
            _ => Ok(()),
        }
    }

    /// Registers a freshly stored local account on chain and waits until a
    /// final block holds it. Without a chain, the account stays local.
    async fn register_on_chain(
        self: &Arc<Self>,
        row: &AccountRow,
        identity: &Identity,
    ) -> Result<AccountRow, ServiceError> {
        let Some(chain) = self.chain().cloned() else {
            return Ok(row.clone());
        };
        super::chain::ensure_can_commit(&chain)?;
        let kind = TxKind::RegisterAccount {
            name: row.name.clone(),
            identity_key: identity.signing_key().verifying_key().to_bytes(),
            messaging_key: parse_secret_hex(&row.messaging_key)?,
        };
        let tx = SignedTx::create(identity, &chain.genesis().chain_id, 0, kind);
        let finalized = chain
            .submit_and_wait(tx, chain.finality_timeout())
            .await
            .map_err(|e| match e {
                ChainError::Rejected(Rejection::NameTaken(_)) => ServiceError::NameTaken(row.name.clone()),
                ChainError::Timeout(_) => ServiceError::ChainTimeout(e.to_string()),
                ChainError::ShuttingDown => ServiceError::ShuttingDown,
                other => ServiceError::Internal(format!("registration: {other}")),
            })?;
        let mut registered = row.clone();
        registered.registration_block = Some(finalized.height);
        Ok(registered)
    }

    /// Takes back a local account whose registration was refused.
    async fn undo_local_account(self: &Arc<Self>, row: &AccountRow) {
        let (name, id) = (row.name.clone(), row.id.clone());
        self.forget_signing_key(&row.id);
        let undone = self
            .with_db(move |db, ks| {
                db.delete_account(&name)?;
                ks.remove(&id)?;
                Ok(db.count_accounts()?)
            })
            .await;
        // Again, and whatever came of it: something may have read the key
        // or the list of accounts while the delete waited.
        self.forget_local_accounts();
        self.forget_signing_key(&row.id);
        match undone {
            Ok(count) => self.update_accounts(count),
            Err(e) => tracing::error!(account = %row.name, error = %e, "cannot take back a refused account"),
        }
    }

    /// The local account that signs a request: the one `name` names, or
    /// the only one this daemon hosts when the request names none (the rule
    /// of every `--user`/`--owner`/`--from` in CLI.md).
    pub(crate) async fn local_signer(self: &Arc<Self>, name: Option<String>) -> Result<Signer, ServiceError> {
        let locals = self.local_accounts().await?;
        let found = pick_local(&locals, name.as_deref())?.cloned();
        match (found, name) {
            (Some(local), _) => Ok(Signer {
                identity: self.signing_key(&local.id).await?,
                name: local.name,
            }),
            (None, Some(name)) => {
                let on_chain = self.chain().is_some_and(|c| c.read(|s| s.account(&name).is_some()));
                Err(if on_chain {
                    ServiceError::NotLocal(name)
                } else {
                    ServiceError::NotFound(name)
                })
            }
            // pick_local answers None only for a named account.
            (None, None) => Err(ServiceError::AccountRequired(0)),
        }
    }

    /// The keys of local account `id`: from memory after the first use
    /// (reading and parsing the key file costs more than signing).
    pub(crate) async fn signing_key(self: &Arc<Self>, id: &str) -> Result<Identity, ServiceError> {
        if let Some(identity) = self.cached_signing_key(id) {
            return Ok(identity);
        }
        let node = Arc::clone(self);
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let (identity, _) = node.keystore().load(&id)?;
            node.cache_signing_key(id, identity.clone());
            Ok(identity)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("key load failed: {e}")))?
    }

    pub async fn import_account(self: &Arc<Self>, params: api::ImportAccount) -> Result<api::Account, ServiceError> {
        validate_name(&params.name)?;
        let identity_secret = parse_secret("identity_secret", &params.identity_secret)?;
        let messaging_secret = parse_secret("messaging_secret", &params.messaging_secret)?;
        let identity = Identity::from_secrets(&identity_secret, &messaging_secret);
        let burner = params.burner.unwrap_or(false);
        let stored = self
            .with_db(move |db, ks| {
                let row = store(db, ks, &params.name, &identity, burner)?;
                Ok((row, db.count_accounts()?))
            })
            .await;
        self.forget_local_accounts();
        let (row, count) = stored?;
        self.update_accounts(count);
        tracing::info!(account = %row.name, account_id = %row.id, "account imported");
        Ok(to_api(row))
    }

    /// Local accounts, then every other account registered on chain.
    pub async fn list_accounts(self: &Arc<Self>) -> Result<Vec<api::Account>, ServiceError> {
        let rows = self.with_db(|db, _| Ok(db.list_accounts()?)).await?;
        let mut accounts: Vec<api::Account> = rows.into_iter().map(to_api).collect();
        if let Some(chain) = self.chain() {
            let remote: Vec<api::Account> = chain.read(|s| {
                s.accounts()
                    .filter(|a| !accounts.iter().any(|l| l.id == hex::encode(a.identity_key)))
                    .map(chain_account)
                    .collect()
            });
            accounts.extend(remote);
            accounts.sort_by_key(|a| a.name.to_ascii_lowercase());
        }
        Ok(accounts)
    }

    /// One account by name or id: a local one, else one registered on chain.
    pub async fn show_account(self: &Arc<Self>, name: String) -> Result<api::Account, ServiceError> {
        let wanted = name.clone();
        let local = self
            .with_db(move |db, _| match find(db, &wanted) {
                Ok(row) => Ok(Some(to_api(row))),
                Err(ServiceError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        if let Some(account) = local {
            return Ok(account);
        }
        let on_chain = self.chain().and_then(|chain| {
            chain.read(|s| {
                let by_id = hex::decode(&name)
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
                by_id
                    .and_then(|k| s.account_by_key(&k).cloned())
                    .or_else(|| s.account(&name).cloned())
            })
        });
        on_chain.as_ref().map(chain_account).ok_or(ServiceError::NotFound(name))
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
