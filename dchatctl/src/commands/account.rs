//! `account …`: create, list, show, import, export, and the earlier dchat
//! tool's spellings of channel and message commands.

use std::path::Path;

use dchat_control::api;
use dchat_keyfile::{Identity, IdentityFile, KdfParams};

use super::call;
use crate::cli::AccountCommand;
use crate::error::CtlError;
use crate::outln;
use crate::{output, password};

pub async fn run(cmd: &AccountCommand, socket: &Path, json: bool) -> Result<u8, CtlError> {
    match cmd {
        AccountCommand::Create { name, burner } => {
            let params = api::CreateAccount {
                name: name.clone(),
                burner: burner.then_some(true),
            };
            let r: api::AccountReply = call(socket, api::ACCOUNT_CREATE, &params).await?;
            show_one(&r.account, json, "created")
        }
        AccountCommand::List => {
            let r: api::AccountList = call(socket, api::ACCOUNT_LIST, &api::Empty {}).await?;
            if json {
                output::json(&r.accounts)?;
            } else if r.accounts.is_empty() {
                outln!("no accounts; create one with `dchatctl account create NAME`")?;
            } else {
                let rows: Vec<Vec<String>> = r
                    .accounts
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.id.clone(),
                            if a.local { "local".into() } else { "remote".into() },
                            if a.burner { "yes".into() } else { "no".into() },
                            a.created_at.clone(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ID", "WHERE", "BURNER", "CREATED"], &rows)?;
            }
            Ok(0)
        }
        AccountCommand::Show { name } => {
            let r: api::AccountReply =
                call(socket, api::ACCOUNT_SHOW, &api::AccountName { name: name.clone() }).await?;
            show_one(&r.account, json, "")
        }
        AccountCommand::Import {
            file,
            password_file,
            name,
        } => import(socket, file, password_file.as_deref(), name.as_deref(), json).await,
        // The earlier dchat tool's spellings.
        AccountCommand::CreateChannel(args) => super::channel::create(args, socket, json).await,
        AccountCommand::SendDm(args) => super::messages::send_dm(args, socket, json).await,
        AccountCommand::GetDms(args) => super::messages::list_dms(args, socket, json).await,
        AccountCommand::PostChannel(args) => super::messages::post(args, socket, json).await,
        AccountCommand::GetChannelMessages(args) => super::messages::channel_messages(args, socket, json).await,
        AccountCommand::Export {
            name,
            output,
            password_file,
            force,
        } => export(socket, name, output, password_file.as_deref(), *force, json).await,
    }
}

fn show_one(a: &api::Account, json: bool, verb: &str) -> Result<u8, CtlError> {
    if json {
        output::json(a)?;
        return Ok(0);
    }
    if !verb.is_empty() {
        outln!("{verb} account {}", a.name)?;
    }
    output::fields(&[
        ("name", a.name.clone()),
        ("id", a.id.clone()),
        ("identity key", a.identity_key.clone()),
        ("messaging key", a.messaging_key.clone()),
        ("local", if a.local { "yes".into() } else { "no".into() }),
        ("burner", if a.burner { "yes".into() } else { "no".into() }),
        ("created", a.created_at.clone()),
        (
            "registered",
            a.registration_block
                .map_or("not on chain yet".into(), |h| format!("block {h}")),
        ),
    ])?;
    Ok(0)
}

/// The file is read and decrypted here, with the caller's permissions; the
/// daemon receives only the keys and never sees the password.
async fn import(
    socket: &Path,
    file: &Path,
    password_file: Option<&Path>,
    name: Option<&str>,
    json: bool,
) -> Result<u8, CtlError> {
    let bytes = std::fs::read(file).map_err(|e| CtlError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let pass = password::obtain(password_file, false)?;
    let decrypted = dchat_keyfile::decrypt(&bytes, pass.as_bytes())
        .map_err(|e| CtlError::Failed(format!("{}: {e}", file.display())))?;
    let Some(name) = name.map(str::to_string).or(decrypted.name.clone()) else {
        return Err(CtlError::Usage(format!(
            "{} records no account name; pass --name NAME",
            file.display()
        )));
    };
    let params = api::ImportAccount {
        name,
        identity_secret: hex_of(&decrypted.identity.identity_secret()[..]),
        messaging_secret: hex_of(&decrypted.identity.messaging_secret()[..]),
        burner: decrypted.burner.then_some(true),
    };
    let r: api::AccountReply = call(socket, api::ACCOUNT_IMPORT, &params).await?;
    show_one(&r.account, json, "imported")
}

async fn export(
    socket: &Path,
    name: &str,
    out: &Path,
    password_file: Option<&Path>,
    force: bool,
    json: bool,
) -> Result<u8, CtlError> {
    if !force && out.exists() {
        return Err(CtlError::Failed(format!(
            "{} exists; pass --force to replace it",
            out.display()
        )));
    }
    let pass = password::obtain(password_file, true)?;
    let e: api::ExportedAccount = call(
        socket,
        api::ACCOUNT_EXPORT,
        &api::AccountName { name: name.to_string() },
    )
    .await?;
    let identity = Identity::from_secrets(&parse32(&e.identity_secret)?, &parse32(&e.messaging_secret)?);
    let id = identity.id();
    let file = IdentityFile {
        name: Some(e.name.clone()),
        burner: e.burner,
        identity,
    };
    let bytes = dchat_keyfile::encrypt(&file, pass.as_bytes(), &KdfParams::DEFAULT)?;
    crate::write_output(out, &bytes, force)?;
    if json {
        output::json(&serde_json::json!({ "name": e.name, "id": id, "file": out.display().to_string() }))?;
    } else {
        outln!("exported account {} ({id}) to {} (mode 0600)", e.name, out.display())?;
    }
    Ok(0)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse32(hex_text: &str) -> Result<[u8; 32], CtlError> {
    let bad = || CtlError::Failed("the daemon returned a malformed key".into());
    if hex_text.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}
