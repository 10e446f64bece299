//! dchatctl's errors and the exit status each maps to (CLI.md).

use dchat_control::api::errors;
use dchat_control::api::{channel_errors, db_errors, message_errors};
use dchat_control::varlink::errors as std_errors;
use dchat_control::{CallError, ClientError};
use serde_json::Value;

pub const EX_FAILED: u8 = 1;
pub const EX_USAGE: u8 = 2;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_NOPERM: u8 = 77;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Connect(#[from] ClientError),
    #[error("{0}")]
    Call(#[from] CallError),
    /// The request was bad before it reached the daemon.
    #[error("{0}")]
    Usage(String),
    /// Anything else that failed locally (files, passwords, keys).
    #[error("{0}")]
    Failed(String),
    /// Whoever read our stdout went away (`… | head`). Not a failure: the
    /// reader has what it wanted, so `main` exits 0 and prints nothing.
    #[error("stdout was closed")]
    StdoutClosed,
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Connect(ClientError::Unreachable { .. }) => EX_UNAVAILABLE,
            CtlError::Connect(ClientError::PermissionDenied { .. }) => EX_NOPERM,
            CtlError::Call(e) if e.is_permission_denied() => EX_NOPERM,
            // The daemon went away mid-call.
            CtlError::Call(CallError::Io(_)) => EX_UNAVAILABLE,
            CtlError::Usage(_) => EX_USAGE,
            CtlError::StdoutClosed => 0,
            _ => EX_FAILED,
        }
    }

    /// The one line printed on stderr.
    pub fn message(&self) -> String {
        match self {
            CtlError::Call(e) if e.is_permission_denied() => {
                "permission denied: the daemon accepts only root, its own user and members of its control group".into()
            }
            CtlError::Call(CallError::Remote { error, parameters }) => {
                friendly(error, parameters).unwrap_or_else(|| self.to_string())
            }
            other => other.to_string(),
        }
    }
}

