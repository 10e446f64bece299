//! The `accounts` table: accounts this daemon knows, local or not.
//!
//! Names are unique without regard to ASCII case (the column is COLLATE
//! NOCASE), but looking one up or deleting it needs the exact spelling.

use rusqlite::{ErrorCode, OptionalExtension, Row};

use super::{Database, StorageError};

/// One row of `accounts`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountRow {
    pub name: String,
    pub id: String,
    pub identity_key: String,
    pub messaging_key: String,
    pub burner: bool,
    /// Hosted by this daemon (its keys are in our keystore).
    pub local: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Height of the block that registered it, once final.
    pub registration_block: Option<u64>,
}

const COLUMNS: &str = "name, id, identity_key, messaging_key, burner, local, created_at, \
                       registration_block";

impl AccountRow {
    /// Reads a row selected with [`COLUMNS`], in that order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<AccountRow> {
        Ok(AccountRow {
            name: row.get(0)?,
            id: row.get(1)?,
            identity_key: row.get(2)?,
            messaging_key: row.get(3)?,
            burner: row.get(4)?,
            local: row.get(5)?,
            created_at: row.get(6)?,
            registration_block: row
                .get::<_, Option<i64>>(7)?
                .map(|h| u64::try_from(h).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(7, h)))
                .transpose()?,
        })
    }
}

impl Database {
    /// Adds an account. The UNIQUE constraints decide, not a prior lookup,
    /// so two concurrent inserts cannot both win.
    pub fn insert_account(&self, row: &AccountRow) -> Result<(), StorageError> {
        // SQLite integers are i64; a height beyond that is refused, not wrapped.
        let block = row
            .registration_block
            .map(i64::try_from)
            .transpose()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let result = self
            .conn()
            .prepare_cached(&format!(
                "INSERT INTO accounts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(rusqlite::params![
                row.name,
                row.id,
                row.identity_key,
                row.messaging_key,
                row.burner,
                row.local,
                row.created_at,
                block,
            ]);
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(match taken_column(&err) {
                Some("accounts.name") => StorageError::NameTaken(row.name.clone()),
                Some("accounts.id") => StorageError::IdTaken(row.id.clone()),
                _ => StorageError::Sqlite(err),
            }),
        }
    }

    /// All accounts, ordered by name (ASCII case ignored).
    pub fn list_accounts(&self) -> Result<Vec<AccountRow>, StorageError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM accounts ORDER BY name"))?;
        let rows = stmt.query_map([], AccountRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The account with exactly this name.
    pub fn account_by_name(&self, name: &str) -> Result<Option<AccountRow>, StorageError> {
        // The first comparison uses the column's NOCASE index; the second
        // keeps the match exact.
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM accounts WHERE name = ?1 AND name = ?1 COLLATE BINARY"
            ))?
            .query_row([name], AccountRow::from_row)
            .optional()?)
    }

    /// The account with this id.
    pub fn account_by_id(&self, id: &str) -> Result<Option<AccountRow>, StorageError> {
        Ok(self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"))?
            .query_row([id], AccountRow::from_row)
            .optional()?)
    }

    /// Records the block that registered a local account on chain.
    pub fn set_registration_block(&self, name: &str, height: u64) -> Result<bool, StorageError> {
        let h = i64::try_from(height)
            .map_err(|_| StorageError::Sqlite(rusqlite::Error::IntegralValueOutOfRange(0, i64::MAX)))?;
        let n = self.conn().execute(
            "UPDATE accounts SET registration_block = ?1 WHERE name = ?2",
            rusqlite::params![h, name],
        )?;
        Ok(n > 0)
    }

    pub fn count_accounts(&self) -> Result<u64, StorageError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM accounts", [], |row| row.get(0))?;
        // count(*) is never negative.
        Ok(n.unsigned_abs())
    }

    /// Removes the account with exactly this name; false if there was none.
    pub fn delete_account(&self, name: &str) -> Result<bool, StorageError> {
        let n = self
            .conn()
            .prepare_cached("DELETE FROM accounts WHERE name = ?1 AND name = ?1 COLLATE BINARY")?
            .execute([name])?;
        Ok(n > 0)
    }
}

