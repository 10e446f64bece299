//! Tests of snapshot, verify, install and undo on real files.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::storage::backup::{begin_snapshot, remove_stale_temp_files, TempFile};
use crate::storage::{AccountRow, Database, StorageOptions};

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

fn live(dir: &Path) -> (PathBuf, Database) {
    let path = dir.join("dchat.sqlite3");
    let db = Database::open(&path, &StorageOptions::default()).unwrap();
    (path, db)
}

/// A snapshot of the database at `path` in a temp file beside it.
fn snapshot(path: &Path) -> TempFile {
    let source = begin_snapshot(path, None).unwrap();
    let (file, _) = TempFile::create(path, "backup").unwrap();
    let snap = source.copy_to(file, &AtomicBool::new(false), |_, _| {}).unwrap();
    snap.file
}

fn names(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM accounts ORDER BY name").unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[test]
fn snapshot_is_fixed_when_it_begins_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = live(dir.path());
    db.insert_account(&account("alice")).unwrap();
    let source = begin_snapshot(&path, None).unwrap();
    // Written after the snapshot began: not in it, and no restart either.
    db.insert_account(&account("bob")).unwrap();
    let (file, _) = TempFile::create(&path, "backup").unwrap();
    let mut steps = 0;
    let snap = source
        .copy_to(file, &AtomicBool::new(false), |done, total| {
            steps += 1;
            assert!(done <= total);
        })
        .unwrap();
    assert!(steps >= 1);
    assert_eq!(snap.bytes, snap.page_size * snap.pages);
    let c = verify(snap.file.path()).unwrap();
    assert_eq!(c.bytes, snap.bytes);
    assert_eq!(c.schema_version, SCHEMA_VERSION);
    assert_eq!(c.database_id, db.get_meta(META_DATABASE_ID).unwrap().unwrap());
    let accounts = c.tables.iter().find(|(n, _)| n == "accounts").unwrap();
    assert_eq!(accounts.1, 1, "bob came after the snapshot began");
    assert_eq!(names(snap.file.path()), ["alice"]);
}

#[test]
fn cancelled_snapshot_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _db) = live(dir.path());
    let source = begin_snapshot(&path, None).unwrap();
    let (file, _) = TempFile::create(&path, "backup").unwrap();
    let temp = file.path().to_owned();
    let err = source.copy_to(file, &AtomicBool::new(true), |_, _| {}).unwrap_err();
    assert!(matches!(err, crate::storage::StorageError::Cancelled), "{err}");
    assert!(!temp.exists(), "the temporary file goes with the failure");
}

#[test]
fn verify_refuses_what_is_not_a_whole_dchat_database() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = live(dir.path());
    db.insert_account(&account("alice")).unwrap();
    let good = snapshot(&path);
    let bytes = std::fs::read(good.path()).unwrap();
    let write = |name: &str, content: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let invalid = |p: &Path| match verify(p) {
        Err(RestoreError::Invalid(why)) => why,
        other => panic!("{}: {other:?}", p.display()),
    };

    assert!(invalid(&write("empty", b"")).contains("only 0 bytes"));
    assert!(invalid(&write("text", &[b'x'; 4096])).contains("not a SQLite database"));
    // Cut at a page boundary, whatever the page count, so that only the
    // header's page count gives the truncation away.
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        p => usize::from(p),
    };
    let half = write("half", &bytes[..bytes.len() / page / 2 * page]);
    assert!(
        invalid(&half).contains("truncated: the header says"),
        "{}",
        invalid(&half)
    );
    let ragged = write("ragged", &bytes[..bytes.len() - 1]);
    assert!(invalid(&ragged).contains("whole number"));

    // A SQLite database, but not one of ours.
    let plain = dir.path().join("plain.db");
    Connection::open(&plain)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(invalid(&plain).contains("no schema version"));
    let versioned = dir.path().join("versioned.db");
    {
        let conn = Connection::open(&versioned).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    assert!(invalid(&versioned).contains("no meta table"));

    let newer = write("newer", &bytes);
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    assert!(matches!(
        verify(&newer),
        Err(RestoreError::SchemaTooNew { found, supported }) if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
    ));

    // A damaged page in the middle: integrity_check finds it.
    let mut damaged = bytes.clone();
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        p => usize::from(p),
    };
    let last = damaged.len() - page;
    for b in damaged.iter_mut().skip(last).take(page) {
        *b = 0xa5;
    }
    let damaged = write("damaged", &damaged);
    assert!(verify(&damaged).is_err());

    // The original still verifies, and verifying changed nothing.
    assert!(verify(good.path()).is_ok());
    assert_eq!(std::fs::read(good.path()).unwrap(), bytes);
}

