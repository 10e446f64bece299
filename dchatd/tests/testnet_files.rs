//! The files `dchatctl testnet init` writes, read with the daemon's own
//! parsers. dchatctl may not link dchatd, so this test is what keeps the
//! genesis format, the config keys and the node key file of the two sides
//! from drifting apart.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use dchat_testkit::bin;
use dchatd::config::{self, Flags, Role};
use dchatd::ledger::Genesis;
use dchatd::node_key;
use serde_json::Value;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

#[test]
fn testnet_init_writes_what_dchatd_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = Command::new(bin("dchatctl"))
        .args(["testnet", "init", "--json", "--block-interval-ms", "250"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "testnet init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = PathBuf::from(s(&layout, "dir"));
    let nodes = layout["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4 + 1 + 2, "default sizes: {layout}");

    // genesis.json: valid for the ledger, the validators' node keys in order.
    let genesis = Genesis::from_json(&std::fs::read(dir.join("genesis.json")).unwrap()).unwrap();
    assert_eq!(genesis.chain_id, s(&layout, "chain_id"));
    assert_eq!(genesis.block_interval_ms, 250);
    assert!(genesis.genesis_time_ms > 0);
    let validators: Vec<&Value> = nodes.iter().filter(|n| s(n, "role") == "validator").collect();
    let in_genesis: Vec<String> = genesis.validators.iter().map(|v| hex::encode(v.key)).collect();
    let expected: Vec<&str> = validators.iter().map(|n| s(n, "key")).collect();
    assert_eq!(in_genesis, expected);
    assert!(genesis.validators.iter().all(|v| v.stake > 0));

    for node in nodes {
        let name = s(node, "name");
        let path = PathBuf::from(s(node, "config"));
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let c = config::load_with_env(&flags, std::iter::empty())
            .unwrap_or_else(|e| panic!("{name}: dchatd rejects {}: {e}", path.display()));
        config::verify_system(&c).unwrap_or_else(|e| panic!("{name}: {e}"));

        let role = match s(node, "role") {
            "validator" => Role::Validator,
            "relay" => Role::Relay,
            _ => Role::User,
        };
        assert_eq!(c.roles, [role], "{name}");
        assert_eq!(c.storage.state_dir, dir.join(name), "{name}");
        assert_eq!(c.control.socket, PathBuf::from(s(node, "socket")), "{name}");
        assert_eq!(c.control.group, None, "{name}: no socket group");
        assert_eq!(c.chain.genesis, dir.join("genesis.json"), "{name}");
        assert!(c.chain.genesis.is_absolute());
        assert_eq!(c.network.listen, [s(node, "listen")], "{name}");

        // The node key the daemon loads is the one in the layout.
        let identity = node_key::load_or_create(&c.storage.state_dir).unwrap();
        assert_eq!(identity.identity_public_hex(), s(node, "key"), "{name}");
        assert_eq!(node_key::peer_id(&identity), s(node, "peer_id"), "{name}");

        // Consensus: a validator listens where the layout says; every node
        // knows where every other validator is, by the key in genesis.
        if role == Role::Validator {
            let listen: SocketAddr = s(node, "consensus").parse().unwrap();
            assert_eq!(c.chain.consensus_listen, listen, "{name}");
        }
        let peers: Vec<(String, SocketAddr)> = c.chain.peers.iter().map(|p| (hex::encode(p.key), p.addr)).collect();
        let others: Vec<(String, SocketAddr)> = validators
            .iter()
            .filter(|v| s(v, "name") != name)
            .map(|v| (s(v, "key").to_string(), s(v, "consensus").parse().unwrap()))
            .collect();
        assert_eq!(peers, others, "{name}: consensus peers");

        // Bootstrap addresses carry the peer ids the daemons will have.
        for addr in &c.network.bootstrap {
            let (_, peer) = addr.rsplit_once("/p2p/").unwrap();
            assert!(
                nodes.iter().any(|n| s(n, "peer_id") == peer && s(n, "name") != name),
                "{name}: bootstrap {addr} names no other node"
            );
        }
    }
}
