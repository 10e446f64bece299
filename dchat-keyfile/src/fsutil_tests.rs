//! Tests for `write_private_file` and `read_password_file`.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn write_private_file_is_0600_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    write_private_file(&path, b"secret", false).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"secret");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(entries(dir.path()), ["alice.key"]);
}

#[test]
fn write_private_file_refuses_existing_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    fs::write(&path, b"old").unwrap();
    let err = write_private_file(&path, b"new", false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("alice.key"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["alice.key"]);
}

#[test]
fn write_private_file_refuses_dangling_symlink() {
    // A symlink planted under the final name must not be followed or replaced.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
    let err = write_private_file(&path, b"new", false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn write_private_file_overwrites_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    fs::write(&path, b"old").unwrap();
    fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    write_private_file(&path, b"new", true).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(entries(dir.path()), ["alice.key"]);
}

#[test]
fn write_private_file_leaves_nothing_when_dir_unusable() {
    // Root ignores directory permissions, so make the parent unusable in a
    // way that holds for every user: missing, or a regular file.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("alice.key");
    assert!(write_private_file(&missing, b"secret", false).is_err());
    assert!(!missing.exists());

    let not_a_dir = dir.path().join("plain-file");
    fs::write(&not_a_dir, b"").unwrap();
    let under_file = not_a_dir.join("alice.key");
    for overwrite in [false, true] {
        let err = write_private_file(&under_file, b"secret", overwrite).unwrap_err();
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
    assert_eq!(entries(dir.path()), ["plain-file"]);
}

#[test]
fn write_private_file_removes_temp_when_publishing_fails() {
    // The temp file is written, then renaming it over a non-empty directory
    // fails: the temp must go and the directory must be untouched.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"").unwrap();
    let err = write_private_file(&path, b"secret", true).unwrap_err();
    assert!(err.to_string().contains("alice.key"), "{err}");
    assert_eq!(entries(dir.path()), ["alice.key"]);
    assert_eq!(entries(&path), ["inside"]);
}

#[test]
fn write_private_file_needs_a_file_name() {
    for path in ["", "/", "keys/.."] {
        let err = write_private_file(Path::new(path), b"x", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{path:?}");
    }
}

fn password_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    fs::write(&path, content).unwrap();
    (dir, path)
}

#[test]
fn read_password_file_takes_first_line() {
    for (content, want) in [
        (&b"hunter2\n"[..], "hunter2"),
        (b"hunter2", "hunter2"),
        (b"hunter2\r\n", "hunter2"),
        (b"hunter2\nsecond line\n", "hunter2"),
        (b" spaced pass \n", " spaced pass "),
    ] {
        let (_dir, path) = password_file(content);
        assert_eq!(read_password_file(&path).unwrap().as_str(), want);
    }
}

#[test]
fn read_password_file_rejects_empty() {
    for content in [&b""[..], b"\n", b"\r\n", b"\nsecond"] {
        let (_dir, path) = password_file(content);
        let got = read_password_file(&path);
        assert!(matches!(got, Err(KeyError::EmptyPassword)), "{content:?}: {got:?}");
    }
}

#[test]
fn read_password_file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-pw");
    match read_password_file(&path) {
        Err(KeyError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            assert!(e.to_string().contains("missing-pw"), "{e}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    let (_dir, long) = password_file(&vec![b'a'; 70 * 1024]);
    assert!(matches!(read_password_file(&long), Err(KeyError::Malformed(_))));
    let (_dir, latin1) = password_file(b"caf\xe9\n");
    assert!(matches!(read_password_file(&latin1), Err(KeyError::Malformed(_))));
}