#[test]
fn network_must_match_unless_forced() {
    let mut c = Candidate {
        bytes: 0,
        schema_version: 1,
        database_id: "d".into(),
        chain_id: Some("dev".into()),
        genesis_hash: Some("aa".into()),
        created_at: String::new(),
        tables: Vec::new(),
    };
    assert!(check_network(&c, Some("dev"), Some("aa"), false).is_ok());
    assert!(
        check_network(&c, None, None, false).is_ok(),
        "a live database bound to nothing takes any"
    );
    let err = check_network(&c, Some("main"), Some("bb"), false).unwrap_err();
    assert!(
        matches!(&err, RestoreError::WrongNetwork { expected, found } if expected.starts_with("main") && found.starts_with("dev")),
        "{err}"
    );
    assert!(check_network(&c, Some("main"), Some("bb"), true).is_ok());
    c.genesis_hash = None;
    assert!(matches!(
        check_network(&c, Some("main"), Some("bb"), false),
        Err(RestoreError::WrongNetwork { found, .. }) if found == "none"
    ));
}

#[test]
fn install_keeps_the_previous_database_and_undo_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = live(dir.path());
    db.insert_account(&account("alice")).unwrap();
    let backup = snapshot(&path);
    db.insert_account(&account("bob")).unwrap();
    db.close().unwrap();

    let previous = install(backup.path(), &path).unwrap().unwrap();
    backup.keep();
    assert_eq!(names(&path), ["alice"]);
    assert_eq!(names(&previous), ["alice", "bob"]);
    assert_eq!(
        kept_files(&path),
        vec![(previous.clone(), std::fs::metadata(&previous).unwrap().len())]
    );
    assert!(previous.to_string_lossy().contains(".pre-restore-"));

    undo_install(&path, Some(&previous)).unwrap();
    assert_eq!(names(&path), ["alice", "bob"]);
    assert!(kept_files(&path).is_empty());
}

#[test]
fn install_refuses_a_live_database_with_a_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = live(dir.path());
    let backup = snapshot(&path);
    db.insert_account(&account("bob")).unwrap();
    // Still open: its WAL holds bob.
    let err = install(backup.path(), &path).unwrap_err();
    assert!(err.to_string().contains("write-ahead log"), "{err}");
    assert!(kept_files(&path).is_empty());
    assert_eq!(db.count_accounts().unwrap(), 1);
}

#[test]
fn install_into_an_empty_directory_and_stale_temp_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _db) = live(dir.path());
    let backup = snapshot(&src);
    let other = tempfile::tempdir().unwrap();
    let target = other.path().join("dchat.sqlite3");
    assert_eq!(install(backup.path(), &target).unwrap(), None);
    backup.keep();
    assert!(verify(&target).is_ok());

    let (left, _) = TempFile::create(&target, "restore").unwrap();
    let left_path = left.path().to_owned();
    left.keep();
    std::fs::write(other.path().join("unrelated.tmp-file"), b"x").unwrap();
    remove_stale_temp_files(&target);
    assert!(!left_path.exists());
    assert!(other.path().join("unrelated.tmp-file").exists());
    assert!(target.exists());
}
