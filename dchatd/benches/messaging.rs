//! Per-message cost of direct messages, 1 KB of text each:
//!
//! - seal: sign + Noise_X encrypt into an envelope;
//! - open: Noise decrypt + verify, one at a time, and in parts of 16 whose
//!   signatures are checked together (`open_all`), as a recipient opens a
//!   `DeliverBatch` split over two cores;
//! - seal and open `SHARED` messages of one conversation per envelope
//!   (`seal_many`), as a sender under load seals them (ADR 0017): one
//!   Noise handshake and one signature for all (ADR 0018);
//! - sender storage: the message row and its outbox row in one transaction
//!   (`insert_outgoing`), as a lone send does before it acknowledges; and
//!   the same in group commits of 64 (`write_dms`), as sends and arrivals
//!   under load share commits;
//! - relay storage: `relay_store` (quota check + insert) then `relay_delete`
//!   of the same envelope, as a relay does for a fetched-and-receipted one;
//! - arrivals in group commits of 64 into a history of `HISTORY` messages,
//!   with random ids and with ids that start with their time
//!   (`new_message_id`): what the order of ids costs the `(account, id)`
//!   index once a conversation is long.
//!
//! Storage runs on a database file in the temp dir, once with
//! synchronous=FULL (the default: each commit is fsynced) and once with
//! NORMAL, since the fsync dominates and depends on the disk.
//!
//! Run: `cargo bench -p dchatd --bench messaging` (optimised), or
//! `cargo test -p dchatd --bench messaging` for a quick unoptimised run;
//! the output says which. `DCHAT_BENCH_MESSAGES` sets the count (default
//! 2000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dchat_keyfile::Identity;
use dchatd::messaging::{
    mailbox_id, new_message_id, open, open_all, seal, seal_many, Content, DirectMessage, Envelope,
};
use dchatd::storage::{
    Database, DeliveryState, Direction, DmWrite, MailboxQuota, MessageRow, OutboxEntry, RelayEnvelope, StorageOptions,
    Synchronous,
};

const TEXT_BYTES: usize = 1024;
/// Envelopes opened together: a 32-envelope batch split over 2 cores.
const OPEN_PART: usize = 16;
/// Messages per envelope in the shared-envelope measurement.
const SHARED: usize = 16;
/// Messages already stored before the arrivals measurement.
const HISTORY: usize = 50_000;
/// Writes per group commit in the grouped measurement.
const GROUP: usize = 64;
const NOW_MS: u64 = 1_800_000_000_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("DCHAT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let profile = if cfg!(debug_assertions) {
        "DEBUG build (unoptimised; figures are pessimistic)"
    } else {
        "optimised build"
    };
    println!("messaging: {n} messages of {TEXT_BYTES} bytes, {profile}");

    let alice = Identity::generate().expect("keys");
    let bob = Identity::generate().expect("keys");
    let messages: Vec<DirectMessage> = (0..n).map(|i| message(&alice, &bob, i)).collect();

    let start = Instant::now();
    let envelopes: Vec<Envelope> = messages
        .iter()
        .map(|m| seal(&alice, m, &bob.messaging_public(), NOW_MS + 86_400_000).expect("seal"))
        .collect();
    report("seal", n, start.elapsed());
    println!(
        "  envelope size: {} bytes for {TEXT_BYTES} bytes of text",
        envelopes[0].encode().len()
    );

    let start = Instant::now();
    for env in &envelopes {
        black_box(open(&bob, env).expect("open"));
    }
    report("open", n, start.elapsed());

    let start = Instant::now();
    for part in envelopes.chunks(OPEN_PART) {
        for opened in open_all(part.iter().map(|env| (&bob, env))) {
            black_box(opened.expect("open"));
        }
    }
    report(&format!("open, {OPEN_PART} together"), n, start.elapsed());

    let start = Instant::now();
    let shared: Vec<Envelope> = messages
        .chunks(SHARED)
        .map(|part| seal_many(&alice, part, &bob.messaging_public(), NOW_MS + 86_400_000).expect("seal"))
        .collect();
    report(&format!("seal, {SHARED} to an envelope"), n, start.elapsed());
    let start = Instant::now();
    let mut opened = 0;
    for part in shared.chunks(2) {
        for got in open_all(part.iter().map(|env| (&bob, env))) {
            opened += black_box(got.expect("open")).len();
        }
    }
    assert_eq!(opened, n);
    report(
        &format!("open, {SHARED} to an envelope, 2 envelopes together"),
        n,
        start.elapsed(),
    );

    for sync in [Synchronous::Full, Synchronous::Normal] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&dir.path().join("bench.db"), &StorageOptions { synchronous: sync }).expect("db");
        let label = format!("{sync:?}").to_lowercase();

        let start = Instant::now();
        for (m, env) in messages.iter().zip(&envelopes) {
            let (row, entry) = outgoing_rows(m, env);
            assert!(db.insert_outgoing(&[row], &entry).expect("insert"));
        }
        report(
            &format!("store outgoing (message + outbox), sync={label}"),
            n,
            start.elapsed(),
        );

        let grouped =
            Database::open(&dir.path().join("grouped.db"), &StorageOptions { synchronous: sync }).expect("db");
        let writes: Vec<DmWrite> = messages
            .iter()
            .zip(&envelopes)
            .map(|(m, env)| {
                let (row, entry) = outgoing_rows(m, env);
                DmWrite::Outgoing(vec![row], entry)
            })
            .collect();
        group_commits(
            &grouped,
            &writes,
            &format!("store outgoing, group commits of {GROUP}, sync={label}"),
        );
        grouped.close().expect("close");

        let quota = MailboxQuota::default();
        let start = Instant::now();
        for env in &envelopes {
            let held = RelayEnvelope {
                id: env.id(),
                mailbox: env.mailbox,
                expires_at_ms: env.expires_at_ms,
                stored_at_ms: NOW_MS,
                ciphertext: env.ciphertext.clone(),
            };
            assert!(db.relay_store(&held, &quota).expect("relay store"));
            assert_eq!(db.relay_delete(&env.mailbox, &[held.id]).expect("relay delete"), 1);
        }
        report(&format!("relay store + delete, sync={label}"), n, start.elapsed());
        db.close().expect("close");
    }

    for (ids, id_of) in [
        ("random ids", random_id as fn(usize) -> [u8; 16]),
        ("time-ordered ids", timed_id),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&dir.path().join("history.db"), &StorageOptions::default()).expect("db");
        let history: Vec<DmWrite> = (0..HISTORY).map(|i| DmWrite::Incoming(incoming(id_of(i), i))).collect();
        for batch in history.chunks(1000) {
            db.write_dms(batch).expect("history");
        }
        let arrivals: Vec<DmWrite> = (HISTORY..HISTORY + n)
            .map(|i| DmWrite::Incoming(incoming(id_of(i), i)))
            .collect();
        group_commits(
            &db,
            &arrivals,
            &format!("arrivals after {HISTORY} messages, group commits of {GROUP}, sync=full, {ids}"),
        );
        db.close().expect("close");
    }
}

