//! The metrics and health listeners of a real daemon: the exposition passes
//! promtool, counters move with control calls, /ready follows real faults
//! (and `dchatctl health` reports the same checks), bad HTTP gets a 4xx and
//! harms nothing, and nothing listens when the keys are empty.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dchat_testkit::{call, ctl, skip_or_fail, Daemon};
use serde_json::{json, Value};

#[path = "observability/http.rs"]
mod http;
use http::*;

/// Generous upper bound: many daemons start at once on small CI machines.
const START: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A READY dev daemon with both listeners on loopback ports of its choosing.
struct Node {
    daemon: Daemon,
    metrics: SocketAddr,
    health: SocketAddr,
}

fn start(state: &Path) -> Node {
    let mut daemon = Daemon::builder()
        .dev(state)
        .env("DCHAT_METRICS_LISTEN", "127.0.0.1:0")
        .env("DCHAT_HEALTH_LISTEN", "127.0.0.1:0")
        .notify(true)
        .spawn();
    daemon.wait_ready(START);
    let metrics = bound_addr(&daemon, "metrics.listen");
    let health = bound_addr(&daemon, "health.listen");
    Node {
        daemon,
        metrics,
        health,
    }
}

/// The address a listener reported when it bound (port 0 resolved).
fn bound_addr(daemon: &Daemon, key: &str) -> SocketAddr {
    let line = daemon.wait_log(&["HTTP listener bound", key], START);
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"));
    addr.parse().unwrap_or_else(|e| panic!("{addr:?}: {e}"))
}

fn scrape(node: &Node) -> String {
    let reply = get(node.metrics, "/metrics");
    assert_eq!(reply.status, 200, "{}", reply.head);
    reply.body
}

fn check<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {health}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {health}"))
}

#[test]
fn exposition_passes_promtool_and_negotiates_openmetrics() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("state"));
    // Some traffic first, so histograms and error series have samples.
    call(node.daemon.socket_path(), "io.dchat.Daemon.Status", json!({}));
    call(node.daemon.socket_path(), "io.dchat.Nope.Nothing", json!({}));

    let reply = get(node.metrics, "/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        reply.head
    );
    let om = http_raw(
        node.metrics,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert_eq!(om.status, 200);
    assert!(
        om.head.contains("Content-Type: application/openmetrics-text"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"));

    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return skip_or_fail("promtool is not installed (Debian package prometheus; scripts/test-setup installs it)");
    };
    promtool.stdin.take().unwrap().write_all(reply.body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        reply.body
    );
}

#[test]
fn control_calls_move_the_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("state"));
    let socket = node.daemon.socket_path();
    let create = "dchat_control_requests_total{method=\"io.dchat.Accounts.Create\"}";
    let create_timed = "dchat_control_request_duration_seconds_count{method=\"io.dchat.Accounts.Create\"}";
    let not_found = "dchat_errors_total{subsystem=\"control\",kind=\"io.dchat.Accounts.NotFound\"}";
    let unknown = "dchat_control_requests_total{method=\"unknown\"}";

    let before = scrape(&node);
    assert_eq!(sample(&before, create), Some(0.0), "known methods start at 0");
    assert_eq!(sample(&before, "dchat_local_accounts"), Some(0.0));
    assert_eq!(sample(&before, "dchat_ready"), Some(1.0));
    assert!(sample(&before, "dchat_database_size_bytes").unwrap() > 0.0);
    let errors_before = sample(&before, not_found).unwrap_or(0.0);

    let created = call(socket, "io.dchat.Accounts.Create", json!({ "name": "alice" }));
    assert!(created.get("error").is_none(), "{created}");
    let missing = call(socket, "io.dchat.Accounts.Show", json!({ "name": "nobody" }));
    assert_eq!(missing["error"], "io.dchat.Accounts.NotFound", "{missing}");
    call(socket, "io.dchat.Made.Up", json!({}));

    // A call is counted as its reply goes out, so a scrape that races the
    // reply may see the count a moment later: poll briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let after = loop {
        let text = scrape(&node);
        if sample(&text, unknown) == Some(1.0) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(sample(&after, create), Some(1.0), "{after}");
    assert_eq!(sample(&after, create_timed), Some(1.0));
    assert_eq!(sample(&after, not_found), Some(errors_before + 1.0), "{after}");
    assert_eq!(
        sample(&after, unknown),
        Some(1.0),
        "made-up methods are counted as unknown"
    );
    assert!(!after.contains("io.dchat.Made.Up"), "a client must not create series");
    assert_eq!(sample(&after, "dchat_local_accounts"), Some(1.0));
}

