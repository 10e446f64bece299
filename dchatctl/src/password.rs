//! Passwords for identity files: from a file, or asked on the terminal
//! without echo. Never from the command line, where `ps` would show them.

use std::io::IsTerminal;
use std::path::Path;

use dchat_keyfile::zeroize::Zeroizing;

use crate::error::CtlError;

/// Reads the password from `file`, or asks for it (twice when `confirm`).
pub fn obtain(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>, CtlError> {
    if let Some(path) = file {
        return Ok(dchat_keyfile::read_password_file(path)?);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CtlError::Usage(
            "no terminal to ask for a password on; pass --password-file FILE".into(),
        ));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Password: ").map_err(|e| CtlError::Failed(format!("cannot read password: {e}")))?,
    );
    if first.is_empty() {
        return Err(CtlError::Usage("the password must not be empty".into()));
    }
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Password again: ")
                .map_err(|e| CtlError::Failed(format!("cannot read password: {e}")))?,
        );
        if *again != *first {
            return Err(CtlError::Usage("the passwords do not match".into()));
        }
    }
    Ok(first)
}
