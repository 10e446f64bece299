//! Tests of opening, pragmas, migrations on real files, and closing.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dchat.db");
    (dir, path)
}

fn pragma_i64(db: &Database, name: &str) -> i64 {
    db.conn().pragma_query_value(None, name, |row| row.get(0)).unwrap()
}

fn account(name: &str) -> AccountRow {
    AccountRow {
        name: name.into(),
        id: format!("id-{name}"),
        identity_key: "ik".into(),
        messaging_key: "mk".into(),
        burner: false,
        local: true,
        created_at: "2025-01-02T03:04:05Z".into(),
        registration_block: None,
    }
}

#[test]
fn pragmas_are_set_on_open() {
    let (_dir, path) = fresh();
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    let mode: String = db
        .conn()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma_i64(&db, "synchronous"), 2, "FULL by default");
    assert_eq!(pragma_i64(&db, "foreign_keys"), 1);
    assert_eq!(pragma_i64(&db, "busy_timeout"), 5000);
    assert_eq!(pragma_i64(&db, "cache_size"), -CACHE_SIZE_KIB);
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.path(), path);
}

#[test]
fn synchronous_normal_is_honoured() {
    let (_dir, path) = fresh();
    let opts = StorageOptions {
        synchronous: Synchronous::Normal,
    };
    let db = Database::open(&path, &opts).unwrap();
    assert_eq!(pragma_i64(&db, "synchronous"), 1);
}

#[test]
fn new_file_is_private() {
    let (_dir, path) = fresh();
    Database::open(&path, &StorageOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn reopen_is_idempotent_and_data_persists() {
    let (_dir, path) = fresh();
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    let id = db.get_meta(META_DATABASE_ID).unwrap().unwrap();
    db.insert_account(&account("alice")).unwrap();
    db.set_meta("network", "dev").unwrap();
    db.close().unwrap();

    for _ in 0..2 {
        let db = Database::open(&path, &StorageOptions::default()).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(migrations::pending(db.conn()).unwrap().is_empty());
        assert_eq!(db.get_meta(META_DATABASE_ID).unwrap(), Some(id.clone()));
        assert_eq!(db.get_meta("network").unwrap().as_deref(), Some("dev"));
        assert_eq!(db.list_accounts().unwrap(), vec![account("alice")]);
        db.close().unwrap();
    }
}

#[test]
fn writes_survive_without_close() {
    // A dropped Database stands in for a killed daemon: committed rows must
    // be readable from the WAL on the next open.
    let (_dir, path) = fresh();
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    db.insert_account(&account("alice")).unwrap();
    drop(db);
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    assert_eq!(db.count_accounts().unwrap(), 1);
}

#[test]
fn close_truncates_the_wal() {
    let (_dir, path) = fresh();
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    db.insert_account(&account("alice")).unwrap();
    db.close().unwrap();
    let wal = path.with_extension("db-wal");
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let (_dir, path) = fresh();
    {
        // A rollback-journal database "from the future": opening it in WAL
        // mode would rewrite its header, so any write would show.
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch("CREATE TABLE future (x INTEGER);").unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let before = std::fs::read(&path).unwrap();

    let err = Database::open(&path, &StorageOptions::default()).unwrap_err();
    assert!(
        matches!(err, StorageError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "file bytes changed");
    assert!(!path.with_extension("db-wal").exists());

    let raw = Connection::open(&path).unwrap();
    let version = migrations::current_version(&raw).unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn missing_parent_names_the_path() {
    let (dir, _) = fresh();
    let path = dir.path().join("no-such-dir").join("dchat.db");
    let err = Database::open(&path, &StorageOptions::default()).unwrap_err();
    assert!(matches!(err, StorageError::Create { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn garbage_file_is_an_open_error() {
    let (_dir, path) = fresh();
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = Database::open(&path, &StorageOptions::default()).unwrap_err();
    assert!(matches!(err, StorageError::Open { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn in_memory_is_migrated() {
    let db = Database::in_memory().unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(pragma_i64(&db, "foreign_keys"), 1);
    db.close().unwrap();
}

#[test]
fn v2_file_is_migrated_to_current_on_open() {
    let (_dir, path) = fresh();
    {
        // A database as a v2 dchatd left it.
        let raw = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..2] {
            raw.execute_batch(m.sql).unwrap();
        }
        raw.pragma_update(None, "user_version", 2).unwrap();
        raw.execute(
            "INSERT INTO accounts VALUES ('alice', 'id-alice', 'ik', 'mk', 0, 1, '2025-01-02T03:04:05Z', NULL)",
            [],
        )
        .unwrap();
    }
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.list_accounts().unwrap(), vec![account("alice")]);
    let row = RelayEnvelope {
        id: [1; 32],
        mailbox: [2; 32],
        expires_at_ms: 10,
        stored_at_ms: 0,
        ciphertext: vec![3; 8],
    };
    assert!(db.relay_store(&row, &MailboxQuota::default()).unwrap());
    db.close().unwrap();
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    assert_eq!(db.relay_envelopes(&[2; 32], 0, 10).unwrap(), vec![row]);
}
