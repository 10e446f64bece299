//! Calls pipelined on one control connection, on a real `dchatd --dev`:
//! they are answered in call order, what one call changes is seen by the
//! calls after it, a pipeline of sends keeps its order in the conversation,
//! and calls run beside each other (a read is answered inside the daemon
//! while the read before it waits for the database).
#![allow(clippy::unwrap_used)]

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use dchat_testkit::{call, metrics_addr, scrape_value, Daemon};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

const START: Duration = Duration::from_secs(30);
const SENDS: usize = 40;

/// Writes every call as one NUL-terminated Varlink frame, back to back,
/// before reading any reply.
fn pipeline(stream: &mut UnixStream, calls: &[Value]) {
    let mut bytes = Vec::new();
    for c in calls {
        bytes.extend_from_slice(serde_json::to_string(c).unwrap().as_bytes());
        bytes.push(0);
    }
    stream.write_all(&bytes).unwrap();
}

fn read_reply(reader: &mut BufReader<UnixStream>) -> Value {
    let mut frame = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap();
        if byte[0] == 0 {
            return serde_json::from_slice(&frame).unwrap();
        }
        frame.push(byte[0]);
    }
}

fn send_dm(from: &str, text: &str) -> Value {
    json!({
        "method": "io.dchat.Messages.SendDm",
        "parameters": { "from": from, "to": "bob", "text": text },
    })
}

fn method(name: &str, parameters: Value) -> Value {
    json!({ "method": name, "parameters": parameters })
}