/// Stores `writes`, each new, in group commits of [`GROUP`], and reports
/// the time per write as `what`.
fn group_commits(db: &Database, writes: &[DmWrite], what: &str) {
    let start = Instant::now();
    for batch in writes.chunks(GROUP) {
        let outcomes = db.write_dms(batch).expect("insert");
        assert!(outcomes.iter().all(|new| matches!(new, Ok(true))));
    }
    report(what, writes.len(), start.elapsed());
}

/// A random id, as message ids were before they started with their time.
fn random_id(_: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("randomness");
    id
}

/// The id of the `i`th message of a conversation sent one per millisecond.
fn timed_id(i: usize) -> [u8; 16] {
    new_message_id(NOW_MS + i as u64).expect("randomness")
}

fn incoming(id: [u8; 16], i: usize) -> MessageRow {
    MessageRow {
        account: "bob".into(),
        id,
        peer: "alice".into(),
        direction: Direction::In,
        seq: i as u64,
        text: "m".repeat(TEXT_BYTES),
        content_hash: [7; 32],
        sent_at_ms: NOW_MS + i as u64,
        received_at_ms: NOW_MS + i as u64,
        state: DeliveryState::Delivered,
    }
}

fn message(alice: &Identity, bob: &Identity, i: usize) -> DirectMessage {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    DirectMessage {
        id,
        from: "alice".into(),
        from_key: alice.identity_public(),
        to: "bob".into(),
        to_key: bob.identity_public(),
        seq: i as u64,
        sent_at_ms: NOW_MS + i as u64,
        content: Content::Text("m".repeat(TEXT_BYTES)),
    }
}

fn outgoing_rows(m: &DirectMessage, env: &Envelope) -> (MessageRow, OutboxEntry) {
    let Content::Text(text) = &m.content else {
        unreachable!("the bench only sends text");
    };
    let row = MessageRow {
        account: m.from.clone(),
        id: m.id,
        peer: m.to.clone(),
        direction: Direction::Out,
        seq: m.seq,
        text: text.clone(),
        content_hash: m.content_hash(),
        sent_at_ms: m.sent_at_ms,
        received_at_ms: m.sent_at_ms,
        state: DeliveryState::Sent,
    };
    let entry = OutboxEntry {
        envelope_id: env.id(),
        account: m.from.clone(),
        message_ids: vec![m.id],
        mailbox: mailbox_id(&m.to_key),
        envelope: env.encode(),
        expires_at_ms: env.expires_at_ms,
        attempts: 0,
        next_attempt_ms: NOW_MS,
    };
    (row, entry)
}

fn report(what: &str, n: usize, took: Duration) {
    let per_us = took.as_secs_f64() * 1e6 / n as f64;
    let per_s = n as f64 / took.as_secs_f64();
    println!("  {what}: {per_us:.1} µs/message, {per_s:.0} messages/s");
}