#[test]
fn ready_follows_real_faults_and_dchatctl_health_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let node = start(&state);
    let socket = node.daemon.socket_path().to_path_buf();

    let (status, ready) = get_json(node.health, "/ready");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    assert!(ready["timestamp"].as_str().unwrap().ends_with('Z'), "{ready}");
    for name in ["started", "database", "control", "network", "chain"] {
        assert_eq!(check(&ready, name)["ok"], true, "{ready}");
    }
    let (status, live) = get_json(node.health, "/health");
    assert_eq!(status, 200, "{live}");

    // The database file moved away under the running daemon: whatever it
    // writes now is lost at the next start. Not ready; still live.
    let db = state.join("dchat.sqlite3");
    let moved = state.join("moved.sqlite3");
    std::fs::rename(&db, &moved).unwrap();
    let (status, ready) = get_json(node.health, "/ready");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(check(&ready, "database")["ok"], false, "{ready}");
    assert_eq!(get_json(node.health, "/health").0, 200);
    assert_eq!(sample(&scrape(&node), "dchat_ready"), Some(0.0));
    assert_eq!(
        sample(&scrape(&node), "dchat_health_check_ok{check=\"database\"}"),
        Some(0.0)
    );
    // The control socket reports the same checks, and exits 1 for probes.
    let out = ctl(&socket, &["health", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let via_socket: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |v: &Value| -> Vec<(String, bool)> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["ok"].as_bool().unwrap()))
            .collect()
    };
    assert_eq!(names(&via_socket), names(&ready));

    std::fs::rename(&moved, &db).unwrap();
    assert_eq!(get_json(node.health, "/ready").0, 200, "recovers once the file is back");
    assert_eq!(ctl(&socket, &["health"]).status.code(), Some(0));

    // The control socket's file gone: clients cannot connect. Not ready.
    let aside = state.join("aside.sock");
    std::fs::rename(&socket, &aside).unwrap();
    let (status, ready) = get_json(node.health, "/ready");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(check(&ready, "control")["ok"], false, "{ready}");
    assert_eq!(get_json(node.health, "/health").0, 200);
    std::fs::rename(&aside, &socket).unwrap();
    assert_eq!(get_json(node.health, "/ready").0, 200);
}

