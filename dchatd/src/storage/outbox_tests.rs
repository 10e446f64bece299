//! The outbox's tests: leases and backoff, expiry, envelopes of several
//! messages, and writes that share a commit.

use super::*;
use crate::storage::{DeliveryState, Direction};

fn entry(n: u8, next_attempt_ms: u64, expires_at_ms: u64) -> OutboxEntry {
    OutboxEntry {
        envelope_id: [n; 32],
        account: "alice".into(),
        message_ids: vec![[n; 16]],
        mailbox: [9; 32],
        envelope: vec![n; 100],
        expires_at_ms,
        attempts: 0,
        next_attempt_ms,
    }
}

#[test]
fn due_entries_are_leased_with_backoff() {
    let db = Database::in_memory().unwrap();
    let retry = RetryPolicy {
        base_ms: 100,
        max_ms: 350,
    };
    assert!(db.enqueue_outbox(&entry(1, 0, 10_000)).unwrap());
    assert!(!db.enqueue_outbox(&entry(1, 0, 10_000)).unwrap());
    db.enqueue_outbox(&entry(2, 500, 10_000)).unwrap();

    let first = db.take_due_outbox(0, 10, &retry).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    assert_eq!(first[0].next_attempt_ms, 100);
    assert_eq!(first[0].envelope, vec![1; 100]);
    // Leased: not due again until its next attempt.
    assert!(db.take_due_outbox(50, 10, &retry).unwrap().is_empty());

    let at_100 = db.take_due_outbox(100, 10, &retry).unwrap();
    assert_eq!(at_100.len(), 1);
    assert_eq!((at_100[0].attempts, at_100[0].next_attempt_ms), (2, 300));
    let at_500 = db.take_due_outbox(500, 10, &retry).unwrap();
    assert_eq!(at_500.len(), 2);
    assert_eq!(
        (at_500[0].attempts, at_500[0].next_attempt_ms),
        (3, 850),
        "capped at max_ms"
    );
    assert_eq!(at_500[1].envelope_id, [2; 32]);

    assert!(db.outbox_done(&[1; 32]).unwrap());
    assert!(!db.outbox_done(&[1; 32]).unwrap());
    assert_eq!(db.count_outbox().unwrap(), 1);
}

#[test]
fn the_next_attempt_is_the_earliest_in_the_outbox() {
    let db = Database::in_memory().unwrap();
    assert_eq!(db.next_outbox_attempt().unwrap(), None);
    db.enqueue_outbox(&entry(1, 700, 10_000)).unwrap();
    db.enqueue_outbox(&entry(2, 300, 10_000)).unwrap();
    assert_eq!(db.next_outbox_attempt().unwrap(), Some(300));
    // Leasing the one due moves it behind the other.
    let retry = RetryPolicy {
        base_ms: 1_000,
        max_ms: 1_000,
    };
    assert_eq!(db.take_due_outbox(300, 10, &retry).unwrap().len(), 1);
    assert_eq!(db.next_outbox_attempt().unwrap(), Some(700));
    assert!(db.outbox_done(&[1; 32]).unwrap());
    assert_eq!(db.next_outbox_attempt().unwrap(), Some(1_300));
}

#[test]
fn limit_is_honoured() {
    let db = Database::in_memory().unwrap();
    for n in 0..5 {
        db.enqueue_outbox(&entry(n, 0, 10_000)).unwrap();
    }
    assert_eq!(db.take_due_outbox(0, 2, &RetryPolicy::default()).unwrap().len(), 2);
    assert_eq!(db.take_due_outbox(0, 10, &RetryPolicy::default()).unwrap().len(), 3);
}

#[test]
fn expired_entries_are_not_sent_and_are_dropped() {
    let db = Database::in_memory().unwrap();
    db.enqueue_outbox(&entry(1, 0, 1_000)).unwrap();
    db.enqueue_outbox(&entry(2, 0, 5_000)).unwrap();
    let due = db.take_due_outbox(1_000, 10, &RetryPolicy::default()).unwrap();
    assert_eq!(due.iter().map(|e| e.envelope_id[0]).collect::<Vec<_>>(), vec![2]);
    // No message goes with these envelopes: nothing became `expired`.
    assert_eq!(
        db.drop_expired_outbox(1_000).unwrap(),
        vec![("alice".to_string(), [1; 16], false)]
    );
    assert_eq!(db.count_outbox().unwrap(), 1);
}

