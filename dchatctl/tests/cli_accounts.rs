//! `dchatctl account create|list|show|profile` against a real `dchatd --dev`,
//! the keystore's file modes, and accounts surviving a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mode, start_on, str_field, Dev};

#[test]
fn create_human_json_and_burner() {
    let dev = Dev::start();
    let human = dev.ok(&["account", "create", "alice"]);
    assert!(human.starts_with("created account alice\n"), "{human}");
    assert!(human.contains("burner:         no"), "{human}");

    let bob = dev.json(&["account", "create", "bob"]);
    assert_eq!(str_field(&bob, "name"), "bob");
    let id = str_field(&bob, "id");
    assert_eq!(id.len(), 64, "ids are 64 hex characters: {id}");
    assert!(
        id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(bob["burner"], false);
    assert_eq!(bob["local"], true);

    let burner = dev.json(&["account", "create", "throwaway", "--burner"]);
    assert_eq!(burner["burner"], true, "{burner}");
    let human = dev.ok(&["account", "create", "throwaway2", "--burner"]);
    assert!(human.contains("burner:         yes"), "{human}");

    let ids: Vec<String> = dev.accounts().into_iter().map(|(_, id)| id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "every account has its own keys: {ids:?}");
}

#[test]
fn list_table_and_json() {
    let dev = Dev::start();
    let empty = dev.ok(&["account", "list"]);
    assert!(empty.contains("no accounts"), "{empty}");
    assert_eq!(
        dev.json(&["account", "list"]),
        serde_json::json!([]),
        "an empty list is still a list"
    );

    let alice = dev.json(&["account", "create", "alice"]);
    let carol = dev.json(&["account", "create", "carol", "--burner"]);
    let table = dev.ok(&["account", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "header + one row per account:\n{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[..2], ["NAME", "ID"], "{table}");
    for (line, account, burner) in [(lines[1], &alice, "no"), (lines[2], &carol, "yes")] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], str_field(account, "name"), "{table}");
        assert_eq!(cells[1], str_field(account, "id"), "{table}");
        assert!(cells.contains(&burner), "burner column of {line:?}");
    }

    let list = dev.json(&["account", "list"]);
    let list = list.as_array().expect("account list --json is a list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], alice, "list entries are the same objects create returned");
    assert_eq!(list[1], carol);
}

#[test]
fn show_by_name_by_id_and_profile_alias() {
    let dev = Dev::start();
    let alice = dev.json(&["account", "create", "alice"]);
    let id = str_field(&alice, "id");
    assert_eq!(dev.json(&["account", "show", "alice"]), alice);
    assert_eq!(dev.json(&["account", "show", &id]), alice, "show takes an id too");
    assert_eq!(
        dev.json(&["account", "profile", "alice"]),
        alice,
        "`account profile` is an alias of show"
    );

    let human = dev.ok(&["account", "show", &id]);
    for needle in [
        "name:",
        "alice",
        "identity key:",
        "messaging key:",
        "registered:",
        id.as_str(),
    ] {
        assert!(human.contains(needle), "show lacks {needle:?}:\n{human}");
    }
    assert_eq!(
        dev.ok(&["account", "profile", "alice"]),
        dev.ok(&["account", "show", "alice"])
    );
}

#[test]
fn duplicate_names_are_refused_in_any_case() {
    let dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);
    for dup in ["alice", "ALICE", "Alice"] {
        let line = dev.fails(1, &["account", "create", dup]);
        assert!(line.contains(&format!("{dup:?}")) && line.contains("taken"), "{line}");
        let line = dev.fails(1, &["account", "create", dup, "--burner", "--json"]);
        assert!(line.contains("taken"), "{line}");
    }
    assert_eq!(dev.accounts().len(), 1, "nothing was added");
}

#[test]
fn invalid_names_are_refused() {
    let dev = Dev::start();
    let hex_id = "ab".repeat(32);
    let too_long = "a".repeat(33);
    for bad in [
        "bad name",
        "_alice",
        ".hidden",
        "élan",
        "a/b",
        too_long.as_str(),
        hex_id.as_str(),
    ] {
        let line = dev.fails(1, &["account", "create", bad]);
        assert!(line.contains("invalid account name"), "{bad:?}: {line}");
    }
    assert!(dev.accounts().is_empty());
    // An empty name gets past clap; the daemon refuses it.
    let line = dev.fails(1, &["account", "create", ""]);
    assert!(line.contains("invalid account name"), "{line}");
}

#[test]
fn unknown_account_is_exit_1() {
    let dev = Dev::start();
    let line = dev.fails(1, &["account", "show", "nobody"]);
    assert!(line.contains("\"nobody\""), "{line}");
    let unknown_id = "0".repeat(64);
    let line = dev.fails(1, &["account", "show", &unknown_id]);
    assert!(line.contains(&unknown_id), "{line}");
    dev.fails(1, &["account", "profile", "nobody"]);
}

#[test]
fn keystore_files_are_private() {
    let dev = Dev::start();
    let alice = dev.json(&["account", "create", "alice"]);
    let burner = dev.json(&["account", "create", "b", "--burner"]);
    let state = dev.state_dir();
    let keys = state.join("keys");
    assert_eq!(mode(&keys), 0o700, "keys/ is 0700");
    assert_eq!(mode(&state.join("node.key")), 0o600, "node.key is 0600");
    let mut key_files: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
        .map(|e| {
            assert_eq!(mode(&e.path()), 0o600, "{} is 0600", e.path().display());
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    key_files.sort();
    let mut expected = vec![
        format!("{}.key", str_field(&alice, "id")),
        format!("{}.key", str_field(&burner, "id")),
    ];
    expected.sort();
    assert_eq!(key_files, expected, "one key file per account, named by id");
}

#[test]
fn restart_keeps_accounts() {
    let mut dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);
    dev.ok(&["account", "create", "bob", "--burner"]);
    let before = dev.json(&["account", "list"]);
    let peer_id = str_field(&dev.json(&["status"]), "peer_id");

    let status = dev.daemon.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert_eq!(dev.ctl(&["status"]).status.code(), Some(69), "the daemon is gone");

    dev.daemon = start_on(&dev.state_dir());
    assert_eq!(
        dev.json(&["account", "list"]),
        before,
        "same accounts, same ids, same flags"
    );
    assert_eq!(
        str_field(&dev.json(&["status"]), "peer_id"),
        peer_id,
        "the node key survives too"
    );
    assert_eq!(dev.json(&["status"])["accounts"], 2);
    // The keys came back too: export needs them.
    let pw = common::password_file(dev.dir.path(), "pw", "restart pass");
    let out = dev.dir.path().join("alice.id");
    dev.ok(&[
        "account",
        "export",
        "alice",
        "--output",
        out.to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
    ]);
}
