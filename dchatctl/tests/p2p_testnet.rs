//! The chat itself across real processes: testnets made by `dchatctl
//! testnet`, libp2p on 127.0.0.1, users on their own nodes following the
//! chain, direct messages end to end (online, and through a relay's
//! mailbox while the recipient is away, and through a relay circuit
//! between two users neither of which can be dialled), and channels across
//! three nodes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::testnet::{
    enable_metrics, json_on, ok, on, sample, scrape, set_network_key, sock, wait_for, wait_height, Net,
};
use dchat_testkit::bin;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn dms(dir: &Path, node: &str) -> Vec<Value> {
    json_on(dir, node, &["dm", "list"]).as_array().unwrap().clone()
}

fn texts(list: &[Value]) -> Vec<String> {
    list.iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
}

fn state_of(dir: &Path, node: &str, text: &str) -> Option<String> {
    dms(dir, node)
        .into_iter()
        .find(|m| m["text"] == text)
        .map(|m| m["state"].as_str().unwrap().to_string())
}

fn small_net(users: &str) -> Net {
    small_net_with(users, |_| {})
}

fn small_net_with(users: &str, prepare: impl FnOnce(&Path)) -> Net {
    let net = Net::up_with(
        &[
            "--validators",
            "1",
            "--relays",
            "1",
            "--users",
            users,
            "--block-interval-ms",
            "300",
        ],
        prepare,
    );
    wait_height(&net.dir, &["validator1"], 1, WAIT);
    net
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Registers alice on user1 and bob on user2, and waits until both users
/// follow the chain past both registrations (each must know the other's
/// keys to encrypt to it or check its signature).
fn alice_on_user1_and_bob_on_user2(dir: &Path) {
    json_on(dir, "user1", &["account", "create", "alice"]);
    json_on(dir, "user2", &["account", "create", "bob"]);
    let top = json_on(dir, "validator1", &["chain", "status"])["height"]
        .as_u64()
        .unwrap();
    wait_height(dir, &["user1", "user2"], top, WAIT);
}

/// A small testnet with alice on user1 and bob on user2, user2 stopped.
fn bob_away() -> Net {
    let net = small_net("2");
    alice_on_user1_and_bob_on_user2(&net.dir);
    ok(&["testnet", "down", &net.d(), "user2"]);
    net
}

/// Runs `dchatctl <args> --follow --json` on `node`; its lines, parsed, as
/// they come. The child is killed when the returned guard drops.
fn follow(dir: &Path, node: &str, args: &[&str]) -> (Following, std::sync::mpsc::Receiver<Value>) {
    let mut child = Command::new(bin("dchatctl"))
        .args(["--socket", &sock(dir, node)])
        .args(args)
        .args(["--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    (Following(child), rx)
}

struct Following(std::process::Child);

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `rx` prints until an object for which `done` holds (included);
/// panics after [`WAIT`].
fn printed_until(
    rx: &std::sync::mpsc::Receiver<Value>,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}; printed: {out:?}");
        if let Ok(v) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            let last = done(&v);
            out.push(v);
            if last {
                return out;
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_dm_between_online_users_is_delivered_and_the_sender_sees_it() {
    let mut metrics = Vec::new();
    let net = small_net_with("2", |dir| {
        for node in ["validator1", "user1", "user2"] {
            metrics.push(enable_metrics(dir, node));
        }
    });
    let (validator_metrics, user1_metrics, user2_metrics) = (metrics[0], metrics[1], metrics[2]);
    let dir = net.dir.clone();
    // Registered from nodes that run no consensus: the transactions travel
    // to the validator over the network, the blocks come back verified.
    let alice = json_on(&dir, "user1", &["account", "create", "alice"]);
    assert!(alice["registration_block"].as_u64().is_some(), "{alice}");
    json_on(&dir, "user2", &["account", "create", "bob"]);
    // Each node must know the other's registration before it can encrypt
    // to it or check its signature.
    let top = json_on(&dir, "validator1", &["chain", "status"])["height"]
        .as_u64()
        .unwrap();
    wait_height(&dir, &["user1", "user2"], top, WAIT);

    let peers = json_on(&dir, "user1", &["peers"]);
    assert!(
        peers.as_array().unwrap().len() >= 2,
        "user1 sees the validator and the relay: {peers}"
    );

    let sent = json_on(&dir, "user1", &["dm", "send", "bob", "hello bob, online"]);
    assert_eq!(sent["from"], "alice");
    assert_eq!(sent["state"], "sent");
    let got = wait_for("bob to receive the DM", WAIT, || {
        dms(&dir, "user2")
            .into_iter()
            .find(|m| m["text"] == "hello bob, online")
    });
    assert_eq!(got["from"], "alice");
    assert_eq!(got["id"], sent["id"], "the same message id end to end");
    wait_for("alice to see `delivered`", WAIT, || {
        (state_of(&dir, "user1", "hello bob, online").as_deref() == Some("delivered")).then_some(())
    });

    // Both follow their DMs now; each has subscribed once it has printed
    // the first list, which holds that DM.
    let (_alice_following, alice_rx) = follow(&dir, "user1", &["dm", "list"]);
    let (_bob_following, bob_rx) = follow(&dir, "user2", &["dm", "list"]);
    for rx in [&alice_rx, &bob_rx] {
        printed_until(rx, "the first list", |m| m["id"] == sent["id"]);
    }
    // Bob answers; alice sees it once.
    let answer = json_on(&dir, "user2", &["dm", "send", "alice", "hi alice"]);
    wait_for("alice to receive the answer", WAIT, || {
        texts(&dms(&dir, "user1"))
            .contains(&"hi alice".to_string())
            .then_some(())
    });
    wait_for("bob to see `delivered`", WAIT, || {
        (state_of(&dir, "user2", "hi alice").as_deref() == Some("delivered")).then_some(())
    });
    // The followers printed the answer as `dm list` shows it: alice's once,
    // as received; bob's as it stood, last as delivered.
    let listed = |node: &str| dms(&dir, node).into_iter().find(|m| m["id"] == answer["id"]).unwrap();
    let (at_alice, at_bob) = (listed("user1"), listed("user2"));
    let mut alice_saw = printed_until(&alice_rx, "alice's follower to print the answer", |m| {
        m["id"] == answer["id"]
    });
    alice_saw.extend(std::iter::from_fn(|| {
        alice_rx.recv_timeout(Duration::from_millis(500)).ok()
    }));
    alice_saw.retain(|m| m["id"] == answer["id"]);
    assert_eq!(alice_saw, vec![at_alice], "alice's follower");
    let mut bob_saw = printed_until(&bob_rx, "bob's follower to print the answer delivered", |m| {
        m["id"] == answer["id"] && m["state"] == "delivered"
    });
    bob_saw.retain(|m| m["id"] == answer["id"]);
    // Each line is the row as it stood when the follower read it: sent,
    // or already delivered; the last, delivered.
    assert!(
        bob_saw.iter().all(|m| *m == answer || *m == at_bob),
        "bob's follower: {bob_saw:?}"
    );
    assert_eq!(
        bob_saw.last(),
        Some(&at_bob),
        "bob's follower ends delivered: {bob_saw:?}"
    );
    let ids: Vec<Value> = dms(&dir, "user1").into_iter().map(|m| m["id"].clone()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "each message once");

    // The metrics moved with the traffic: one DM each way, the two
    // registrations final on the validator and followed by the users.
    let (v, u1, u2) = (scrape(validator_metrics), scrape(user1_metrics), scrape(user2_metrics));
    for (node, text) in [("user1", &u1), ("user2", &u2)] {
        assert!(sample(text, "dchat_messages_sent_total") >= 1.0, "{node}:\n{text}");
        assert!(sample(text, "dchat_messages_delivered_total") >= 1.0, "{node}:\n{text}");
        assert!(sample(text, "dchat_peers_connected") >= 2.0, "{node}:\n{text}");
        assert!(sample(text, "dchat_chain_height") >= top as f64, "{node}:\n{text}");
    }
    assert!(sample(&v, "dchat_chain_height") >= top as f64, "{v}");
    let finalized = sample(&v, "dchat_chain_finality_latency_seconds_count");
    assert!(
        finalized >= top as f64,
        "every block counted in the finality latency: {v}"
    );
    let mean = sample(&v, "dchat_chain_finality_latency_seconds_sum") / finalized;
    assert!(mean < 30.0, "mean finality latency {mean} s on a 300 ms testnet");
}

#[test]
fn dms_wait_in_a_relay_mailbox_across_a_relay_restart_and_arrive_in_order_once() {
    let net = bob_away();
    let (dir, d) = (net.dir.clone(), net.d());
    let texts_sent = ["first while away", "second while away", "third while away"];
    for t in texts_sent {
        ok(&["--socket", &sock(&dir, "user1"), "dm", "send", "bob", t]);
    }
    for t in texts_sent {
        wait_for("the relay to hold the message", WAIT, || {
            (state_of(&dir, "user1", t).as_deref() == Some("relayed")).then_some(())
        });
    }
    // The relay restarts with the envelopes in its database.
    ok(&["testnet", "down", &d, "relay1"]);
    ok(&["testnet", "up", &d, "relay1"]);
    ok(&["testnet", "up", &d, "user2"]);
    let got = wait_for("bob to fetch all three", WAIT, || {
        let list = dms(&dir, "user2");
        (list.len() >= 3).then_some(list)
    });
    assert_eq!(texts(&got), texts_sent, "in order, once each");
    // The sender learns they were delivered.
    for t in texts_sent {
        wait_for("alice to see `delivered`", WAIT, || {
            (state_of(&dir, "user1", t).as_deref() == Some("delivered")).then_some(())
        });
    }
    // A while later nothing was fetched twice.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(texts(&dms(&dir, "user2")), texts_sent);

    // No plaintext of any message in any file of the relay.
    ok(&["testnet", "down", &d, "relay1"]);
    for (file, bytes) in all_bytes(&dir.join("relay1")) {
        for t in texts_sent {
            assert!(!contains(&bytes, t.as_bytes()), "{t:?} in plaintext in {file}");
        }
    }
}

#[test]
fn a_mailbox_larger_than_a_fetch_answer_is_drained_whole() {
    // 320 DMs of 20 KB while bob is away, sent from 4 threads at once so
    // that messages waiting together share envelopes: more than 6 MB for
    // bob's mailbox, more than one fetch answer (4 MiB) can carry.
    let net = bob_away();
    let (dir, d) = (net.dir.clone(), net.d());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let socket = sock(&dir, "user1");
            std::thread::spawn(move || {
                for i in 0..80 {
                    let text = format!("away {t} {i:02} {}", "y".repeat(20_000));
                    ok(&["--socket", &socket, "dm", "send", "bob", &text]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let away = |list: Vec<Value>| -> Vec<Value> {
        list.into_iter()
            .filter(|m| m["text"].as_str().unwrap().starts_with("away "))
            .collect()
    };
    wait_for("the relay to hold all of them", WAIT, || {
        away(dms(&dir, "user1"))
            .iter()
            .all(|m| m["state"] == "relayed")
            .then_some(())
    });

    ok(&["testnet", "up", &d, "user2"]);
    let got = wait_for("bob to fetch all of them", WAIT, || {
        let got = away(dms(&dir, "user2"));
        (got.len() >= 320).then_some(got)
    });
    // Each once, and each thread's in the order it sent them.
    let got = texts(&got);
    assert_eq!(got.len(), 320);
    for t in 0..4 {
        let mine: Vec<&String> = got.iter().filter(|x| x.starts_with(&format!("away {t} "))).collect();
        let expected: Vec<String> = (0..80)
            .map(|i| format!("away {t} {i:02} {}", "y".repeat(20_000)))
            .collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "thread {t}");
    }
    wait_for("alice to see all of them `delivered`", WAIT, || {
        away(dms(&dir, "user1"))
            .iter()
            .all(|m| m["state"] == "delivered")
            .then_some(())
    });
}

#[test]
fn a_channel_across_three_nodes_create_join_post_read_follow() {
    let net = small_net("3");
    let dir = net.dir.clone();
    json_on(&dir, "user1", &["account", "create", "alice"]);
    json_on(&dir, "user2", &["account", "create", "bob"]);
    json_on(&dir, "user3", &["account", "create", "carol"]);
    json_on(
        &dir,
        "user1",
        &[
            "channel",
            "create",
            "team",
            "--invite-only",
            "--description",
            "the team",
        ],
    );
    json_on(&dir, "user1", &["channel", "invite", "team", "bob"]);
    json_on(&dir, "user1", &["channel", "invite", "team", "carol"]);
    json_on(&dir, "user2", &["channel", "join", "team"]);
    json_on(&dir, "user3", &["channel", "join", "team"]);
    let top = json_on(&dir, "validator1", &["chain", "status"])["height"]
        .as_u64()
        .unwrap();
    wait_height(&dir, &["user1", "user2", "user3"], top, WAIT);

    // carol follows the channel while the others post.
    let (following, rx) = follow(&dir, "user3", &["channel", "messages", "team"]);

    json_on(&dir, "user1", &["channel", "post", "team", "hello team from alice"]);
    json_on(&dir, "user2", &["channel", "post", "team", "bob here"]);
    for node in ["user1", "user2", "user3"] {
        wait_for("both posts on every member's node", WAIT, || {
            let list = json_on(&dir, node, &["channel", "messages", "team"]);
            let t = texts(list.as_array().unwrap());
            (t.contains(&"hello team from alice".to_string()) && t.contains(&"bob here".to_string())).then_some(())
        });
    }
    let mut followed = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while followed.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            followed.push(v["text"].as_str().unwrap().to_string());
        }
    }
    drop(following);
    assert!(followed.contains(&"hello team from alice".to_string()), "{followed:?}");
    assert!(followed.contains(&"bob here".to_string()), "{followed:?}");

    // An outsider cannot post to the invite-only channel.
    json_on(&dir, "user3", &["account", "create", "dave"]);
    let refused = on(
        &dir,
        "user3",
        &["channel", "post", "--user", "dave", "team", "let me in"],
    );
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("member"));

    // A member whose node was down catches up from peers when it returns:
    // gossip reached nobody on user3 while it was stopped.
    let d = net.d();
    ok(&["testnet", "down", &d, "user3", "--timeout", "10"]);
    json_on(&dir, "user1", &["channel", "post", "team", "while carol was away"]);
    wait_for("the post on bob's node", WAIT, || {
        let list = json_on(&dir, "user2", &["channel", "messages", "team"]);
        texts(list.as_array().unwrap())
            .contains(&"while carol was away".to_string())
            .then_some(())
    });
    ok(&["testnet", "up", &d, "user3"]);
    let caught_up = wait_for("carol's node to catch up on the post it missed", WAIT, || {
        let list = json_on(&dir, "user3", &["channel", "messages", "team"]);
        let t = texts(list.as_array().unwrap());
        t.contains(&"while carol was away".to_string()).then_some(t)
    });
    for text in ["hello team from alice", "bob here", "while carol was away"] {
        assert_eq!(
            caught_up.iter().filter(|t| *t == text).count(),
            1,
            "{text:?} once on carol's node: {caught_up:?}"
        );
    }
}

#[path = "p2p_testnet/circuits.rs"]
mod circuits;