#[test]
fn a_message_whose_envelope_expires_unsent_is_expired_until_a_receipt_comes() {
    let db = Database::in_memory().unwrap();
    for (id, expires) in [(1, 1_000), (2, 1_000), (3, 5_000)] {
        db.insert_outgoing(&[text(id, Direction::Out)], &entry(id, 0, expires))
            .unwrap();
    }
    // Message 2 was acknowledged while its envelope waited (a receipt
    // for a copy that went through after all).
    db.mark_delivered("alice", "bob", &[[2; 16]]).unwrap();
    // Only message 1 becomes `expired`; the same sweep at the same time
    // finds nothing more.
    let mut swept = db.drop_expired_outbox(1_000).unwrap();
    swept.sort();
    assert_eq!(
        swept,
        vec![
            ("alice".to_string(), [1; 16], true),
            ("alice".to_string(), [2; 16], false)
        ]
    );
    assert_eq!(db.drop_expired_outbox(1_000).unwrap(), vec![]);
    let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
    assert_eq!(state(1), DeliveryState::Expired);
    assert_eq!(state(2), DeliveryState::Delivered, "`delivered` stays");
    assert_eq!(state(3), DeliveryState::Sent, "not expired yet");
    assert_eq!(db.list_messages("alice", None).unwrap().len(), 3, "nothing is deleted");
    // Nothing moves an expired message back; a receipt after all does
    // move it on.
    assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Relayed).unwrap());
    assert!(!db.set_message_state("alice", &[1; 16], DeliveryState::Sent).unwrap());
    assert_eq!(db.mark_delivered("alice", "bob", &[[1; 16]]).unwrap(), 1);
    assert_eq!(state(1), DeliveryState::Delivered);
}

#[test]
fn outgoing_message_and_envelope_are_stored_together_once() {
    let db = Database::in_memory().unwrap();
    let m = MessageRow {
        account: "alice".into(),
        id: [1; 16],
        peer: "bob".into(),
        direction: Direction::Out,
        seq: 0,
        text: "hi".into(),
        content_hash: [0; 32],
        sent_at_ms: 1,
        received_at_ms: 1,
        state: DeliveryState::Sent,
    };
    assert!(db.insert_outgoing(std::slice::from_ref(&m), &entry(1, 0, 10)).unwrap());
    assert!(!db.insert_outgoing(std::slice::from_ref(&m), &entry(2, 0, 10)).unwrap());
    assert_eq!(db.count_outbox().unwrap(), 1);
    // A failing envelope rolls the message back too.
    let bad = OutboxEntry {
        expires_at_ms: u64::MAX,
        ..entry(3, 0, 0)
    };
    let m2 = MessageRow { id: [2; 16], ..m };
    assert!(db.insert_outgoing(&[m2], &bad).is_err());
    assert_eq!(db.message("alice", &[2; 16]).unwrap(), None);
}

fn text(id: u8, direction: Direction) -> MessageRow {
    MessageRow {
        account: "alice".into(),
        id: [id; 16],
        peer: "bob".into(),
        direction,
        seq: u64::from(id),
        text: format!("text {id}"),
        content_hash: [0; 32],
        sent_at_ms: 1,
        received_at_ms: 1,
        state: if direction == Direction::In {
            DeliveryState::Delivered
        } else {
            DeliveryState::Sent
        },
    }
}

#[test]
fn a_batch_of_writes_shares_a_commit_and_a_bad_write_fails_alone() {
    let db = Database::in_memory().unwrap();
    let bad = OutboxEntry {
        expires_at_ms: u64::MAX,
        ..entry(6, 0, 0)
    };
    let mut far_future = text(7, Direction::In);
    far_future.sent_at_ms = u64::MAX;
    let writes = [
        DmWrite::Outgoing(vec![text(1, Direction::Out)], entry(1, 0, 10)),
        DmWrite::Outgoing(vec![], entry(2, 0, 10)),
        DmWrite::Incoming(text(3, Direction::In)),
        // A message whose envelope cannot be stored: neither is kept.
        DmWrite::Outgoing(vec![text(6, Direction::Out)], bad),
        // A peer's message with a value out of range.
        DmWrite::Incoming(far_future),
        // The same message again in the same batch: stored once.
        DmWrite::Outgoing(vec![text(1, Direction::Out)], entry(4, 0, 10)),
        DmWrite::Incoming(text(3, Direction::In)),
    ];
    let outcomes = db.write_dms(&writes).unwrap();
    let news: Vec<Option<bool>> = outcomes.iter().map(|o| o.as_ref().ok().copied()).collect();
    assert_eq!(
        news,
        [Some(true), Some(true), Some(true), None, None, Some(false), Some(false)]
    );
    assert_eq!(
        db.count_outbox().unwrap(),
        2,
        "the message's and the acknowledgement's envelopes"
    );
    assert_eq!(db.list_messages("alice", None).unwrap().len(), 2);
    assert_eq!(
        db.message("alice", &[6; 16]).unwrap(),
        None,
        "rolled back with its envelope"
    );
    assert_eq!(db.message("alice", &[7; 16]).unwrap(), None);
}

