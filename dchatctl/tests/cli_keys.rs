//! Identity files: `keygen` (offline), `account export` and `account import`
//! with `--password-file`, against real `dchatd --dev` processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{fails, mode, nowhere, ok, password_file, str_field, Dev};
use dchat_testkit::ctl;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn export_import_round_trip() {
    let dev = Dev::start();
    let alice = dev.json(&["account", "create", "alice"]);
    let id = str_field(&alice, "id");
    let pw = password_file(dev.dir.path(), "pw", "correct horse battery staple");
    let file = dev.dir.path().join("alice.id");

    let human = dev.ok(&[
        "account",
        "export",
        "alice",
        "--output",
        p(&file),
        "--password-file",
        p(&pw),
    ]);
    assert!(human.contains(&id) && human.contains("0600"), "{human}");
    assert_eq!(mode(&file), 0o600, "exported identity files are 0600");
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("correct horse"),
        "the password is not in the file"
    );

    // Existing output: refused without --force, replaced with it.
    let line = dev.fails(
        1,
        &[
            "account",
            "export",
            "alice",
            "--output",
            p(&file),
            "--password-file",
            p(&pw),
        ],
    );
    assert!(line.contains("exists") && line.contains("--force"), "{line}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the refused export left the file alone"
    );
    let j = dev.json(&[
        "account",
        "export",
        &id,
        "--output",
        p(&file),
        "--password-file",
        p(&pw),
        "--force",
    ]);
    assert_eq!(str_field(&j, "id"), id, "export by id, --json: {j}");
    assert_eq!(str_field(&j, "name"), "alice");

    // Same keys under another name on the same daemon: AlreadyExists, since
    // an account is its keys; nothing is added.
    let line = dev.fails(
        1,
        &[
            "account",
            "import",
            p(&file),
            "--password-file",
            p(&pw),
            "--name",
            "alice2",
        ],
    );
    assert!(
        line.contains("\"alice\"") && line.contains(&id),
        "names the account that holds these keys: {line}"
    );
    assert_eq!(dev.accounts(), vec![("alice".to_string(), id.clone())]);

    // A second, fresh daemon takes the file: same id, same keys.
    let other = Dev::start();
    let imported = other.json(&["account", "import", p(&file), "--password-file", p(&pw)]);
    assert_eq!(imported["id"], alice["id"]);
    assert_eq!(imported["identity_key"], alice["identity_key"]);
    assert_eq!(imported["messaging_key"], alice["messaging_key"]);
    assert_eq!(imported["name"], "alice", "the name recorded in the file");
    assert_eq!(other.json(&["account", "show", &id])["name"], "alice");
}

#[test]
fn keygen_offline_then_import() {
    let dir = tempfile::tempdir().unwrap();
    let no_daemon = nowhere(dir.path());
    let pw = password_file(dir.path(), "pw", "s3cret");
    let file = dir.path().join("carol.id");
    let keygen = |extra: &[&'static str]| {
        let mut args = vec!["keygen", "--output", p(&file), "--password-file", p(&pw)];
        args.extend_from_slice(extra);
        let out = ctl(&no_daemon, &args);
        (args, out)
    };

    let (args, out) = keygen(&["--name", "carol", "--json"]);
    let first: serde_json::Value = serde_json::from_str(&ok(&args, &out)).unwrap();
    assert_eq!(first["name"], "carol");
    assert_eq!(first["burner"], false);
    assert_eq!(str_field(&first, "id").len(), 64);
    assert_eq!(mode(&file), 0o600, "keygen writes 0600");
    assert!(!no_daemon.exists(), "keygen never touched a socket");

    // An existing file is refused without --force, and left as it was.
    let before = std::fs::read(&file).unwrap();
    let (args, out) = keygen(&["--name", "carol"]);
    let line = fails(1, &args, &out);
    assert!(line.contains("exists") && line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    let (args, out) = keygen(&["--name", "carol", "--burner", "--force"]);
    let human = ok(&args, &out);
    assert!(human.starts_with("wrote burner identity "), "{human}");
    assert_eq!(mode(&file), 0o600);
    assert_ne!(std::fs::read(&file).unwrap(), before, "--force replaced the file");

    // The file imports; its id is the one keygen printed.
    let dev = Dev::start();
    let imported = dev.json(&["account", "import", p(&file), "--password-file", p(&pw)]);
    assert_eq!(imported["name"], "carol");
    assert_eq!(imported["burner"], true, "the burner flag travels in the file");
    let printed_id = human.split_whitespace().nth(3).unwrap();
    assert_eq!(str_field(&imported, "id"), printed_id, "{human}");
}

#[test]
fn keygen_without_a_name_needs_one_on_import() {
    let dev = Dev::start();
    let pw = password_file(dev.dir.path(), "pw", "pw");
    let file = dev.dir.path().join("anon.id");
    let args = ["keygen", "--output", p(&file), "--password-file", p(&pw), "--json"];
    let made: serde_json::Value = serde_json::from_str(&ok(&args, &ctl(&nowhere(dev.dir.path()), &args))).unwrap();
    assert!(made["name"].is_null(), "{made}");
    let line = dev.fails(2, &["account", "import", p(&file), "--password-file", p(&pw)]);
    assert!(line.contains("--name"), "{line}");
    let imported = dev.json(&[
        "account",
        "import",
        p(&file),
        "--password-file",
        p(&pw),
        "--name",
        "dave",
    ]);
    assert_eq!(imported["id"], made["id"]);
}

#[test]
fn wrong_password_imports_nothing() {
    let dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);
    let right = password_file(dev.dir.path(), "right", "right password");
    let wrong = password_file(dev.dir.path(), "wrong", "wrong password");
    let file = dev.dir.path().join("alice.id");
    dev.ok(&[
        "account",
        "export",
        "alice",
        "--output",
        p(&file),
        "--password-file",
        p(&right),
    ]);

    let fresh = Dev::start();
    let line = fresh.fails(1, &["account", "import", p(&file), "--password-file", p(&wrong)]);
    assert!(line.contains("password"), "the message mentions the password: {line}");
    assert!(fresh.accounts().is_empty(), "nothing was written");
    let keys: Vec<_> = std::fs::read_dir(fresh.state_dir().join("keys")).unwrap().collect();
    assert!(keys.is_empty(), "no key file either: {keys:?}");

    // A file that is not an identity file at all.
    let line = fresh.fails(1, &["account", "import", p(&wrong), "--password-file", p(&right)]);
    assert!(!line.is_empty());
    assert!(fresh.accounts().is_empty());
    // The right password still works afterwards.
    fresh.ok(&["account", "import", p(&file), "--password-file", p(&right)]);
}