/// A sentence for the typed errors a user can meet, from their parameters;
/// `None` falls back to the generic `Name (key: value, …)` form.
fn friendly(error: &str, parameters: &Value) -> Option<String> {
    let text = |key: &str| parameters.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| parameters.get(key).and_then(Value::as_u64);
    Some(match error {
        errors::NAME_TAKEN => format!(
            "account name {:?} is taken (names are unique regardless of case)",
            text("name")?
        ),
        errors::ALREADY_EXISTS => {
            format!(
                "these keys belong to an existing account, {:?} ({}); nothing was imported",
                text("name")?,
                text("id")?
            )
        }
        errors::NOT_FOUND => format!("no account with name or id {:?}", text("name")?),
        errors::INVALID_NAME => format!("invalid account name {:?}: {}", text("name")?, text("reason")?),
        errors::INVALID_KEY => format!("the daemon rejected the key material: {}", text("reason")?),
        errors::ACCOUNT_REQUIRED => match number("count")? {
            0 => "dchatd hosts no local account; create one with `dchatctl account create NAME`".into(),
            n => format!("dchatd hosts {n} local accounts; name the one to use (--user, --owner or --from)"),
        },
        errors::NOT_LOCAL => format!(
            "account {:?} is not hosted by this dchatd, so it cannot act for it",
            text("name")?
        ),
        errors::NOT_REGISTERED => format!(
            "account {:?} is not registered on chain yet; try again once it is",
            text("name")?
        ),
        channel_errors::CHANNEL_TAKEN => format!(
            "channel name {:?} is taken (names are unique regardless of case)",
            text("channel")?
        ),
        channel_errors::NO_SUCH_CHANNEL => format!("no channel named {:?}", text("channel")?),
        channel_errors::INVALID_NAME => format!("invalid channel name {:?}: {}", text("channel")?, text("reason")?),
        channel_errors::DESCRIPTION_TOO_LONG => format!(
            "the description is {} bytes, more than the limit of {}",
            number("length")?,
            number("max")?
        ),
        channel_errors::NOT_INVITED => format!(
            "channel {:?} is invite-only and {} has no invitation; its owner can send one with `dchatctl channel invite`",
            text("channel")?,
            text("account")?
        ),
        channel_errors::ALREADY_MEMBER => format!(
            "{} is already a member of channel {:?}",
            text("account")?,
            text("channel")?
        ),
        channel_errors::NOT_MEMBER => format!("{} is not a member of channel {:?}", text("account")?, text("channel")?),
        channel_errors::NOT_OWNER => format!(
            "only the owner of channel {:?} ({}) may do this",
            text("channel")?,
            text("owner")?
        ),
        channel_errors::NOT_INVITE_ONLY => format!(
            "channel {:?} is open to everyone; invitations are for invite-only channels",
            text("channel")?
        ),
        channel_errors::ALREADY_INVITED => format!(
            "{} is already invited to channel {:?}",
            text("account")?,
            text("channel")?
        ),
        message_errors::NO_SUCH_RECIPIENT => format!("no account with name or id {:?} to send to", text("name")?),
        message_errors::TEXT_TOO_LONG => format!("the text is longer than the limit of {} bytes", number("max")?),
        message_errors::EMPTY_TEXT => "the text is empty; there is nothing to send".into(),
        message_errors::NETWORK_DOWN => {
            "dchatd is not connected to the network; check `dchatctl peers` and its bootstrap addresses".into()
        }
        channel_errors::REJECTED => format!("the chain refused the transaction: {}", text("reason")?),
        dchat_control::api::CHAIN_TIMEOUT => format!("{}; the transaction may still become final later", text("message")?),
        dchat_control::api::NOT_CONNECTED => text("message")?,
        dchat_control::api::NO_CHAIN => "this dchatd has no chain: no genesis is configured".into(),
        errors::INVALID_REQUEST => {
            format!("the daemon could not read the request: {}", text("reason")?)
        }
        errors::TOO_MANY_CONNECTIONS => {
            format!(
                "dchatd is serving its limit of {} control connections; try again shortly",
                number("limit")?
            )
        }
        errors::SHUTTING_DOWN => "dchatd is shutting down".into(),
        errors::INTERNAL => format!("dchatd failed: {}", text("message")?),
        std_errors::INVALID_PARAMETER => {
            format!("the daemon rejected parameter {:?}", text("parameter")?)
        }
        std_errors::METHOD_NOT_FOUND | std_errors::METHOD_NOT_IMPLEMENTED => {
            format!(
                "dchatd does not offer {} (is it older than this dchatctl?)",
                text("method")?
            )
        }
        std_errors::INTERFACE_NOT_FOUND => {
            format!(
                "dchatd does not offer interface {} (is it older than this dchatctl?)",
                text("interface")?
            )
        }
        db_errors::BUSY => format!(
            "another database {} is running; try again once it has finished",
            text("operation")?
        ),
        db_errors::NO_SPACE => format!(
            "not enough space in {}: {} bytes needed, {} free",
            text("path")?,
            number("needed")?,
            number("available")?
        ),
        db_errors::BACKUP_FAILED => format!("backup failed: {}; no file was written", text("reason")?),
        db_errors::INVALID_BACKUP => format!(
            "restore refused: {}; the live database is unchanged",
            text("reason")?
        ),
        db_errors::SCHEMA_TOO_NEW => format!(
            "restore refused: the backup has schema version {}, newer than this dchatd supports ({}); the live database is unchanged",
            number("found")?,
            number("supported")?
        ),
        db_errors::WRONG_NETWORK => format!(
            "restore refused: the backup belongs to network {}, this node to {}; the live database is unchanged (--force restores it anyway)",
            text("found").filter(|f| !f.is_empty()).unwrap_or_else(|| "none".into()),
            text("expected")?
        ),
        db_errors::RESTORE_FAILED => format!("restore failed: {}", text("reason")?),
        db_errors::EXPECTED_UPGRADE => "dchatd expected this call with \"upgrade\": true".into(),
        _ => return None,
    })
}

