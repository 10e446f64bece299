//! Bad input on the control socket gets an error reply or a closed
//! connection, never a crashed or wedged daemon. One daemon takes every
//! case in turn; after each, a fresh connection must still be served.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use dchat_testkit::{Daemon, RawConn, Recv};
use serde_json::Value;

/// Generous upper bound: many daemons start at once on small CI machines.
const START: Duration = Duration::from_secs(30);
const REPLY: Duration = Duration::from_secs(5);
const MAX_FRAME: usize = 4096;
const MAX_CONNECTIONS: usize = 4;

const GET_INFO: &str = r#"{"method":"org.varlink.service.GetInfo"}"#;

fn parse(reply: &str) -> Value {
    serde_json::from_str(reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply}"))
}

/// The next frame on `conn`, parsed; panics if the daemon sent none.
fn reply(conn: &mut RawConn, case: &str) -> Value {
    match conn.recv(REPLY) {
        Recv::Frame(frame) => parse(&frame),
        other => panic!("{case}: wanted an error reply, got {other:?}"),
    }
}

fn assert_error(reply: &Value, error: &str, case: &str) {
    assert_eq!(reply["error"], error, "{case}: {reply}");
}

/// An error reply, then the daemon hangs up: it cannot trust what follows.
fn refused_and_closed(socket: &Path, bytes: &[u8], error: &str, case: &str) -> Value {
    let mut conn = RawConn::connect(socket).unwrap();
    conn.send(bytes).unwrap();
    let r = reply(&mut conn, case);
    assert_error(&r, error, case);
    conn.expect_closed(REPLY);
    r
}

/// A typed error for one call; the connection stays usable.
fn refused_but_open(socket: &Path, json: &str, error: &str, case: &str) -> Value {
    let mut conn = RawConn::connect(socket).unwrap();
    let r = parse(&conn.call(json));
    assert_error(&r, error, case);
    assert_eq!(
        parse(&conn.call(GET_INFO))["parameters"]["product"],
        "dchatd",
        "{case}: connection unusable after the error"
    );
    r
}

/// A fresh connection that has had GetInfo answered (so the daemon holds
/// a slot for it). Slots freed by connections we just closed come back
/// asynchronously, so TooManyConnections is retried for a moment.
fn served_conn(socket: &Path, case: &str) -> RawConn {
    let deadline = Instant::now() + REPLY;
    loop {
        let mut conn = RawConn::connect(socket).unwrap_or_else(|e| panic!("after {case}: connect: {e}"));
        // A refused connection may be answered and closed before our call
        // is even written (EPIPE); its reply is still there to read.
        let _ = conn.send_frame(GET_INFO);
        let r = match conn.recv(REPLY) {
            Recv::Frame(frame) => parse(&frame),
            other => panic!("after {case}: no reply to GetInfo: {other:?}"),
        };
        if r["error"] == "io.dchat.Daemon.TooManyConnections" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(r["parameters"]["product"], "dchatd", "after {case}: {r}");
        return conn;
    }
}

/// A fresh connection is served and the process is alive.
fn still_serving(d: &mut Daemon, case: &str) {
    drop(served_conn(d.socket_path(), case));
    assert!(d.is_running(), "dchatd died after {case}");
}