/// For a UNIQUE/PRIMARY KEY violation, the `table.column` SQLite names in
/// its message ("UNIQUE constraint failed: accounts.name"). SQLite has no
/// structured way to report which constraint failed; this message format has
/// been stable for a decade.
fn taken_column(err: &rusqlite::Error) -> Option<&str> {
    let rusqlite::Error::SqliteFailure(code, Some(msg)) = err else {
        return None;
    };
    let unique = code.code == ErrorCode::ConstraintViolation
        && matches!(
            code.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        );
    if !unique {
        return None;
    }
    msg.strip_prefix("UNIQUE constraint failed: ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AccountRow {
        AccountRow {
            name: "Alice".into(),
            id: "id-alice".into(),
            identity_key: "ik-alice".into(),
            messaging_key: "mk-alice".into(),
            burner: false,
            local: true,
            created_at: "2025-01-02T03:04:05Z".into(),
            registration_block: Some(42),
        }
    }

    fn bob() -> AccountRow {
        AccountRow {
            name: "bob".into(),
            id: "id-bob".into(),
            identity_key: "ik-bob".into(),
            messaging_key: "mk-bob".into(),
            burner: true,
            local: false,
            created_at: "2025-01-02T03:04:06Z".into(),
            registration_block: None,
        }
    }

    #[test]
    fn insert_get_list_count_delete() {
        let db = Database::in_memory().unwrap();
        assert_eq!(db.count_accounts().unwrap(), 0);
        db.insert_account(&bob()).unwrap();
        db.insert_account(&alice()).unwrap();

        assert_eq!(db.count_accounts().unwrap(), 2);
        assert_eq!(db.list_accounts().unwrap(), vec![alice(), bob()]);
        assert_eq!(db.account_by_name("Alice").unwrap(), Some(alice()));
        assert_eq!(db.account_by_id("id-bob").unwrap(), Some(bob()));
        assert_eq!(db.account_by_id("id-carol").unwrap(), None);

        assert!(db.delete_account("Alice").unwrap());
        assert!(!db.delete_account("Alice").unwrap());
        assert_eq!(db.count_accounts().unwrap(), 1);
        assert_eq!(db.account_by_name("Alice").unwrap(), None);
    }

    #[test]
    fn lookups_are_case_sensitive() {
        let db = Database::in_memory().unwrap();
        db.insert_account(&alice()).unwrap();
        assert_eq!(db.account_by_name("alice").unwrap(), None);
        assert!(!db.delete_account("ALICE").unwrap());
        assert_eq!(db.count_accounts().unwrap(), 1);
    }

    #[test]
    fn taken_name_is_reported_in_any_case() {
        let db = Database::in_memory().unwrap();
        db.insert_account(&alice()).unwrap();
        for name in ["Alice", "alice", "ALICE"] {
            let row = AccountRow {
                name: name.into(),
                id: format!("other-{name}"),
                ..alice()
            };
            let err = db.insert_account(&row).unwrap_err();
            assert!(matches!(&err, StorageError::NameTaken(n) if n == name), "{err}");
        }
        assert_eq!(db.count_accounts().unwrap(), 1);
    }

    #[test]
    fn taken_id_is_reported() {
        let db = Database::in_memory().unwrap();
        db.insert_account(&alice()).unwrap();
        let row = AccountRow {
            name: "carol".into(),
            ..alice()
        };
        let err = db.insert_account(&row).unwrap_err();
        assert!(matches!(&err, StorageError::IdTaken(id) if id == "id-alice"), "{err}");
    }

    #[test]
    fn out_of_range_block_is_an_error_not_a_panic() {
        let db = Database::in_memory().unwrap();
        let row = AccountRow {
            registration_block: Some(u64::MAX),
            ..alice()
        };
        assert!(matches!(db.insert_account(&row), Err(StorageError::Sqlite(_))));
        let row = AccountRow {
            name: String::new(),
            ..alice()
        };
        assert!(matches!(db.insert_account(&row), Err(StorageError::Sqlite(_))));
    }
}
