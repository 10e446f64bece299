//! `dchatctl testnet init|up|down|status` with real dchatd processes.
//!
//! That the files `init` writes are what dchatd accepts is checked on the
//! daemon's side, with its own parsers, in dchatd/tests/testnet_files.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{fails, mode, ok};
use dchat_testkit::bin;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// One testnet directory; every node still running is killed on drop.
struct Testnet {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Testnet {
    /// `testnet init` with `args`; returns the layout it printed.
    fn init(args: &[&str]) -> (Testnet, Value) {
        let tmp = tempfile::tempdir().unwrap();
        let net = Testnet {
            dir: tmp.path().join("net"),
            _tmp: tmp,
        };
        let layout = net.json(&[&["init"], args].concat());
        (net, layout)
    }

    /// `dchatctl testnet SUB DIR ARGS…`.
    fn run(&self, sub_and_args: &[&str], env: &[(&str, &str)]) -> Output {
        let (sub, args) = sub_and_args.split_first().unwrap();
        let mut cmd = Command::new(bin("dchatctl"));
        cmd.arg("testnet").arg(sub).arg(&self.dir).args(args);
        cmd.env_remove("DCHATD_BIN").envs(env.iter().copied());
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(args, &self.run(args, &[]))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = self.ok(&with_json);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("testnet {with_json:?} printed no JSON ({e}):\n{out}"))
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    fn pid_file(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("dchatd.pid")
    }

    /// `status --json`, by node name.
    fn status(&self) -> Vec<(String, Value)> {
        let list = self.json(&["status"]);
        list.as_array()
            .unwrap_or_else(|| panic!("status --json is not a list: {list}"))
            .iter()
            .map(|row| (row["node"].as_str().unwrap().to_string(), row.clone()))
            .collect()
    }

