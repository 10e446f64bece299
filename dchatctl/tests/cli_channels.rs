//! `dchatctl channel create|join|leave|invite|list|show` (and the legacy
//! `account create-channel`) against a real `dchatd --dev`: every change is
//! a transaction the dev validator makes final before the command returns.
#![allow(clippy::unwrap_used)]

mod common;

use common::{str_field, Dev};
use serde_json::{json, Value};

/// Runs `args`, expects exit 1 and one stderr line; returns that line
/// without the "dchatctl: " every error line starts with.
fn refused(dev: &Dev, args: &[&str]) -> String {
    let line = dev.fails(1, args);
    match line.strip_prefix("dchatctl: ") {
        Some(rest) => rest.to_string(),
        None => panic!("{args:?}: {line}"),
    }
}

fn members(channel: &Value) -> Vec<String> {
    channel["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members list in {channel}"))
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn create_list_show_join_and_leave() {
    let dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);

    // One local account: --owner may be left out.
    let created = dev.json(&["channel", "create", "general", "--description", "all things dchat"]);
    assert_eq!(str_field(&created, "signer"), "alice");
    let height = created["height"].as_u64().unwrap();
    assert!(height > 0, "{created}");
    let channel = &created["channel"];
    assert_eq!(str_field(channel, "name"), "general");
    assert_eq!(str_field(channel, "owner"), "alice");
    assert_eq!(channel["created_height"], height);
    assert_eq!(members(channel), ["alice"]);

    let list = dev.json(&["channel", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let listed = &list[0];
    for (key, want) in [
        ("name", json!("general")),
        ("owner", json!("alice")),
        ("description", json!("all things dchat")),
        ("invite_only", json!(false)),
        ("members", json!(["alice"])),
    ] {
        assert_eq!(listed[key], want, "{key} in {listed}");
    }
    assert_eq!(&dev.json(&["channel", "show", "general"]), listed);
    assert_eq!(
        &dev.json(&["channel", "show", "GENERAL"]),
        listed,
        "names match in any case"
    );

    let table = dev.ok(&["channel", "list"]);
    assert!(table.starts_with("CHANNEL"), "{table}");
    assert!(
        table.contains("#general") && table.contains("all things dchat"),
        "{table}"
    );
    let human = dev.ok(&["channel", "show", "#general"]);
    for needle in [
        "owner:",
        "alice",
        "members:",
        "invite-only:",
        &format!("block {height}"),
    ] {
        assert!(human.contains(needle), "show lacks {needle:?}:\n{human}");
    }

    // Two local accounts: the command has to say which one.
    dev.ok(&["account", "create", "bob"]);
    let line = refused(&dev, &["channel", "join", "general"]);
    assert!(line.contains("2 local accounts"), "{line}");

    let joined = dev.ok(&["channel", "join", "--user", "bob", "#general"]);
    assert!(joined.starts_with("bob joined #general (final in block "), "{joined}");
    assert_eq!(members(&dev.json(&["channel", "show", "general"])), ["alice", "bob"]);
    assert_eq!(dev.json(&["channel", "list"])[0]["members"], json!(["alice", "bob"]));

    let line = refused(&dev, &["channel", "join", "--user", "bob", "general"]);
    assert_eq!(line, r#"bob is already a member of channel "general""#);

    let left = dev.json(&["channel", "leave", "--user", "bob", "general"]);
    assert_eq!(members(&left["channel"]), ["alice"]);
    assert!(left["height"].as_u64().unwrap() > height);
    let line = refused(&dev, &["channel", "leave", "--user", "bob", "general"]);
    assert_eq!(line, r#"bob is not a member of channel "general""#);
}

#[test]
fn duplicate_and_missing_channels_are_refused() {
    let dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);
    dev.ok(&["channel", "create", "general"]);
    for dup in ["general", "GENERAL", "General"] {
        let line = refused(&dev, &["channel", "create", dup]);
        assert!(line.contains(&format!("{dup:?}")) && line.contains("taken"), "{line}");
    }
    // The spelling of the earlier dchat tool works, and is refused alike.
    let line = refused(&dev, &["account", "create-channel", "general", "--json"]);
    assert!(line.contains("taken"), "{line}");
    let legacy = dev.json(&[
        "account",
        "create-channel",
        "--owner",
        "alice",
        "random",
        "--invite-only",
    ]);
    assert_eq!(legacy["channel"]["invite_only"], true, "{legacy}");
    let names: Vec<Value> = dev
        .json(&["channel", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("general"), json!("random")]);

    let line = refused(&dev, &["channel", "join", "nowhere"]);
    assert_eq!(line, r#"no channel named "nowhere""#);
    let line = refused(&dev, &["channel", "show", "nowhere", "--json"]);
    assert_eq!(line, r#"no channel named "nowhere""#);
    let line = refused(&dev, &["channel", "create", "--owner", "nobody", "mine"]);
    assert!(line.contains("\"nobody\""), "{line}");
}

#[test]
fn invite_only_channels_need_an_invitation() {
    let dev = Dev::start();
    dev.ok(&["account", "create", "alice"]);
    dev.ok(&["account", "create", "bob"]);
    let club = dev.json(&["channel", "create", "--owner", "alice", "club", "--invite-only"]);
    assert_eq!(club["channel"]["invite_only"], true);

    let line = refused(&dev, &["channel", "join", "--user", "bob", "club"]);
    assert!(
        line.starts_with(r#"channel "club" is invite-only and bob has no invitation"#),
        "{line}"
    );
    let line = refused(&dev, &["channel", "invite", "--owner", "bob", "club", "bob"]);
    assert_eq!(line, r#"only the owner of channel "club" (alice) may do this"#);

    let invited = dev.ok(&["channel", "invite", "--owner", "alice", "club", "bob"]);
    assert!(invited.starts_with("alice invited bob to #club"), "{invited}");
    assert_eq!(dev.json(&["channel", "show", "club"])["invited"], json!(["bob"]));
    let line = refused(&dev, &["channel", "invite", "--owner", "alice", "club", "bob"]);
    assert_eq!(line, r#"bob is already invited to channel "club""#);

    let joined = dev.json(&["channel", "join", "--user", "bob", "club"]);
    assert_eq!(members(&joined["channel"]), ["alice", "bob"]);
    assert_eq!(
        joined["channel"]["invited"],
        json!([]),
        "joining uses the invitation up"
    );

    dev.ok(&["channel", "create", "--owner", "alice", "open"]);
    let line = refused(&dev, &["channel", "invite", "--owner", "alice", "open", "bob"]);
    assert!(line.contains("open to everyone"), "{line}");
    let line = refused(&dev, &["channel", "invite", "--owner", "alice", "club", "nobody"]);
    assert!(line.contains("\"nobody\""), "{line}");
}

#[test]
fn bad_names_are_refused_before_any_transaction() {
    let dev = Dev::start();
    // No local account at all: the daemon says how to get one.
    let line = refused(&dev, &["channel", "create", "general"]);
    assert!(line.contains("no local account"), "{line}");

    dev.ok(&["account", "create", "alice"]);
    let too_long = "c".repeat(33);
    for bad in [
        "bad name",
        "_under",
        ".dot",
        "a/b",
        "café",
        "##two",
        too_long.as_str(),
        "",
    ] {
        for args in [
            vec!["channel", "create", bad],
            vec!["channel", "join", bad],
            vec!["channel", "show", bad],
        ] {
            let line = refused(&dev, &args);
            assert!(line.starts_with("invalid channel name"), "{args:?}: {line}");
        }
    }
    let essay = "x".repeat(1025);
    let line = refused(&dev, &["channel", "create", "long", "--description", &essay]);
    assert_eq!(line, "the description is 1025 bytes, more than the limit of 1024");

    // "invalid channel name" is the daemon's own check: had a transaction
    // been built, the ledger's refusal would read "the chain refused…".
    // Nothing reached the chain, and alice's first transaction takes the
    // nonce right after her registration's.
    assert_eq!(dev.json(&["channel", "list"]), json!([]));
    let first = dev.json(&["channel", "create", "fine"]);
    let block = dev.json(&["chain", "block", &first["height"].to_string()]);
    let tx = block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"]["type"] == "create_channel")
        .unwrap_or_else(|| panic!("no create_channel in {block}"));
    assert_eq!(tx["nonce"], 1, "registration used nonce 0; nothing in between: {tx}");
}
