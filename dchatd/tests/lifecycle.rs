//! The daemon's life as systemd sees it: READY from the main pid, STATUS,
//! RELOADING on SIGHUP, WATCHDOG pings, STOPPING and a clean exit on
//! SIGTERM, and the control socket's own lifecycle (stale files replaced,
//! a live one never stolen). The test plays the service manager.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use dchat_testkit::{call, Daemon, RawConn, Signal};
use serde_json::json;

/// Generous upper bound: many daemons start at once on small CI machines.
const START: Duration = Duration::from_secs(30);

fn dev(state: &Path) -> Daemon {
    Daemon::builder().dev(state).notify(true).spawn()
}

fn get_info_works(socket: &Path) {
    let info = call(socket, "org.varlink.service.GetInfo", json!({}));
    assert_eq!(info["parameters"]["product"], "dchatd", "{info}");
}

fn account_names(socket: &Path) -> Vec<String> {
    let list = call(socket, "io.dchat.Accounts.List", json!({}));
    let accounts = list["parameters"]["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"));
    accounts
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn ready_comes_from_the_main_pid_with_a_one_line_status() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = dev(&tmp.path().join("state"));
    let ready = d.wait_ready(START);
    assert_eq!(ready.pid, d.pid(), "READY=1 must come from the main pid: {ready:?}");
    // Every line of the datagram is KEY=VALUE: a status with a newline in it
    // would leave a stray line (or inject a key).
    assert!(
        ready.raw.lines().all(|l| l.contains('=')),
        "stray line in {:?}",
        ready.raw
    );
    let status = ready
        .get("STATUS")
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {ready:?}"));
    assert!(status.contains("roles user,relay,validator"), "{status}");
    assert!(status.starts_with("ready"), "{status}");
    // By READY the socket answers.
    get_info_works(d.socket_path());
}

#[test]
fn sigterm_says_stopping_exits_zero_and_removes_the_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = dev(&tmp.path().join("state"));
    d.wait_ready(START);
    let socket = d.socket_path().to_path_buf();
    assert!(socket.exists());
    let status = d.stop();
    assert!(status.success(), "exit status {status}");
    let stopping = d.notify().wait_for("STOPPING", "1", Duration::from_secs(1));
    assert_eq!(stopping.pid, d.pid());
    assert!(!socket.exists(), "socket file left behind at {}", socket.display());
    d.wait_log(&["database closed"], Duration::from_secs(1));
}

#[test]
fn sighup_reloads_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = dev(&tmp.path().join("state"));
    d.wait_ready(START);
    d.signal(Signal::SIGHUP);
    let reloading = d.wait_notify("RELOADING", "1", START);
    assert_eq!(reloading.pid, d.pid());
    let usec: u64 = reloading
        .get("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = d.wait_ready(START);
    assert_eq!(ready.pid, d.pid());
    assert!(d.is_running());
    get_info_works(d.socket_path());
}

