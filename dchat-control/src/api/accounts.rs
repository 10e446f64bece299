//! io.dchat.Accounts: local accounts and their keys.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const ACCOUNT_CREATE: &str = "io.dchat.Accounts.Create";
pub const ACCOUNT_LIST: &str = "io.dchat.Accounts.List";
pub const ACCOUNT_SHOW: &str = "io.dchat.Accounts.Show";
pub const ACCOUNT_IMPORT: &str = "io.dchat.Accounts.Import";
pub const ACCOUNT_EXPORT: &str = "io.dchat.Accounts.Export";

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: ACCOUNT_CREATE,
        read_only: false,
    },
    MethodInfo {
        method: ACCOUNT_LIST,
        read_only: false,
    },
    MethodInfo {
        method: ACCOUNT_SHOW,
        read_only: false,
    },
    MethodInfo {
        method: ACCOUNT_IMPORT,
        read_only: false,
    },
    MethodInfo {
        method: ACCOUNT_EXPORT,
        read_only: false,
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub id: String,
    pub identity_key: String,
    pub messaging_key: String,
    pub burner: bool,
    pub local: bool,
    pub created_at: String,
    pub registration_block: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReply {
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burner: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountName {
    pub name: String,
}

/// Secret keys travel hex-encoded; the socket is local and peer-checked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportAccount {
    pub name: String,
    pub identity_secret: String,
    pub messaging_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burner: Option<bool>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedAccount {
    pub name: String,
    pub burner: bool,
    pub identity_secret: String,
    pub messaging_secret: String,
}

// Secrets must never reach a log line through Debug.
impl std::fmt::Debug for ImportAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportAccount")
            .field("name", &self.name)
            .field("burner", &self.burner)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ExportedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedAccount")
            .field("name", &self.name)
            .field("burner", &self.burner)
            .finish_non_exhaustive()
    }
}

/// Why `name` cannot be an account name, or None if it can: 1–32 of
/// `a-z A-Z 0-9 _ - .`, starting with a letter or digit, and never a
/// 64-character hex string (that is how account ids look, and commands take
/// either). The daemon enforces it; the CLI checks early with the same rule.
pub fn account_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 32 {
        return Some("must be 1 to 32 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Some("only letters, digits, '_', '-' and '.' are allowed");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("must start with a letter or a digit");
    }
    if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some("looks like an account id");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["alice", "Bob_2", "a", "x.y-z"] {
            assert_eq!(account_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "-alice", "al ice", "élan", &"a".repeat(33), &"ab".repeat(32)] {
            assert!(account_name_problem(bad).is_some(), "{bad}");
        }
    }
}