#[test]
fn a_delivery_round_is_recorded_together_and_states_never_go_back() {
    let db = Database::in_memory().unwrap();
    for id in [1, 2] {
        db.insert_outgoing(&[text(id, Direction::Out)], &entry(id, 0, 10))
            .unwrap();
    }
    db.set_message_state("alice", &[2; 16], DeliveryState::Delivered)
        .unwrap();
    let done = [1u8, 2].map(|id| Delivery {
        envelope_id: entry(id, 0, 10).envelope_id,
        account: "alice".into(),
        message_ids: vec![[id; 16]],
        state: DeliveryState::Relayed,
    });
    assert_eq!(db.finish_deliveries(&done).unwrap(), [("alice".to_string(), [1; 16])]);
    assert_eq!(db.count_outbox().unwrap(), 0);
    let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
    assert_eq!(state(1), DeliveryState::Relayed);
    assert_eq!(
        state(2),
        DeliveryState::Delivered,
        "a late `relayed` does not undo `delivered`"
    );
}

/// An envelope that carries several messages of one conversation.
fn shared_entry(n: u8, ids: &[u8], expires_at_ms: u64) -> OutboxEntry {
    OutboxEntry {
        message_ids: ids.iter().map(|id| [*id; 16]).collect(),
        ..entry(n, 0, expires_at_ms)
    }
}

#[test]
fn an_envelope_of_several_messages_moves_each_of_them() {
    let db = Database::in_memory().unwrap();
    let rows = |ids: &[u8]| ids.iter().map(|id| text(*id, Direction::Out)).collect::<Vec<_>>();
    assert!(db
        .insert_outgoing(&rows(&[1, 2, 3]), &shared_entry(1, &[1, 2, 3], 10))
        .unwrap());
    assert!(db
        .insert_outgoing(&rows(&[4, 5]), &shared_entry(2, &[4, 5], 1_000))
        .unwrap());
    assert_eq!(db.list_messages("alice", None).unwrap().len(), 5);
    assert_eq!(db.count_outbox().unwrap(), 2);
    // Sent again whole (a repeated request): nothing changes.
    assert!(!db
        .insert_outgoing(&rows(&[1, 2, 3]), &shared_entry(3, &[1, 2, 3], 10))
        .unwrap());
    assert_eq!(db.count_outbox().unwrap(), 2);
    // An acknowledgement (no row) sealed with a text stored before still
    // goes out.
    assert!(db.insert_outgoing(&rows(&[1]), &shared_entry(4, &[1, 8], 10)).unwrap());
    assert_eq!(db.count_outbox().unwrap(), 3);
    assert!(db.outbox_done(&[4; 32]).unwrap());

    // Leased with every id, in order.
    let due = db.take_due_outbox(0, 10, &RetryPolicy::default()).unwrap();
    let ids: Vec<Vec<u8>> = due
        .iter()
        .map(|e| e.message_ids.iter().map(|id| id[0]).collect())
        .collect();
    assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5]]);

    // Relayed: each message of the envelope moves, one already
    // delivered stays so.
    db.mark_delivered("alice", "bob", &[[2; 16]]).unwrap();
    let done = [Delivery {
        envelope_id: [1; 32],
        account: "alice".into(),
        message_ids: due[0].message_ids.clone(),
        state: DeliveryState::Relayed,
    }];
    assert_eq!(
        db.finish_deliveries(&done).unwrap(),
        [("alice".to_string(), [1; 16]), ("alice".to_string(), [3; 16])]
    );
    let state = |id: u8| db.message("alice", &[id; 16]).unwrap().unwrap().state;
    assert_eq!(
        [1, 2, 3].map(state),
        [DeliveryState::Relayed, DeliveryState::Delivered, DeliveryState::Relayed]
    );

    // Expired: each message of the envelope becomes `expired`.
    assert_eq!(
        db.drop_expired_outbox(1_000).unwrap(),
        vec![
            ("alice".to_string(), [4; 16], true),
            ("alice".to_string(), [5; 16], true)
        ]
    );
    assert_eq!([4, 5].map(state), [DeliveryState::Expired, DeliveryState::Expired]);
    assert_eq!(db.count_outbox().unwrap(), 0);

    // An envelope must carry a message.
    assert!(matches!(
        db.enqueue_outbox(&shared_entry(9, &[], 10)),
        Err(StorageError::Invalid(_))
    ));
}

#[test]
fn delays_double_up_to_the_cap() {
    let r = RetryPolicy::default();
    assert_eq!(r.delay_ms(1), 5_000);
    assert_eq!(r.delay_ms(2), 10_000);
    assert_eq!(r.delay_ms(200), 600_000);
    assert_eq!(r.delay_ms(0), 5_000);
}
