//! The chain across real processes: a 4-validator testnet made and run by
//! `dchatctl testnet`, consensus over TCP on 127.0.0.1, accounts registered
//! on one node and seen or refused on others, and a validator killed with
//! SIGKILL while the rest keep finalizing, then restarted to catch up.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::testnet::{height, json_on, ok, on, wait_height, Net};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn block_hash(dir: &Path, node: &str, h: u64) -> String {
    json_on(dir, node, &["chain", "block", &h.to_string()])["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

const ALL: [&str; 4] = ["validator1", "validator2", "validator3", "validator4"];

#[test]
fn four_validators_agree_survive_a_kill_and_catch_up() {
    let net = Net::up(&[
        "--validators",
        "4",
        "--relays",
        "0",
        "--users",
        "0",
        "--block-interval-ms",
        "300",
    ]);
    let dir = net.dir.clone();
    let d = net.d();
    wait_height(&dir, &ALL, 2, Duration::from_secs(60));

    // Registered on validator1, seen with the same block on validator2,
    // and the name is taken on validator3.
    let created = json_on(&dir, "validator1", &["account", "create", "alice"]);
    let at = created["registration_block"].as_u64().expect("registered on chain");
    wait_height(&dir, &["validator2"], at, Duration::from_secs(20));
    let seen = json_on(&dir, "validator2", &["account", "show", "alice"]);
    assert_eq!(seen["registration_block"].as_u64(), Some(at));
    assert_eq!(seen["id"], created["id"]);
    assert_eq!(seen["local"], false);
    let taken = on(&dir, "validator3", &["account", "create", "alice"]);
    assert_eq!(
        taken.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(String::from_utf8_lossy(&taken.stderr).contains("taken"));

    // SIGKILL one validator: 3 of 4 still make a quorum and keep finalizing.
    let pid: i32 = std::fs::read_to_string(dir.join("validator4/dchatd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let before = height(&dir, "validator1");
    let live = ["validator1", "validator2", "validator3"];
    wait_height(&dir, &live, before + 5, Duration::from_secs(30));

    // Restarted on its own state, it catches up with the others.
    ok(&["testnet", "up", &d, "validator4"]);
    let target = height(&dir, "validator1");
    wait_height(&dir, &["validator4"], target, Duration::from_secs(60));

    // Every node holds the same block at every height.
    let top = ALL.iter().map(|n| height(&dir, n)).min().unwrap();
    for h in 1..=top {
        let reference = block_hash(&dir, "validator1", h);
        for node in &ALL[1..] {
            assert_eq!(block_hash(&dir, node, h), reference, "{node} differs at height {h}");
        }
    }
    ok(&["testnet", "down", &d]);
}
