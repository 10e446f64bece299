//! Many sends of one conversation at once, on a real `dchatd --dev` (alice
//! and bob both hosted here): each message is stored once at each end, the
//! sequence numbers of the conversation are distinct and agree with the
//! reading order, and every message reaches `delivered`. The sender's database is read
//! directly (read-only, WAL) for the sequence numbers, which no reply shows.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dchat_testkit::{bin, call, metrics_addr, scrape_value, Daemon, RawConn, Recv};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

const THREADS: usize = 8;
const EACH: usize = 25;

/// `dchatctl dm list --user USER --follow --json`: the child, and every
/// object it prints as it comes.
fn follow(socket: &Path, user: &str) -> (Child, mpsc::Receiver<Value>) {
    let mut child = Command::new(bin("dchatctl"))
        .arg("--socket")
        .arg(socket)
        .args(["dm", "list", "--user", user, "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // A line cut short when the child is killed is not an object.
            let Ok(value) = serde_json::from_str(&line) else { break };
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Everything `rx` holds now.
fn drain(rx: &mpsc::Receiver<Value>, into: &mut Vec<Value>) {
    into.extend(rx.try_iter());
}

/// A `dchatd --dev` in a temporary directory (its state in `state/`,
/// metrics on a free port) hosting alice and bob; and its socket.
fn alice_and_bob() -> (tempfile::TempDir, Daemon, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::builder()
        .dev(tmp.path().join("state"))
        .env("DCHAT_METRICS_LISTEN", "127.0.0.1:0")
        .notify(true)
        .spawn();
    daemon.wait_ready(Duration::from_secs(30));
    let socket = daemon.socket_path().to_owned();
    for name in ["alice", "bob"] {
        let created = call(&socket, "io.dchat.Accounts.Create", json!({ "name": name }));
        assert!(created.get("error").is_none(), "{created}");
    }
    (tmp, daemon, socket)
}

fn dms(socket: &Path, user: &str) -> Vec<Value> {
    let reply = call(socket, "io.dchat.Messages.ListDms", json!({ "user": user }));
    reply["parameters"]["messages"].as_array().unwrap().clone()
}

#[test]
fn concurrent_sends_of_one_conversation_keep_order_and_arrive_once() {
    let (tmp, mut daemon, socket) = alice_and_bob();
    let state = tmp.path().join("state");
    let metrics = metrics_addr(&daemon, Duration::from_secs(30));

    // One DM first; both then follow their DMs, and have subscribed once
    // each has printed its first list, which holds it.
    let first = call(
        &socket,
        "io.dchat.Messages.SendDm",
        json!({ "from": "alice", "to": "bob", "text": "before the burst" }),
    );
    let first_id = first["parameters"]["message"]["id"].clone();
    assert!(first_id.is_string(), "{first}");
    let followers = ["alice", "bob"].map(|user| follow(&socket, user));
    for (_, rx) in &followers {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rx
            .recv_timeout(Duration::from_millis(100))
            .map_or(true, |m| m["id"] != first_id)
        {
            assert!(Instant::now() < deadline, "a follower printed no first list");
        }
    }

    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let text = format!("thread {t} message {i}");
                    let sent = call(
                        &socket,
                        "io.dchat.Messages.SendDm",
                        json!({ "from": "alice", "to": "bob", "text": text }),
                    );
                    assert!(sent.get("error").is_none(), "{sent}");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let total = THREADS * EACH;
    // Sends that were waiting together shared envelopes: fewer envelopes
    // were sealed than messages (texts and acknowledgements).
    let sealed = scrape_value(metrics, "dchat_dm_messages_sealed_total");
    let envelopes = scrape_value(metrics, "dchat_dm_envelopes_sealed_total");
    assert!(sealed > total as f64, "{sealed} messages sealed");
    assert!(
        envelopes < sealed,
        "{sealed} messages sealed into as many envelopes: none shared one"
    );
    eprintln!("{sealed} messages sealed into {envelopes} envelopes");
    // With the first DM.
    let all = total + 1;

    // Bob has each message once; alice sees every one delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = dms(&socket, "bob");
        let delivered = dms(&socket, "alice")
            .iter()
            .filter(|m| m["state"] == "delivered")
            .count();
        if received.len() == all && delivered == all {
            let texts: HashSet<&str> = received.iter().map(|m| m["text"].as_str().unwrap()).collect();
            assert_eq!(texts.len(), all, "each message once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob has {} of {all}, alice sees {delivered} delivered",
            received.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The followers printed every message of the burst, bob's once as
    // received and alice's last as delivered (a burst of changes of state
    // is read together), each as `dm list` shows it.
    let burst = |list: Vec<Value>| -> Vec<Value> { list.into_iter().filter(|m| m["id"] != first_id).collect() };
    let by_id = |a: &Value, b: &Value| a["id"].as_str().cmp(&b["id"].as_str());
    let mut bob_listed = burst(dms(&socket, "bob"));
    bob_listed.sort_by(by_id);
    let alice_listed = burst(dms(&socket, "alice"));
    let (mut alice_printed, mut bob_printed) = (Vec::new(), Vec::new());
    let last_seen = |printed: &[Value]| -> HashMap<String, Value> {
        printed
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_string(), m.clone()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        drain(&followers[0].1, &mut alice_printed);
        drain(&followers[1].1, &mut bob_printed);
        let alice_last = last_seen(&alice_printed);
        let alice_done = alice_listed
            .iter()
            .all(|m| alice_last.get(m["id"].as_str().unwrap()) == Some(m));
        if alice_done && burst(bob_printed.clone()).len() >= bob_listed.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "followers printed {} of alice's changes and {} of bob's {} messages",
            alice_printed.len(),
            bob_printed.len(),
            bob_listed.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Anything more (a copy printed twice) would come now.
    std::thread::sleep(Duration::from_millis(500));
    drain(&followers[1].1, &mut bob_printed);
    for (mut child, _) in followers {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut bob_printed = burst(bob_printed);
    bob_printed.sort_by(by_id);
    assert_eq!(bob_printed, bob_listed, "bob's follower");
    assert_eq!(last_seen(&burst(alice_printed)).len(), total, "alice's follower");

    // Distinct sequence numbers, in the order of the send times: what bob
    // reads is the order alice sent in.
    let db = Connection::open_with_flags(
        state.join("dchat.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let rows: Vec<(i64, i64, String)> = db
        .prepare(
            "SELECT seq, sent_at, text FROM messages
             WHERE account = 'alice' AND peer = 'bob' AND direction = 'out' ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), all);
    let seqs: HashSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs.len(), all, "a sequence number used twice");
    assert!(
        rows.windows(2).all(|w| w[0].1 <= w[1].1),
        "a later sequence number with an earlier send time"
    );
    // Each thread's own messages, sent one after another, in order.
    for t in 0..THREADS {
        let mine: Vec<usize> = rows
            .iter()
            .filter_map(|r| r.2.strip_prefix(&format!("thread {t} message ")))
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "thread {t}");
    }
    // Nothing is left waiting in either outbox (a round's rows go once the
    // round is recorded, just after the states it moved).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} envelopes still in the outbox");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(db);
    assert!(daemon.is_running());
}

#[test]
fn a_follower_that_falls_behind_gets_the_whole_list_again() {
    let (_tmp, daemon, socket) = alice_and_bob();
    // Bob's follower subscribes, then reads nothing: once the socket's
    // buffer is full the daemon cannot hand it changes, and the change
    // channel (4096 slots) overflows while alice sends. Each DM is three
    // changes (sent, received, delivered).
    let mut follower = RawConn::connect(&socket).unwrap();
    follower
        .send_frame(r#"{"method":"io.dchat.Messages.ListDms","parameters":{"user":"bob"},"more":true}"#)
        .unwrap();
    const SENDS: usize = 3000;
    let text = "x".repeat(2000);
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (socket, text) = (socket.clone(), text.clone());
            std::thread::spawn(move || {
                for i in (t..SENDS).step_by(THREADS) {
                    let sent = call(
                        &socket,
                        "io.dchat.Messages.SendDm",
                        json!({ "from": "alice", "to": "bob", "text": format!("{i} {text}") }),
                    );
                    assert!(sent.get("error").is_none(), "{sent}");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }

    // Read at last, once bob has every message: each is printed, none lost.
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted: HashSet<String> = loop {
        let have: HashSet<String> = dms(&socket, "bob")
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        if have.len() == SENDS {
            break have;
        }
        assert!(Instant::now() < deadline, "bob has {} of {SENDS}", have.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "the follower printed {} of bob's {SENDS} messages",
            wanted.intersection(&seen).count()
        );
        match follower.recv(Duration::from_secs(5)) {
            Recv::Frame(frame) => {
                let reply: Value = serde_json::from_str(&frame).unwrap();
                assert!(reply.get("error").is_none(), "{reply}");
                for m in reply["parameters"]["messages"].as_array().unwrap() {
                    seen.insert(m["id"].as_str().unwrap().to_string());
                }
            }
            other => panic!("the stream ended: {other:?}"),
        }
    }
    // It did fall behind (the daemon finds out when it reads again).
    daemon.wait_log(&["a follower fell behind"], Duration::from_secs(10));
}
