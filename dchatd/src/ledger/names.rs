//! Account and channel names on chain.
//!
//! Names are compared case-insensitively, as the daemon does for local
//! accounts: "Alice" and "alice" are the same account. The ledger keeps the
//! spelling the owner registered for display and indexes by the lowercase
//! form, which is the only form the state root sees as a key.

use super::error::Rejection;

/// Longest account or channel name, in bytes (all allowed characters are
/// ASCII, so bytes and characters agree).
pub const MAX_NAME_LEN: usize = 32;

/// The key under which a name is stored and compared.
pub fn canonical(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Account and channel names: 1–32 of `A-Z a-z 0-9 _ - .`, starting with a
/// letter or a digit. Clients may show channels with a leading `#`; that is
/// not part of the name. (At 32 characters at most, a name can never be
/// mistaken for a 64-character account id.)
pub fn validate_name(name: &str) -> Result<(), Rejection> {
    let bad = |reason: &str| {
        Err(Rejection::InvalidName {
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("must be 1 to 32 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '-' and '.' are allowed");
    }
    if !name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
        return bad("must start with a letter or a digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for ok in ["a", "Alice", "bob_2", "x.y-z", "0day", "general", &"n".repeat(32)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "_alice",
            ".x",
            "-x",
            "al ice",
            "#general",
            "ålice",
            &"n".repeat(33),
            &"ab".repeat(32),
        ] {
            assert!(
                matches!(validate_name(bad), Err(Rejection::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn canonical_form_is_lowercase() {
        assert_eq!(canonical("AlIcE"), "alice");
        assert_eq!(canonical("alice"), canonical("ALICE"));
    }
}