#[test]
fn bad_http_gets_a_4xx_and_leaves_the_daemon_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("state"));
    let huge_header = format!("GET /health HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "x".repeat(64 * 1024));
    let mut huge_body = b"POST /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    huge_body.extend(std::iter::repeat_n(b'b', 256 * 1024));
    let get_with_body = "GET /ready HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nabc";
    let endless_line = format!("GET /{}", "a".repeat(32 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        ("no version", b"GET /metrics\r\n\r\n".to_vec(), 400),
        (
            "bad header",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
            400,
        ),
        ("huge header", huge_header.into_bytes(), 431),
        ("huge request line", endless_line.into_bytes(), 414),
        ("huge body", huge_body, 405),
        ("GET with a body", get_with_body.as_bytes().to_vec(), 413),
        (
            "POST",
            b"POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
        ),
        ("DELETE", b"DELETE /metrics HTTP/1.1\r\n\r\n".to_vec(), 405),
        ("unknown path", b"GET /admin HTTP/1.1\r\n\r\n".to_vec(), 404),
        (
            "health path on the metrics port",
            b"GET /ready HTTP/1.1\r\n\r\n".to_vec(),
            404,
        ),
    ];
    for (listener, addr) in [("metrics", node.metrics), ("health", node.health)] {
        for (what, request, expected) in &cases {
            let expected = match (*what, listener) {
                ("health path on the metrics port", "health") => 200,
                _ => *expected,
            };
            let reply = http_raw(addr, request);
            assert_eq!(
                reply.status, expected,
                "{what} on the {listener} listener: {}",
                reply.head
            );
            assert!(reply.head.contains("Connection: close"), "{}", reply.head);
        }
        let allow = http_raw(addr, b"PUT / HTTP/1.1\r\n\r\n");
        assert!(allow.head.contains("Allow: GET, HEAD"), "{}", allow.head);
        // HEAD: the head of the GET answer, no body.
        let head = http_raw(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.body.is_empty(), "HEAD got a body: {:?}", head.body);
    }
    // A client that connects and says nothing is cut off, and others are
    // served meanwhile.
    let idle = TcpStream::connect(node.health).unwrap();
    assert_eq!(get(node.health, "/health").status, 200);

    assert_eq!(get_json(node.health, "/health").0, 200);
    assert_eq!(get_json(node.health, "/ready").0, 200);
    assert!(!scrape(&node).is_empty());
    let status = call(node.daemon.socket_path(), "io.dchat.Daemon.Status", json!({}));
    assert_eq!(status["parameters"]["ready"], true, "{status}");
    drop(idle);
}

#[test]
fn a_silent_client_gets_408_after_the_head_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("state"));
    let started = Instant::now();
    let reply = http_raw(node.health, b"GET /health HTTP/1.1\r\n");
    assert_eq!(reply.status, 408, "{}", reply.head);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "took {took:?}"
    );
    assert_eq!(get(node.health, "/health").status, 200);
}

/// Ports of the TCP sockets `pid` listens on, from /proc.
fn tcp_listen_ports(pid: i32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            if cols.get(3) == Some(&"0A") && cols.get(9).is_some_and(|i| inodes.contains(*i)) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Whether something on 127.0.0.1:`port` answers an HTTP request.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\n\r\n");
    let mut start = [0u8; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}

#[test]
fn listeners_are_off_when_the_keys_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mut off = Daemon::builder()
        .dev(tmp.path().join("off"))
        .env("DCHAT_METRICS_LISTEN", "")
        .env("DCHAT_HEALTH_LISTEN", "")
        .notify(true)
        .spawn();
    off.wait_ready(START);
    assert!(!off.log().contains("HTTP listener bound"), "{}", off.log());
    // Whatever else it listens on (P2P, consensus) does not speak HTTP.
    for port in tcp_listen_ports(off.pid()) {
        assert!(!answers_http(port), "port {port} answers HTTP with the listeners off");
    }

    let on = start(&tmp.path().join("on"));
    let ports = tcp_listen_ports(on.daemon.pid());
    assert!(
        ports.contains(&on.metrics.port()) && ports.contains(&on.health.port()),
        "{ports:?}"
    );

    // The same address under both keys is one listener serving every path.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shared = format!("127.0.0.1:{port}");
    let mut both = Daemon::builder()
        .dev(tmp.path().join("both"))
        .env("DCHAT_METRICS_LISTEN", &shared)
        .env("DCHAT_HEALTH_LISTEN", &shared)
        .notify(true)
        .spawn();
    both.wait_ready(START);
    assert_eq!(both.log().matches("HTTP listener bound").count(), 1, "{}", both.log());
    let addr: SocketAddr = shared.parse().unwrap();
    assert_eq!(get(addr, "/metrics").status, 200);
    assert_eq!(get(addr, "/ready").status, 200);
}

