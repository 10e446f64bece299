//! Two and three real swarms on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dchat_keyfile::Identity;

use super::*;

fn loopback() -> Vec<Multiaddr> {
    vec![
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
    ]
}

async fn node(seed: u8, bootstrap: Vec<Multiaddr>, stop: &CancellationToken) -> (Network, Multiaddr) {
    let id = Identity::from_secrets(&[seed; 32], &[seed; 32]);
    let net = start(
        &id.identity_secret(),
        NetworkParams::new(loopback(), bootstrap, &["user"]),
        stop.clone(),
    )
    .await
    .unwrap();
    // The first TCP address once it is bound.
    let addr = loop {
        let addrs = net.handle.listen_addrs().await.unwrap();
        if let Some(a) = addrs.iter().find(|a| a.to_string().contains("/tcp/")) {
            break a.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        net.handle.local_peer_id().to_string(),
        crate::node_key::peer_id(&id),
        "same peer id both ways"
    );
    let addr = addr.with(libp2p::multiaddr::Protocol::P2p(net.handle.local_peer_id()));
    (net, addr)
}

async fn next_matching<T>(net: &mut Network, mut f: impl FnMut(NetEvent) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(t) = f(net.events.recv().await.unwrap()) {
                return t;
            }
        }
    })
    .await
    .expect("event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_request_and_gossip() {
    let stop = CancellationToken::new();
    let (mut a, a_addr) = node(1, vec![], &stop).await;
    let (mut b, _) = node(2, vec![a_addr], &stop).await;
    let b_id = b.handle.local_peer_id();
    next_matching(&mut a, |e| {
        matches!(e, NetEvent::PeerConnected(p) if p == b_id).then_some(())
    })
    .await;
    let peers = a.handle.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, b_id.to_string());

    // Request-response: b asks, a answers.
    let a_id = a.handle.local_peer_id();
    let asker = b.handle.clone();
    let ask = tokio::spawn(async move { asker.request(a_id, b"ping?".to_vec()).await });
    let (data, reply) = next_matching(&mut a, |e| match e {
        NetEvent::Request { data, reply, .. } => Some((data, reply)),
        _ => None,
    })
    .await;
    assert_eq!(data, b"ping?");
    reply.send(b"pong!".to_vec()).await;
    assert_eq!(ask.await.unwrap().unwrap(), b"pong!");

    // Gossip: both subscribe, a publishes, b receives and accepts.
    a.handle.subscribe("t").await.unwrap();
    b.handle.subscribe("t").await.unwrap();
    let published = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match a.handle.publish("t", b"hello".to_vec()).await {
                Ok(()) => return,
                Err(NetError::NoPeers(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(published.is_ok(), "b's subscription never reached a");
    let (data, id, source) = next_matching(&mut b, |e| match e {
        NetEvent::Gossip {
            data,
            id,
            source,
            topic,
        } if topic == "t" => Some((data, id, source)),
        _ => None,
    })
    .await;
    assert_eq!(data, b"hello");
    b.handle.validated(id, source, Verdict::Accept).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_unknown_peer_fails_cleanly() {
    let stop = CancellationToken::new();
    let (a, _) = node(3, vec![], &stop).await;
    let err = a.handle.request(PeerId::random(), b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, NetError::Failed(_)), "{err}");
    stop.cancel();
    a.task.await.unwrap();
    assert_eq!(a.handle.peers().await.unwrap_err(), NetError::Stopped);
}
