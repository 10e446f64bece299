//! A crafted peer against a real daemon: it joins the network with our own
//! network layer, then sends what an attacker would — a post with a
//! tampered signature, a validly signed post by a non-member, the same
//! direct message twice, an envelope moved to another mailbox, a forged
//! transaction gossiped, garbage requests and garbage gossip. Every one is
//! dropped (and counted by reason); the daemon stays healthy and shows
//! nothing it should not. The one authentic transaction it gossips is
//! pooled and becomes final.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use dchat_keyfile::Identity;
use dchat_testkit::{ctl, Daemon};
use dchatd::ledger::{SignedTx, TxKind};
use dchatd::messaging::{self, ChannelPost, Content, DirectMessage};
use dchatd::network::{self, NetError, NetworkParams};
use dchatd::p2p::chain_sync::TX_TOPIC;
use dchatd::p2p::channels::topic;
use dchatd::p2p::wire::{encode_tx_gossip, Request, Response};
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ctl(socket, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A local account's keys, read from the daemon's keystore (same user).
fn keys(state: &Path, socket: &Path, name: &str) -> Identity {
    let id = json(socket, &["account", "show", name])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(state.join("keys").join(format!("{id}.key"))).unwrap();
    dchat_keyfile::from_keystore_json(&bytes).unwrap().0
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn dropped(addr: SocketAddr, reason: &str) -> f64 {
    let series = format!("dchat_messages_dropped_total{{reason=\"{reason}\"}} ");
    scrape(addr)
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

fn wait_dropped(addr: SocketAddr, reason: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while dropped(addr, reason) < at_least {
        assert!(Instant::now() < deadline, "no {reason} drop counted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn now_ms() -> u64 {
    dchatd::p2p::now_ms()
}

#[test]
fn a_crafted_peer_gets_everything_dropped_and_the_node_stays_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (port, metrics_port) = (free_port(), free_port());
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let mut d = Daemon::builder()
        .dev(&state)
        .notify(true)
        .env("DCHAT_NETWORK_LISTEN", format!("/ip4/127.0.0.1/tcp/{port}"))
        .env("DCHAT_METRICS_LISTEN", metrics.to_string())
        .spawn();
    d.wait_ready(Duration::from_secs(30));
    let socket = d.socket_path().to_path_buf();
    for name in ["alice", "bob", "dave"] {
        json(&socket, &["account", "create", name]);
    }
    json(
        &socket,
        &["channel", "create", "--owner", "alice", "team", "--invite-only"],
    );
    let (alice, bob, dave) = (
        keys(&state, &socket, "alice"),
        keys(&state, &socket, "bob"),
        keys(&state, &socket, "dave"),
    );
    let node_peer: PeerId = json(&socket, &["status"])["peer_id"].as_str().unwrap().parse().unwrap();
    let chain_id = json(&socket, &["chain", "status"])["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    let register = |name: &str| {
        let who = Identity::generate().unwrap();
        let kind = TxKind::RegisterAccount {
            name: name.into(),
            identity_key: who.identity_public(),
            messaging_key: who.messaging_public(),
        };
        SignedTx::create(&who, &chain_id, 0, kind)
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stop = CancellationToken::new();
        let target: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{node_peer}").parse().unwrap();
        let attacker = Identity::generate().unwrap();
        let mut params = NetworkParams::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], vec![target], &["user"]);
        params.gossip_heartbeat = Duration::from_millis(200);
        let mut net = network::start(&attacker.identity_secret(), params, stop.clone())
            .await
            .unwrap();
        let handle = net.handle.clone();
        // Answer nothing, just keep the event queue drained.
        tokio::spawn(async move { while net.events.recv().await.is_some() {} });
        let team = topic("team");
        handle.subscribe(&team).await.unwrap();
        handle.subscribe(TX_TOPIC).await.unwrap();

        // Publishes once the daemon (a member's node) has joined the topic.
        let publish_on = |topic: String, data: Vec<u8>| {
            let handle = handle.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match handle.publish(&topic, data.clone()).await {
                        Ok(()) => return,
                        Err(NetError::NoPeers(_)) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await
                        }
                        Err(e) => panic!("publish: {e}"),
                    }
                }
            }
        };
        let publish = |data: Vec<u8>| publish_on(team.clone(), data);

        // 1. A post by alice (a member) with one signature byte flipped.
        let mut tampered = ChannelPost::create(&alice, [1; 16], "team", "alice", now_ms(), "forged words").unwrap();
        tampered.signature[0] ^= 1;
        publish(tampered.encode()).await;
        wait_dropped(metrics, "bad_signature", 1.0);

        // 2. A valid signature by dave, who is registered but not a member.
        let outsider = ChannelPost::create(&dave, [2; 16], "team", "dave", now_ms(), "let me in").unwrap();
        publish(outsider.encode()).await;
        wait_dropped(metrics, "not_permitted", 1.0);

        // 3. Garbage on the topic.
        publish(b"\x00\xffnot a post at all".to_vec()).await;
        wait_dropped(metrics, "malformed", 1.0);

        // 3b. Transactions gossiped: a forged registration is dropped, an
        // authentic one is pooled by the (validator) daemon.
        let mut forged = register("mallory");
        forged.signature[5] ^= 1;
        publish_on(TX_TOPIC.into(), encode_tx_gossip(now_ms(), &[forged.encode()])).await;
        wait_dropped(metrics, "bad_signature", 2.0);
        publish_on(
            TX_TOPIC.into(),
            encode_tx_gossip(now_ms(), &[register("erin").encode()]),
        )
        .await;

        // 4. The same sealed DM from alice to bob, delivered twice.
        let msg = DirectMessage {
            id: [7; 16],
            from: "alice".into(),
            from_key: alice.identity_public(),
            to: "bob".into(),
            to_key: bob.identity_public(),
            seq: 0,
            sent_at_ms: now_ms(),
            content: Content::Text("sealed once, sent twice".into()),
        };
        let env = messaging::seal(&alice, &msg, &bob.messaging_public(), now_ms() + 60_000).unwrap();
        let ask = |req: Request| {
            let handle = handle.clone();
            async move {
                let bytes = handle.request(node_peer, req.encode()).await.unwrap();
                Response::decode(&bytes).unwrap()
            }
        };
        assert_eq!(ask(Request::Deliver(env.encode())).await, Response::Ok);
        assert_eq!(
            ask(Request::Deliver(env.encode())).await,
            Response::Ok,
            "a duplicate is acknowledged"
        );
        wait_dropped(metrics, "duplicate", 1.0);

        // 5. The same envelope moved to alice's mailbox: wrongly addressed.
        let mut moved = env.clone();
        moved.mailbox = messaging::mailbox_id(&alice.identity_public());
        assert!(matches!(
            ask(Request::Deliver(moved.encode())).await,
            Response::Refused(_)
        ));

        // 6. A DM claiming to be from dave but sealed with the attacker's key.
        let mut spoof = msg.clone();
        spoof.id = [8; 16];
        spoof.from = "dave".into();
        spoof.from_key = attacker.identity_public();
        spoof.content = Content::Text("spoofed".into());
        let spoofed = messaging::seal(&attacker, &spoof, &bob.messaging_public(), now_ms() + 60_000).unwrap();
        assert!(matches!(
            ask(Request::Deliver(spoofed.encode())).await,
            Response::Refused(_)
        ));

        // 7. Garbage requests of every kind.
        let raw = handle.request(node_peer, b"complete garbage".to_vec()).await.unwrap();
        assert!(matches!(Response::decode(&raw).unwrap(), Response::Refused(_)));
        for req in [
            Request::Deliver(vec![1, 2, 3]),
            Request::MailboxStore(vec![0; 64]),
            Request::MailboxFetch(vec![9; 10]),
            Request::MailboxReceipt(vec![]),
            Request::SubmitTx(vec![5; 40]),
        ] {
            assert!(matches!(ask(req).await, Response::Refused(_)));
        }
        // A fetch signed by the attacker for bob's mailbox is refused.
        let mut fetch = messaging::FetchRequest::new(&attacker, now_ms());
        fetch.mailbox = messaging::mailbox_id(&bob.identity_public());
        assert!(matches!(
            ask(Request::MailboxFetch(fetch.encode())).await,
            Response::Refused(_)
        ));
        stop.cancel();
    });

    // Bob sees the message once; nothing forged or refused was stored.
    let dms = json(&socket, &["dm", "list", "--user", "bob"]);
    let texts: Vec<&str> = dms
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["sealed once, sent twice"]);
    let posts = json(&socket, &["channel", "messages", "team"]);
    assert_eq!(posts.as_array().unwrap().len(), 0, "{posts}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl(&socket, &["account", "show", "erin"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "the gossiped registration never became final"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ctl(&socket, &["account", "show", "mallory"]).status.success());
    assert!(dropped(metrics, "misaddressed") + dropped(metrics, "bad_signature") >= 2.0);
    // Still healthy and serving.
    let health = ctl(&socket, &["health"]);
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stdout));
    assert!(d.is_running());
}