#[test]
fn a_taken_port_stops_the_start_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut d = Daemon::builder()
        .dev(tmp.path().join("state"))
        .env("DCHAT_HEALTH_LISTEN", &addr)
        .spawn();
    let status = d.wait_exit(START).expect("dchatd should fail to start");
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains(&format!("key `health.listen`: cannot listen on {addr}")),
        "{log}"
    );
    // The control socket it had bound is cleaned up.
    assert!(!tmp.path().join("state/dchatd.sock").exists());
}

/// Every `dchat_*` name in `text`.
fn metric_names(text: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dchat_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
        _ => {}
    }
}

#[test]
fn packaged_dashboard_and_alert_rules_use_exported_metrics() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let rules = packaging.join("prometheus/dchat-alerts.yml");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(packaging.join("grafana/dchat-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "dchat-overview");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() > 15, "{queries:?}");
    let mut used = metric_names(&queries.join("\n"));
    used.extend(metric_names(&std::fs::read_to_string(&rules).unwrap()));

    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("state"));
    call(
        node.daemon.socket_path(),
        "io.dchat.Accounts.Show",
        json!({ "name": "nobody" }),
    );
    let exported: HashSet<String> = scrape(&node)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "dashboard or alerts use metrics dchatd does not export: {unknown:?}"
    );

    match Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => skip_or_fail("promtool is not installed (Debian package prometheus)"),
    }
}

/// A `dchatctl testnet` directory, brought down when dropped.
struct Testnet {
    dir: std::path::PathBuf,
}

impl Testnet {
    fn ctl(&self, args: &[&str]) {
        let out = Command::new(dchat_testkit::bin("dchatctl"))
            .args(["testnet"])
            .args(args.iter().take(1))
            .arg(&self.dir)
            .args(args.iter().skip(1))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dchatctl testnet {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new(dchat_testkit::bin("dchatctl"))
            .args(["testnet", "down"])
            .arg(&self.dir)
            .args(["--timeout", "5"])
            .output();
    }
}

/// Polls GET /ready until it answers `status`; returns the body.
fn wait_ready_status(addr: SocketAddr, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => get_json(addr, "/ready"),
            Err(_) => (0, Value::Null),
        };
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready did not turn {status} within {within:?}; last {got}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ready_turns_503_when_the_chain_stalls_and_200_when_it_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet {
        dir: tmp.path().join("net"),
    };
    net.ctl(&[
        "init",
        "--validators",
        "4",
        "--relays",
        "0",
        "--users",
        "0",
        "--block-interval-ms",
        "300",
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let health: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Stalled after 5 intervals of 300 ms without a block.
    let config = net.dir.join("validator1/dchatd.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[health]\nlisten = \"{health}\"\nstall_intervals = 5\n"));
    std::fs::write(&config, text).unwrap();
    net.ctl(&["up"]);

    let ready = wait_ready_status(health, 200, Duration::from_secs(60));
    let chain = check(&ready, "chain");
    assert!(
        chain["detail"].as_str().unwrap().contains("limit 5 block intervals"),
        "the stall check runs: {ready}"
    );

    // Two of four validators down: no quorum, no blocks.
    net.ctl(&["down", "validator3", "validator4", "--timeout", "5"]);
    let stalled = wait_ready_status(health, 503, Duration::from_secs(30));
    let chain = check(&stalled, "chain");
    assert_eq!(chain["ok"], false, "{stalled}");
    assert!(chain["detail"].as_str().unwrap().starts_with("stalled"), "{stalled}");
    assert_eq!(get_json(health, "/health").0, 200, "a stall is not a liveness failure");
    let socket = net.dir.join("validator1/dchatd.sock");
    assert_eq!(ctl(&socket, &["health"]).status.code(), Some(1));

    // Back up: blocks again, ready again.
    net.ctl(&["up", "validator3", "validator4"]);
    wait_ready_status(health, 200, Duration::from_secs(60));
    assert_eq!(ctl(&socket, &["health"]).status.code(), Some(0));
}