    fn status_of(&self, node: &str) -> Value {
        self.status()
            .into_iter()
            .find(|(n, _)| n == node)
            .unwrap_or_else(|| panic!("status lacks {node}"))
            .1
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(pid) = std::fs::read_to_string(entry.path().join("dchatd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                if alive(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Whether `pid` is a live process; a zombie (left to a container init
/// that does not reap) is not.
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !matches!(
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next()),
        Some("Z" | "X") | None
    )
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive 10 s after SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_of(v: &Value) -> i32 {
    i32::try_from(v["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {v}"))).unwrap()
}

/// `(node, state)` pairs of an `up --json` or `down --json` list.
fn states(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| {
            (
                o["node"].as_str().unwrap().to_string(),
                o["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

#[test]
fn init_writes_genesis_keys_and_a_config_per_node() {
    let (net, layout) = Testnet::init(&["--validators", "3", "--relays", "1", "--users", "2"]);
    let nodes = layout["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| str_of(n, "name")).collect();
    assert_eq!(
        names,
        ["validator1", "validator2", "validator3", "relay1", "user1", "user2"]
    );
    assert!(str_of(&layout, "chain_id").starts_with("dchat-testnet-"), "{layout}");

    // Every port is distinct; validators alone have a consensus port.
    let mut ports = BTreeSet::new();
    for n in nodes {
        assert!(ports.insert(n["p2p_port"].as_u64().unwrap()), "{layout}");
        let is_validator = str_of(n, "role") == "validator";
        assert_eq!(n["consensus_port"].is_u64(), is_validator, "{n}");
        if let Some(p) = n["consensus_port"].as_u64() {
            assert!(ports.insert(p), "{layout}");
        }
    }

    for n in nodes {
        let name = str_of(n, "name");
        let dir = net.node_dir(name);
        assert_eq!(str_of(n, "socket"), dir.join("dchatd.sock").to_str().unwrap());
        assert_eq!(mode(&dir), 0o700, "{name}'s state dir");
        assert_eq!(mode(&dir.join("node.key")), 0o600, "{name}'s node.key");
        // The key in the layout is the one in node.key.
        let (identity, burner) =
            dchat_keyfile::from_keystore_json(&std::fs::read(dir.join("node.key")).unwrap()).unwrap();
        assert!(!burner);
        assert_eq!(identity.identity_public_hex(), str_of(n, "key"));
        let config = std::fs::read_to_string(dir.join("dchatd.toml")).unwrap();
        let role = str_of(n, "role");
        assert!(config.contains(&format!("roles = [\"{role}\"]")), "{config}");
        assert!(
            config.contains(&format!("state_dir = \"{}\"", dir.display())),
            "{config}"
        );
    }

    // genesis.json names exactly the validators' node keys.
    let genesis: Value = serde_json::from_slice(&std::fs::read(net.dir.join("genesis.json")).unwrap()).unwrap();
    let in_genesis: Vec<&str> = genesis["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "key"))
        .collect();
    let validator_keys: Vec<&str> = nodes
        .iter()
        .filter(|n| str_of(n, "role") == "validator")
        .map(|n| str_of(n, "key"))
        .collect();
    assert_eq!(in_genesis, validator_keys);
    assert_eq!(genesis["chain_id"], layout["chain_id"]);
    assert_eq!(genesis["block_interval_ms"], 1000);

    // Human output: the layout as a table.
    let (net2, _) = Testnet::init(&["--validators", "1", "--relays", "0", "--users", "0"]);
    let human = net2.ok(&["init", "--force", "--validators", "1", "--relays", "0", "--users", "0"]);
    assert!(human.contains("NODE") && human.contains("validator1"), "{human}");
    assert!(!human.contains("relay1"), "{human}");
}

#[test]
fn init_refuses_a_non_empty_dir_unless_forced_and_force_spares_other_files() {
    let (net, first) = Testnet::init(&["--validators", "2", "--users", "1"]);
    let err = fails(1, &["init"], &net.run(&["init"], &[]));
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");

    std::fs::write(net.dir.join("notes.txt"), "mine").unwrap();
    let second = net.json(&["init", "--force", "--validators", "1", "--relays", "0", "--users", "0"]);
    assert_ne!(second["chain_id"], first["chain_id"]);
    assert_eq!(second["nodes"].as_array().unwrap().len(), 1);
    // The old testnet's folders are gone, the user's file is not.
    for old in ["validator2", "relay1", "user1"] {
        assert!(!net.node_dir(old).exists(), "{old} survived --force");
    }
    assert_eq!(std::fs::read_to_string(net.dir.join("notes.txt")).unwrap(), "mine");

    let out = net.run(&["init", "--force", "--validators", "0"], &[]);
    assert_eq!(out.status.code(), Some(2), "--validators 0 is a usage error");
}

#[test]
fn up_status_down_of_all_and_of_named_nodes() {
    let (net, layout) = Testnet::init(&[
        "--validators",
        "1",
        "--relays",
        "1",
        "--users",
        "1",
        "--block-interval-ms",
        "200",
    ]);
    let all = ["validator1", "relay1", "user1"];
    let t = Instant::now();
    let up = net.json(&["up", "--timeout", "30"]);
    eprintln!("up of 3 nodes: {:?}", t.elapsed());
    assert_eq!(
        states(&up),
        pairs(&[("validator1", "ready"), ("relay1", "ready"), ("user1", "ready")])
    );
    for (o, node) in up.as_array().unwrap().iter().zip(all) {
        let pid = pid_of(o);
        assert!(alive(pid), "{node}");
        let recorded: i32 = std::fs::read_to_string(net.pid_file(node))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(recorded, pid, "{node}'s pid file");
        assert!(net.node_dir(node).join("dchatd.sock").exists(), "{node}'s socket");
        assert!(net.node_dir(node).join("dchatd.log").exists(), "{node}'s log");
        // Its own session: the shell that ran `up` can go away.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let session: i32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(session, pid, "{node} leads its own session");
    }
    // No notify socket is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&net.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".notify"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // status: every node running, with its pid, height and peers; the
    // chain may not move yet (height 0 until consensus produces blocks).
    for (node, row) in net.status() {
        assert_eq!(row["running"], true, "{node}: {row}");
        assert_eq!(row["ready"], true, "{node}: {row}");
        assert!(row["height"].is_u64() && row["peers"].is_u64(), "{node}: {row}");
        let started = up
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["node"] == node.as_str())
            .unwrap();
        assert_eq!(row["pid"], started["pid"], "{node}");
        assert_eq!(
            str_of(&row, "role"),
            node.trim_end_matches(|c: char| c.is_ascii_digit())
        );
    }
    let human = net.ok(&["status"]);
    let header = human.lines().next().unwrap();
    for col in ["NODE", "ROLE", "PID", "HEIGHT", "PEERS"] {
        assert!(header.contains(col), "{human}");
    }

    // up again: nothing to start.
    let again = net.json(&["up", "validator1"]);
    assert_eq!(states(&again), pairs(&[("validator1", "already_running")]));

    // down one node; the others keep running.
    let relay_pid = pid_of(&net.status_of("relay1"));
    let down = net.json(&["down", "relay1"]);
    assert_eq!(states(&down), pairs(&[("relay1", "stopped")]));
    assert!(!alive(relay_pid));
    assert!(!net.pid_file("relay1").exists());
    let relay = net.status_of("relay1");
    assert_eq!(relay["running"], false, "{relay}");
    assert!(
        relay["pid"].is_null() && relay["height"].is_null() && relay["peers"].is_null(),
        "{relay}"
    );
    assert!(net
        .ok(&["status"])
        .lines()
        .any(|l| l.starts_with("relay1") && l.contains("stopped")));
    assert_eq!(net.status_of("validator1")["running"], true);

    // up one named node.
    let up_relay = net.json(&["up", "relay1"]);
    assert_eq!(states(&up_relay), pairs(&[("relay1", "ready")]));
    assert_ne!(pid_of(&up_relay[0]), relay_pid);
    assert_eq!(net.status_of("relay1")["running"], true);

    // A node killed behind our back shows as stopped.
    let user_pid = pid_of(&net.status_of("user1"));
    kill(Pid::from_raw(user_pid), Signal::SIGKILL).unwrap();
    wait_gone(user_pid);
    let user = net.status_of("user1");
    assert_eq!(user["running"], false, "{user}");
    assert!(user["pid"].is_null(), "{user}");

    // down of all: the killed one was not running; the pid files go.
    let pids: Vec<i32> = ["validator1", "relay1"]
        .iter()
        .map(|n| pid_of(&net.status_of(n)))
        .collect();
    let t = Instant::now();
    let down = net.json(&["down"]);
    eprintln!("down of 2 nodes: {:?}", t.elapsed());
    assert_eq!(
        states(&down),
        pairs(&[
            ("validator1", "stopped"),
            ("relay1", "stopped"),
            ("user1", "not_running")
        ])
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived down");
    }
    for node in all {
        assert!(!net.pid_file(node).exists(), "{node}'s pid file");
        assert_eq!(net.status_of(node)["running"], false);
    }
    assert_eq!(layout["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn default_testnet_of_four_validators_comes_up_and_down() {
    let (net, layout) = Testnet::init(&["--block-interval-ms", "200"]);
    assert_eq!(layout["nodes"].as_array().unwrap().len(), 4 + 1 + 2);
    let t = Instant::now();
    let up = net.json(&["up"]);
    eprintln!("up of 7 nodes: {:?}", t.elapsed());
    assert!(states(&up).iter().all(|(_, s)| s == "ready"), "{up}");
    let status = net.status();
    assert!(status.iter().all(|(_, row)| row["running"] == true), "{status:?}");
    let down = net.json(&["down"]);
    assert!(states(&down).iter().all(|(_, s)| s == "stopped"), "{down}");
}

#[test]
fn up_reports_a_node_that_exits_before_ready_with_its_log() {
    let (net, _) = Testnet::init(&["--validators", "1", "--relays", "0", "--users", "1"]);
    let config = net.node_dir("user1").join("dchatd.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[storage]\nno_such_key = 1\n");
    std::fs::write(&config, text).unwrap();

    let out = net.run(&["up", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(states(&report), pairs(&[("validator1", "ready"), ("user1", "exited")]));
    assert!(report[1]["pid"].is_null());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("user1: dchatd exited with status 78 before READY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("| ") && stderr.contains("dchatd.toml"),
        "the log's last lines:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("dchatctl: 1 of 2 nodes did not become ready"),
        "{stderr}"
    );
    assert!(!net.pid_file("user1").exists());
    net.ok(&["down"]);
}

/// A stand-in for dchatd that never sends READY and ignores SIGTERM; its
/// command line holds the config path, as dchatd's does.
fn stubborn_daemon(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("stubborn-dchatd");
    std::fs::write(
        &path,
        "#!/bin/sh\ntrap '' TERM\necho \"stubborn start $*\"\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn up_times_out_then_down_kills_what_ignores_sigterm() {
    let (net, _) = Testnet::init(&["--validators", "1", "--relays", "0", "--users", "0"]);
    let fake = stubborn_daemon(net._tmp.path());
    let t = Instant::now();
    let out = net.run(&["up", "--timeout", "1"], &[("DCHATD_BIN", fake.to_str().unwrap())]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validator1: no READY within 1 s; still running"),
        "{stderr}"
    );
    assert!(stderr.contains("| stubborn start --config"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT READY"));
    assert!(
        net.pid_file("validator1").exists(),
        "a node left running keeps its pid file"
    );
    assert_eq!(net.status_of("validator1")["running"], true);

    let t = Instant::now();
    let down = net.json(&["down", "--timeout", "1"]);
    assert!(t.elapsed() >= Duration::from_secs(1), "SIGKILL only after the timeout");
    assert_eq!(states(&down), pairs(&[("validator1", "killed")]));
    assert!(!net.pid_file("validator1").exists());
}

#[test]
fn unknown_nodes_and_directories_are_clear_errors() {
    let (net, _) = Testnet::init(&["--validators", "1", "--relays", "0", "--users", "0"]);
    let err = fails(2, &["up", "validator9"], &net.run(&["up", "validator9"], &[]));
    assert!(
        err.contains("no node \"validator9\"") && err.contains("validator1"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin("dchatctl"))
        .args(["testnet", "status"])
        .arg(empty.path())
        .output()
        .unwrap();
    let err = fails(1, &["testnet", "status"], &out);
    assert!(
        err.contains("is not a testnet") && err.contains("testnet init"),
        "{err}"
    );

    let out = net.run(&["up"], &[("DCHATD_BIN", "/nonexistent/dchatd")]);
    let err = fails(1, &["up"], &out);
    assert!(err.contains("DCHATD_BIN"), "{err}");
}