fn connect(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

/// The replies to `SENDS` pipelined SendDm calls, texts `{prefix}0`… in
/// call order.
fn expect_sent(reader: &mut BufReader<UnixStream>, prefix: &str) {
    for i in 0..SENDS {
        let reply = read_reply(reader);
        assert_eq!(
            ok(&reply)["message"]["text"],
            format!("{prefix}{i}"),
            "reply {i} out of order"
        );
    }
}

fn ok(reply: &Value) -> &Value {
    assert!(reply.get("error").is_none(), "{reply}");
    &reply["parameters"]
}

#[test]
fn pipelined_calls_are_answered_in_order_and_see_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut daemon = Daemon::builder().dev(&state).notify(true).spawn();
    daemon.wait_ready(START);
    let socket = daemon.socket_path().to_owned();
    for name in ["alice", "bob"] {
        ok(&call(&socket, "io.dchat.Accounts.Create", json!({ "name": name })));
    }

    let mut calls: Vec<Value> = (0..SENDS).map(|i| send_dm("alice", &format!("first {i}"))).collect();
    calls.extend([
        // A read after sends sees all of them.
        method("io.dchat.Messages.ListDms", json!({ "user": "alice" })),
        method("io.dchat.Daemon.Status", json!({})),
        method("io.dchat.NoSuch.Method", json!({})),
        // A change runs alone; the calls after it see it.
        method("io.dchat.Accounts.Create", json!({ "name": "carol" })),
        method("io.dchat.Accounts.List", json!({})),
    ]);
    calls.extend((0..SENDS).map(|i| send_dm("carol", &format!("second {i}"))));
    // A oneway call gets no reply; the call after it gets the next one.
    let mut oneway = send_dm("alice", "oneway");
    oneway["oneway"] = json!(true);
    calls.push(oneway);
    calls.push(method("io.dchat.Messages.ListDms", json!({ "user": "bob" })));

    let (mut stream, mut reader) = connect(&socket);
    pipeline(&mut stream, &calls);

    expect_sent(&mut reader, "first ");
    let listed = read_reply(&mut reader);
    assert_eq!(ok(&listed)["messages"].as_array().unwrap().len(), SENDS);
    assert!(ok(&read_reply(&mut reader)).get("accounts").is_some());
    let unknown = read_reply(&mut reader);
    assert_eq!(unknown["error"], "org.varlink.service.InterfaceNotFound", "{unknown}");
    assert_eq!(ok(&read_reply(&mut reader))["account"]["name"], "carol");
    let accounts = read_reply(&mut reader);
    let names: Vec<&str> = ok(&accounts)["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"carol"), "{accounts}");
    expect_sent(&mut reader, "second ");
    let last = read_reply(&mut reader);
    assert!(ok(&last)["messages"].as_array().is_some(), "{last}");

    // Sent one after another on one connection, read in that order: the
    // sequence numbers follow the calls, for each conversation.
    let db = Connection::open_with_flags(
        state.join("dchat.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    for (from, prefix) in [("alice", "first "), ("carol", "second ")] {
        let texts: Vec<String> = db
            .prepare(
                "SELECT text FROM messages
                 WHERE account = ?1 AND peer = 'bob' AND direction = 'out' ORDER BY seq",
            )
            .unwrap()
            .query_map([from], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<String> = (0..SENDS).map(|i| format!("{prefix}{i}")).collect();
        let texts: Vec<String> = texts.into_iter().filter(|t| t.starts_with(prefix)).collect();
        assert_eq!(texts, expected, "{from}'s conversation with bob");
    }
    // The oneway send happened, although nothing answered it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while db
        .query_row("SELECT count(*) FROM messages WHERE text = 'oneway'", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "the oneway DM was never stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.is_running());
}

#[test]
fn pipelined_reads_run_beside_a_read_that_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut daemon = Daemon::builder()
        .dev(&state)
        .env("DCHAT_METRICS_LISTEN", "127.0.0.1:0")
        .notify(true)
        .spawn();
    daemon.wait_ready(START);
    let metrics = metrics_addr(&daemon, START);
    let socket = daemon.socket_path().to_owned();
    for name in ["alice", "bob"] {
        ok(&call(&socket, "io.dchat.Accounts.Create", json!({ "name": name })));
    }
    let status = "dchat_control_requests_total{method=\"io.dchat.Daemon.Status\"}";
    let before = scrape_value(metrics, status);

    // Another writer holds the database: the daemon's next write waits for
    // it, and every database call of the daemon waits behind that write.
    let blocker = Connection::open(state.join("dchat.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (mut writer, mut writer_replies) = connect(&socket);
    pipeline(&mut writer, &[send_dm("alice", "waits for the lock")]);
    std::thread::sleep(Duration::from_millis(300));

    // ListDms waits for the database; Status, pipelined after it, needs
    // none. It is answered inside the daemon (and counted) although its
    // reply must wait for ListDms's.
    let (mut stream, mut reader) = connect(&socket);
    pipeline(
        &mut stream,
        &[
            method("io.dchat.Messages.ListDms", json!({ "user": "alice" })),
            method("io.dchat.Daemon.Status", json!({})),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while scrape_value(metrics, status) <= before {
        assert!(
            Instant::now() < deadline,
            "Status, pipelined behind a waiting ListDms, did not run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = (&stream).read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a reply came before the database was free: {early:?}"
    );
    stream.set_nonblocking(false).unwrap();

    blocker.execute_batch("ROLLBACK").unwrap();
    ok(&read_reply(&mut writer_replies));
    assert!(ok(&read_reply(&mut reader))["messages"].is_array());
    assert!(ok(&read_reply(&mut reader)).get("accounts").is_some());
    assert!(daemon.is_running());
}

/// A client that pipelines calls and never reads a reply fills the socket;
/// the daemon must still stop promptly when told to (it gives owed replies
/// a short grace, not the idle timeout of 300 s).
#[test]
fn a_client_that_never_reads_does_not_hold_up_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut daemon = Daemon::builder().dev(&state).notify(true).spawn();
    daemon.wait_ready(START);
    let socket = daemon.socket_path().to_owned();
    let call = method(
        "org.varlink.service.GetInterfaceDescription",
        json!({ "interface": "io.dchat.Messages" }),
    );
    let mut stream = UnixStream::connect(&socket).unwrap();
    let writer = std::thread::spawn(move || {
        // Stops when the daemon stops reading (socket full) or goes away.
        for _ in 0..20_000 {
            if stream
                .write_all(format!("{}\0", serde_json::to_string(&call).unwrap()).as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.is_running());
    let asked = Instant::now();
    daemon.signal(dchat_testkit::Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("still running {:?} after SIGTERM", asked.elapsed()));
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    drop(writer);
}
