//! `keygen`: a new identity, encrypted with a password, written offline.

use dchat_keyfile::{Identity, IdentityFile, KdfParams};
use serde_json::json;

use crate::cli::KeygenArgs;
use crate::error::CtlError;
use crate::outln;
use crate::{output, password};

pub fn run(args: &KeygenArgs, json: bool) -> Result<u8, CtlError> {
    if let Some(name) = &args.name {
        if let Some(reason) = dchat_control::api::account_name_problem(name) {
            return Err(CtlError::Usage(format!("invalid account name {name:?}: {reason}")));
        }
    }
    // Refuse early, before asking for a password, when the file exists.
    if !args.force && args.output.exists() {
        return Err(CtlError::Failed(format!(
            "{} exists; pass --force to replace it",
            args.output.display()
        )));
    }
    let pass = password::obtain(args.password_file.as_deref(), true)?;
    let identity = Identity::generate()?;
    let file = IdentityFile {
        name: args.name.clone(),
        burner: args.burner,
        identity,
    };
    let bytes = dchat_keyfile::encrypt(&file, pass.as_bytes(), &KdfParams::DEFAULT)?;
    crate::write_output(&args.output, &bytes, args.force)?;
    let id = file.identity.id();
    if json {
        output::json(&json!({
            "id": id,
            "identity_key": file.identity.identity_public_hex(),
            "messaging_key": file.identity.messaging_public_hex(),
            "burner": args.burner,
            "name": args.name,
            "file": args.output.display().to_string(),
        }))?;
    } else {
        outln!(
            "wrote {}identity {id} to {} (mode 0600)",
            if args.burner { "burner " } else { "" },
            args.output.display()
        )?;
    }
    Ok(0)
}
