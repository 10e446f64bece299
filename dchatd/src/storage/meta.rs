//! The `meta` table: small facts about the database itself.

use rusqlite::OptionalExtension;

use super::{Database, StorageError};

/// RFC 3339 time the database was created; written by migration 1.
pub const META_CREATED_AT: &str = "created_at";

/// 32 lowercase hex digits drawn when the database was created; written by
/// migration 1. Tells networks and backups apart: a restored backup keeps
/// it, a fresh database gets a new one.
pub const META_DATABASE_ID: &str = "database_id";

impl Database {
    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?)
    }

    /// Inserts or replaces `key`.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_replace() {
        let db = Database::in_memory().unwrap();
        assert_eq!(db.get_meta("network").unwrap(), None);
        db.set_meta("network", "dev").unwrap();
        assert_eq!(db.get_meta("network").unwrap().as_deref(), Some("dev"));
        db.set_meta("network", "main").unwrap();
        assert_eq!(db.get_meta("network").unwrap().as_deref(), Some("main"));
    }

    #[test]
    fn fresh_database_records_identity() {
        let db = Database::in_memory().unwrap();
        let id = db.get_meta(META_DATABASE_ID).unwrap().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let other = Database::in_memory().unwrap();
        assert_ne!(other.get_meta(META_DATABASE_ID).unwrap().unwrap(), id);

        let created = db.get_meta(META_CREATED_AT).unwrap().unwrap();
        assert!(humantime::parse_rfc3339(&created).is_ok(), "{created}");
    }
}
