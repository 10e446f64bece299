//! Users behind NAT (they listen nowhere) talk over circuits through a
//! relay, and a circuit closed at the relay's byte cap is opened again
//! without a detour through the mailbox.

use super::*;

/// A testnet of one relay and two users that listen nowhere (like nodes
/// behind NAT: they can only dial out), alice on user1 and bob on user2;
/// `prepare` edits the configuration further. Returns the net, the
/// relay's metrics address and user2's peer id once user2 holds a
/// reservation on the relay (the circuit address is its one address).
fn users_behind_nat(prepare: impl FnOnce(&Path)) -> (Net, SocketAddr, String) {
    let mut relay_metrics = None;
    let net = small_net_with("2", |dir| {
        for user in ["user1", "user2"] {
            set_network_key(dir, user, "listen", "[]");
        }
        relay_metrics = Some(enable_metrics(dir, "relay1"));
        prepare(dir);
    });
    let dir = net.dir.clone();
    alice_on_user1_and_bob_on_user2(&dir);
    let user2 = wait_for("user2's reservation on the relay", WAIT, || {
        let status = json_on(&dir, "user2", &["status"]);
        let addresses: Vec<String> = status["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        (!addresses.is_empty() && addresses.iter().all(|a| a.contains("/p2p-circuit/")))
            .then(|| status["peer_id"].as_str().unwrap().to_string())
    });
    (net, relay_metrics.unwrap(), user2)
}

/// Sends alice's DMs to bob (`{tag} 0`, `{tag} 1`, …) until one reaches
/// bob without the relay storing anything meanwhile, so over a circuit;
/// until bob's presence reaches user1, a DM waits in the relay's mailbox.
/// Each try waits for its DM to arrive and be acknowledged. Panics after
/// 10 tries.
fn until_a_dm_goes_over_a_circuit(dir: &Path, relay_metrics: SocketAddr, tag: &str) {
    let relayed = || sample(&scrape(relay_metrics), "dchat_messages_relayed_total");
    for attempt in 0..10 {
        let text = format!("{tag} {attempt}");
        let before = relayed();
        ok(&["--socket", &sock(dir, "user1"), "dm", "send", "bob", &text]);
        wait_for("bob to receive the DM", WAIT, || {
            texts(&dms(dir, "user2")).contains(&text).then_some(())
        });
        wait_for("alice to see `delivered`", WAIT, || {
            (state_of(dir, "user1", &text).as_deref() == Some("delivered")).then_some(())
        });
        if relayed() == before {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("every DM tagged {tag:?} went through the relay's mailbox");
}

#[test]
fn users_behind_nat_talk_directly_through_a_relay_circuit() {
    // Each user holds a reservation on the relay; a DM goes over a circuit
    // through it, not into its mailbox.
    let (net, relay_metrics, user2) = users_behind_nat(|_| {});
    let dir = net.dir.clone();
    until_a_dm_goes_over_a_circuit(&dir, relay_metrics, "through the hole");
    let peers = json_on(&dir, "user1", &["peers"]);
    let to_user2 = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == user2.as_str())
        .unwrap_or_else(|| panic!("user1 is not connected to user2: {peers}"));
    // Over a circuit: as its dialer, user1 names the relay in the address;
    // as its listener, only user2's peer id.
    assert!(
        to_user2["addresses"].as_array().unwrap().iter().all(|a| {
            let a = a.as_str().unwrap();
            a.contains("/p2p-circuit") || a == format!("/p2p/{user2}")
        }),
        "{to_user2}"
    );
}

#[test]
fn a_circuit_closed_at_its_byte_cap_is_opened_again_and_nothing_is_lost() {
    // The relay closes a circuit after 1 MiB (its floor): about 20 DMs of
    // 48 KiB with their batches and acknowledgements.
    let mut user_metrics = Vec::new();
    let (net, relay_metrics, _) = users_behind_nat(|dir| {
        set_network_key(dir, "relay1", "relay_circuit_bytes", "1048576");
        user_metrics = ["user1", "user2"].map(|user| enable_metrics(dir, user)).to_vec();
    });
    let dir = net.dir.clone();
    // Batches (DMs, and acknowledgements the other way) that were in
    // flight on a circuit as it closed, sent again.
    let resent = || -> f64 {
        user_metrics
            .iter()
            .map(|m| sample(&scrape(*m), "dchat_dm_batches_resent_total"))
            .sum()
    };
    let opened = || sample(&scrape(relay_metrics), "dchat_relay_circuits_opened_total");
    let closed_at_cap = || {
        sample(
            &scrape(relay_metrics),
            "dchat_relay_circuits_closed_total{reason=\"byte_cap\"}",
        )
    };
    let relayed = || sample(&scrape(relay_metrics), "dchat_messages_relayed_total");
    until_a_dm_goes_over_a_circuit(&dir, relay_metrics, "before the burst");
    let (opened_before, closed_before, relayed_before) = (opened(), closed_at_cap(), relayed());
    assert!(opened_before >= 1.0, "the relay counted no circuit");

    // 48 DMs of 48 KiB: more than two circuits carry. One at a time, so
    // that a round holds about one batch: four of the largest in flight
    // would fill a 1 MiB circuit, and their second try could close the
    // next one too (they would then go to the mailbox, not be lost).
    let burst: Vec<String> = (0..48)
        .map(|i| format!("burst {i:03} {}", "x".repeat(48 << 10)))
        .collect();
    for text in &burst {
        ok(&["--socket", &sock(&dir, "user1"), "dm", "send", "bob", text]);
    }
    // Bob has each once and none is missing (`dm list` shows them in the
    // order sent), and alice sees every one delivered.
    let arrived = || -> Vec<String> {
        texts(&dms(&dir, "user2"))
            .into_iter()
            .filter(|t| t.starts_with("burst "))
            .collect()
    };
    wait_for("bob to receive the whole burst", WAIT, || {
        (arrived().len() >= burst.len()).then_some(())
    });
    assert_eq!(arrived(), burst, "bob's burst is not the one sent, each once");
    wait_for("alice to see the whole burst `delivered`", WAIT, || {
        dms(&dir, "user1")
            .iter()
            .filter(|m| m["text"].as_str().unwrap().starts_with("burst "))
            .all(|m| m["state"] == "delivered")
            .then_some(())
    });
    assert!(
        closed_at_cap() > closed_before,
        "no circuit closed at the cap (opened {opened_before} -> {}, closed at the cap {closed_before} -> {})",
        opened(),
        closed_at_cap()
    );
    // What was in flight on a circuit as it closed went again over the
    // next one, not into the relay's mailbox.
    assert!(resent() >= 1.0, "no batch was in flight as a circuit closed");
    assert_eq!(
        relayed(),
        relayed_before,
        "envelopes went through the relay's mailbox ({} circuits closed at the cap)",
        closed_at_cap() - closed_before
    );
    // Delivery goes back to a circuit: a later DM skips the mailbox, and
    // it took a circuit opened after the burst's first.
    until_a_dm_goes_over_a_circuit(&dir, relay_metrics, "after the burst");
    assert!(opened() > opened_before, "no circuit was opened again");
}