#[test]
fn sighup_applies_a_new_log_level() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dchatd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let mut d = Daemon::builder()
        .dev(tmp.path().join("state"))
        .arg("--config")
        .arg(&config)
        .notify(true)
        .spawn();
    d.wait_ready(START);
    // A client that hangs up mid-frame is logged at debug only.
    let hang_up_mid_frame = |socket: &Path| {
        let mut conn = RawConn::connect(socket).unwrap();
        conn.send(br#"{"method":"org.varl"#).unwrap();
        drop(conn);
        // A full round trip after it: the daemon has seen the hang-up by now.
        get_info_works(socket);
    };
    hang_up_mid_frame(d.socket_path());
    assert!(!d.log().contains("DEBUG"), "debug output at level info:\n{}", d.log());

    std::fs::write(&config, "[log]\nlevel = \"debug\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_notify("RELOADING", "1", START);
    d.wait_ready(START);
    hang_up_mid_frame(d.socket_path());
    d.wait_log(&["DEBUG", "control connection broke"], START);
}

#[test]
fn watchdog_pings_arrive_from_the_main_pid() {
    let tmp = tempfile::tempdir().unwrap();
    // 200 ms: pings every 100 ms.
    let mut d = Daemon::builder()
        .dev(tmp.path().join("state"))
        .env("WATCHDOG_USEC", "200000")
        .notify(true)
        .spawn();
    d.wait_ready(START);
    let start = Instant::now();
    for _ in 0..3 {
        let ping = d.wait_notify("WATCHDOG", "1", Duration::from_secs(2));
        assert_eq!(ping.pid, d.pid());
    }
    // Three pings at 100 ms take about 200-300 ms; a full-interval or
    // stalled pinger would be far slower.
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn watchdog_meant_for_another_pid_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::builder()
        .dev(tmp.path().join("state"))
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .notify(true)
        .spawn();
    d.wait_ready(START);
    // Absence cannot be polled for: give it several intervals.
    let deadline = Instant::now() + Duration::from_millis(600);
    while let Some(n) = d
        .notify()
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        assert!(!n.has("WATCHDOG", "1"), "pinged on behalf of pid 1: {n:?}");
    }
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Bound, then dropped without unlinking: what a killed daemon leaves.
    drop(UnixListener::bind(state.join("dchatd.sock")).unwrap());
    assert!(state.join("dchatd.sock").exists());
    let mut d = dev(&state);
    d.wait_ready(START);
    get_info_works(d.socket_path());
    d.wait_log(&["removing a stale control socket"], Duration::from_secs(1));
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("shared.sock");
    let mut first = Daemon::builder()
        .dev(tmp.path().join("one"))
        .socket(&socket)
        .notify(true)
        .spawn();
    first.wait_ready(START);

    let mut second = Daemon::builder()
        .dev(tmp.path().join("two"))
        .socket(&socket)
        .notify(true)
        .spawn();
    let status = second.wait_exit(START).expect("the second daemon kept running");
    assert!(!status.success(), "second daemon exited {status}");
    assert!(
        second.notify().history().iter().all(|n| !n.has("READY", "1")),
        "the second daemon said READY: {:?}",
        second.notify().history()
    );
    let log = second.log();
    assert!(log.contains("another dchatd is serving"), "{log}");

    // The first one still owns and serves its socket.
    assert!(first.is_running());
    get_info_works(&socket);
}

#[test]
fn status_counts_accounts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = dev(&tmp.path().join("state"));
    let ready = d.wait_ready(START);
    assert!(ready.get("STATUS").unwrap().contains("accounts 0"), "{ready:?}");
    let created = call(d.socket_path(), "io.dchat.Accounts.Create", json!({ "name": "alice" }));
    assert_eq!(created["parameters"]["account"]["name"], "alice", "{created}");
    let status = d.notify().wait_until("STATUS=…accounts 1", START, |n| {
        n.get("STATUS").is_some_and(|s| s.contains("accounts 1"))
    });
    assert_eq!(status.pid, d.pid());
    assert!(
        status.get("STATUS").unwrap().contains("roles user,relay,validator"),
        "{status:?}"
    );
}

#[test]
fn accounts_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut d = dev(&state);
    d.wait_ready(START);
    let created = call(d.socket_path(), "io.dchat.Accounts.Create", json!({ "name": "alice" }));
    let id = created["parameters"]["account"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    assert!(d.stop().success());
    drop(d);

    let mut again = dev(&state);
    let ready = again.wait_ready(START);
    assert!(ready.get("STATUS").unwrap().contains("accounts 1"), "{ready:?}");
    assert_eq!(account_names(again.socket_path()), vec!["alice".to_string()]);
    let shown = call(
        again.socket_path(),
        "io.dchat.Accounts.Show",
        json!({ "name": "alice" }),
    );
    assert_eq!(shown["parameters"]["account"]["id"], id.as_str(), "{shown}");
}
