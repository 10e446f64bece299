//! Crash safety: `kill -9` of the daemon at random moments while a client
//! creates accounts. After every restart the database passes
//! integrity_check and holds every account whose create was acknowledged.
#![allow(clippy::unwrap_used)]

mod db_common;

use std::time::{Duration, Instant};

use db_common::{db_path, dev, json, local_accounts, Writer};
use dchat_testkit::Signal;

const ROUNDS: usize = 20;
const WRITERS: usize = 4;
/// A create waits for its registration to be final; after a restart the
/// first block can take a while on a loaded machine.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(90);

/// A small xorshift: random kill moments without a dependency, and the
/// seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_in_a_loop_loses_no_acknowledged_write() {
    let seed = std::env::var("DCHAT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 0x9e37_79b9 + 1);
    eprintln!("kill -9 loop: seed {seed} (set DCHAT_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let started = Instant::now();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut total_kills = 0;
    for round in 0..ROUNDS {
        let mut d = dev(&state);
        let socket = d.socket_path().to_path_buf();

        // Everything acknowledged in earlier rounds survived the kills.
        let present = local_accounts(&socket);
        for name in &acknowledged {
            assert!(
                present.contains(name),
                "round {round}: acknowledged account {name} is missing"
            );
        }
        let check = json(&socket, &["db", "check"]);
        assert_eq!(check["ok"], true, "round {round}: {check}");

        // Several writers, so that creates are in flight at any moment. A
        // create returns once the account is registered on chain (up to a
        // block interval), so the rounds last a second or so.
        let writers: Vec<Writer> = (0..WRITERS)
            .map(|w| Writer::start(&socket, &format!("r{round}w{w}x")))
            .collect();
        // Kill at a random moment after the round's first acknowledged
        // create, so that every round proves writes got in (a slow machine
        // may need seconds for the first block after a restart) and the
        // kill still lands while other creates are in flight.
        let first_ack = Instant::now();
        while writers.iter().all(|w| w.acked().is_empty()) {
            assert!(
                first_ack.elapsed() < FIRST_ACK_TIMEOUT,
                "round {round}: no create acknowledged within {FIRST_ACK_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let delay = Duration::from_millis(rng.next() % 1200);
        std::thread::sleep(delay);
        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(10)).expect("dchatd died of SIGKILL");
        total_kills += 1;
        for w in writers {
            acknowledged.extend(w.finish());
        }
        // The file itself, before any daemon touches it again.
        assert_eq!(db_common::integrity(&db_path(&state)), "ok", "round {round} after kill");
    }
    let d = dev(&state);
    let present = local_accounts(d.socket_path());
    for name in &acknowledged {
        assert!(present.contains(name), "after the last kill: {name} is missing");
    }
    eprintln!(
        "kill -9 loop: {total_kills} kills, {} acknowledged creates, all present, in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
    assert!(
        acknowledged.len() >= ROUNDS,
        "the writer got writes in: {}",
        acknowledged.len()
    );
}