#[test]
fn every_bad_input_leaves_the_daemon_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::builder()
        .dev(tmp.path().join("state"))
        .env("DCHAT_CONTROL_MAX_FRAME_BYTES", MAX_FRAME.to_string())
        .env("DCHAT_CONTROL_IDLE_TIMEOUT", "1")
        .env("DCHAT_CONTROL_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string())
        .notify(true)
        .spawn();
    d.wait_ready(START);
    let socket = d.socket_path().to_path_buf();
    still_serving(&mut d, "start");

    let invalid = "io.dchat.Daemon.InvalidRequest";
    refused_and_closed(&socket, b"\xff\xfe\x01garbage{{\x00", invalid, "garbage bytes");
    still_serving(&mut d, "garbage bytes");
    refused_and_closed(&socket, b"\x00", invalid, "empty frame");
    still_serving(&mut d, "empty frame");
    // An array in field order would deserialize into a call; it must not.
    for json in [
        "42",
        r#""hello""#,
        "[1,2,3]",
        "null",
        "true",
        r#"["org.varlink.service.GetInfo"]"#,
    ] {
        let case = format!("non-object JSON {json}");
        refused_and_closed(&socket, format!("{json}\0").as_bytes(), invalid, &case);
        still_serving(&mut d, &case);
    }
    refused_and_closed(&socket, b"{\"parameters\":{}}\0", invalid, "call without method");
    still_serving(&mut d, "call without method");

    // Past the cap with no NUL in sight: the daemon stops reading there.
    let r = refused_and_closed(&socket, &vec![b'x'; MAX_FRAME + 904], invalid, "oversized frame");
    assert!(
        r["parameters"]["reason"]
            .as_str()
            .unwrap()
            .contains(&MAX_FRAME.to_string()),
        "{r}"
    );
    still_serving(&mut d, "oversized frame");

    let r = refused_but_open(
        &socket,
        r#"{"method":"com.example.Nope.Do"}"#,
        "org.varlink.service.InterfaceNotFound",
        "unknown interface",
    );
    assert_eq!(r["parameters"]["interface"], "com.example.Nope", "{r}");
    still_serving(&mut d, "unknown interface");
    let r = refused_but_open(
        &socket,
        r#"{"method":"io.dchat.Daemon.Nope"}"#,
        "org.varlink.service.MethodNotFound",
        "unknown method",
    );
    assert_eq!(r["parameters"]["method"], "io.dchat.Daemon.Nope", "{r}");
    still_serving(&mut d, "unknown method");

    let bad = "org.varlink.service.InvalidParameter";
    let r = refused_but_open(
        &socket,
        r#"{"method":"io.dchat.Accounts.Create","parameters":{"name":5}}"#,
        bad,
        "wrong parameter type",
    );
    assert_eq!(r["parameters"]["parameter"], "name", "{r}");
    still_serving(&mut d, "wrong parameter type");
    let r = refused_but_open(
        &socket,
        r#"{"method":"io.dchat.Accounts.Create","parameters":{"name":"bob","colour":"red"}}"#,
        bad,
        "unknown parameter",
    );
    assert_eq!(r["parameters"]["parameter"], "colour", "{r}");
    let list = parse(
        &RawConn::connect(&socket)
            .unwrap()
            .call(r#"{"method":"io.dchat.Accounts.List"}"#),
    );
    assert_eq!(
        list["parameters"]["accounts"],
        Value::Array(vec![]),
        "a refused call created an account: {list}"
    );
    still_serving(&mut d, "unknown parameter");

    // Half a frame, then silence: cut off after the 1 s idle timeout.
    let mut stalled = RawConn::connect(&socket).unwrap();
    stalled.send(br#"{"method":"org.varl"#).unwrap();
    let took = stalled.expect_closed(REPLY);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "stalled client closed after {took:?}"
    );
    still_serving(&mut d, "stalled half frame");

    // Fill every slot (each served once, so the daemon holds them), then
    // one more. Well inside the idle timeout, so none is freed meanwhile.
    let held: Vec<RawConn> = (0..MAX_CONNECTIONS)
        .map(|_| served_conn(&socket, "filling the slots"))
        .collect();
    let mut extra = RawConn::connect(&socket).unwrap();
    let r = reply(&mut extra, "too many connections");
    assert_error(&r, "io.dchat.Daemon.TooManyConnections", "too many connections");
    assert_eq!(r["parameters"]["limit"], MAX_CONNECTIONS, "{r}");
    extra.expect_closed(REPLY);
    drop(held);
    still_serving(&mut d, "too many connections");
}