impl From<dchat_keyfile::KeyError> for CtlError {
    fn from(e: dchat_keyfile::KeyError) -> Self {
        CtlError::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use dchat_control::api::{MAX_DM_TEXT_BYTES, MAX_POST_TEXT_BYTES};
    use serde_json::json;

    use super::*;

    fn remote(error: &str, parameters: Value) -> CtlError {
        CtlError::Call(CallError::Remote {
            error: error.into(),
            parameters,
        })
    }

    #[test]
    fn known_errors_read_as_sentences() {
        assert_eq!(
            remote(errors::NAME_TAKEN, json!({"name": "alice"})).message(),
            r#"account name "alice" is taken (names are unique regardless of case)"#
        );
        assert_eq!(
            remote(errors::NOT_FOUND, json!({"name": "bob"})).message(),
            r#"no account with name or id "bob""#
        );
        assert_eq!(
            remote(errors::INVALID_NAME, json!({"name": "a b", "reason": "no spaces"})).message(),
            r#"invalid account name "a b": no spaces"#
        );
        assert_eq!(
            remote(errors::SHUTTING_DOWN, json!({})).message(),
            "dchatd is shutting down"
        );
    }

    #[test]
    fn channel_errors_read_as_sentences() {
        assert_eq!(
            remote(channel_errors::CHANNEL_TAKEN, json!({"channel": "general"})).message(),
            r#"channel name "general" is taken (names are unique regardless of case)"#
        );
        assert_eq!(
            remote(channel_errors::NO_SUCH_CHANNEL, json!({"channel": "nowhere"})).message(),
            r#"no channel named "nowhere""#
        );
        assert!(remote(
            channel_errors::NOT_INVITED,
            json!({"channel": "club", "account": "bob"})
        )
        .message()
        .starts_with(r#"channel "club" is invite-only and bob has no invitation"#));
        assert_eq!(
            remote(errors::ACCOUNT_REQUIRED, json!({"count": 2})).message(),
            "dchatd hosts 2 local accounts; name the one to use (--user, --owner or --from)"
        );
        assert_eq!(remote(channel_errors::NOT_MEMBER, json!({})).exit_code(), EX_FAILED);
    }

    #[test]
    fn message_errors_read_as_sentences() {
        assert_eq!(
            remote(message_errors::NO_SUCH_RECIPIENT, json!({"name": "carol"})).message(),
            r#"no account with name or id "carol" to send to"#
        );
        assert_eq!(
            remote(message_errors::TEXT_TOO_LONG, json!({"max": MAX_POST_TEXT_BYTES})).message(),
            "the text is longer than the limit of 16384 bytes"
        );
        assert_eq!(
            remote(message_errors::TEXT_TOO_LONG, json!({"max": MAX_DM_TEXT_BYTES})).message(),
            "the text is longer than the limit of 65536 bytes"
        );
        assert!(remote(message_errors::EMPTY_TEXT, json!({}))
            .message()
            .contains("empty"));
        assert!(remote(message_errors::NETWORK_DOWN, json!({}))
            .message()
            .contains("not connected"));
        assert_eq!(
            remote(message_errors::NOT_MEMBER, json!({"channel": "c", "account": "bob"})).message(),
            r#"bob is not a member of channel "c""#
        );
    }

    #[test]
    fn a_closed_stdout_is_a_quiet_success() {
        assert_eq!(CtlError::StdoutClosed.exit_code(), 0);
    }

    #[test]
    fn unknown_errors_and_missing_parameters_keep_the_generic_form() {
        assert_eq!(
            remote("io.dchat.Future.Thing", json!({"x": 1})).message(),
            "Thing (x: 1)"
        );
        assert_eq!(remote(errors::NAME_TAKEN, json!({})).message(), "NameTaken");
        assert_eq!(remote(errors::NAME_TAKEN, json!({})).exit_code(), EX_FAILED);
    }
}
