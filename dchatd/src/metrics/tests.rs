use std::time::Duration;

use super::exposition::{self, Format};
use super::http::{self, Limits, Method, Refused, Request};
use super::*;

fn text(m: &Metrics) -> String {
    exposition::encode(m.registry(), Format::Text).unwrap()
}

/// The value of the sample line starting with `series ` (name and labels).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_family_of_the_issue_is_registered_with_conventional_names() {
    let m = Metrics::new();
    let out = text(&m);
    for family in [
        "dchat_build_info gauge",
        "dchat_uptime_seconds gauge",
        "dchat_peers_connected gauge",
        "dchat_messages_sent_total counter",
        "dchat_messages_relayed_total counter",
        "dchat_messages_delivered_total counter",
        "dchat_messages_dropped_total counter",
        "dchat_dm_messages_sealed_total counter",
        "dchat_dm_envelopes_sealed_total counter",
        "dchat_dm_batches_resent_total counter",
        "dchat_mailbox_entries gauge",
        "dchat_mailbox_bytes gauge",
        "dchat_relay_circuits_opened_total counter",
        "dchat_relay_circuits_closed_total counter",
        "dchat_control_requests_total counter",
        "dchat_control_request_duration_seconds histogram",
        "dchat_chain_height gauge",
        "dchat_chain_finality_latency_seconds histogram",
        "dchat_mempool_transactions gauge",
        "dchat_database_size_bytes gauge",
        "dchat_database_wal_size_bytes gauge",
        "dchat_ready gauge",
    ] {
        assert!(out.contains(&format!("# TYPE {family}\n")), "no {family} in\n{out}");
    }
    // Families whose label sets are not known in advance (errors by kind)
    // appear with their first sample.
    assert!(!out.contains("dchat_errors_total"), "{out}");
    m.error("control", "io.dchat.Daemon.Internal");
    assert!(text(&m).contains("# TYPE dchat_errors_total counter\n"));
    let build = format!("dchat_build_info{{version=\"{}\"}}", crate::VERSION);
    assert_eq!(sample(&out, &build), Some(1.0), "{out}");
    // Known methods and drop reasons start at zero.
    assert_eq!(
        sample(&out, "dchat_control_requests_total{method=\"io.dchat.Daemon.Status\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&out, "dchat_messages_dropped_total{reason=\"bad_signature\"}"),
        Some(0.0)
    );
}

#[test]
fn control_requests_are_counted_by_method_with_bounded_labels() {
    let m = Metrics::new();
    m.control_request("io.dchat.Daemon.Status", Some(Duration::from_micros(150)), None);
    m.control_request(
        "io.dchat.Nope.Whatever",
        Some(Duration::from_micros(10)),
        Some("org.varlink.service.InterfaceNotFound"),
    );
    m.control_request("x.y.Z", None, Some("org.varlink.service.InterfaceNotFound"));
    let out = text(&m);
    assert_eq!(
        sample(&out, "dchat_control_requests_total{method=\"io.dchat.Daemon.Status\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "dchat_control_requests_total{method=\"unknown\"}"),
        Some(2.0)
    );
    assert!(!out.contains("io.dchat.Nope"), "{out}");
    // The stream (no duration) is counted but not timed.
    assert_eq!(
        sample(&out, "dchat_control_request_duration_seconds_count{method=\"unknown\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &out,
            "dchat_control_request_duration_seconds_bucket{le=\"0.00025\",method=\"io.dchat.Daemon.Status\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &out,
            "dchat_errors_total{subsystem=\"control\",kind=\"org.varlink.service.InterfaceNotFound\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn observed_node_facts_show_up() {
    let m = Metrics::new();
    m.observe(&NodeFacts {
        uptime: Duration::from_secs(42),
        ready: false,
        checks: vec![("database".into(), true), ("chain".into(), false)],
        accounts: 3,
        peers: 5,
        height: 9,
        mempool: 2,
        database_bytes: 4096,
        wal_bytes: 8192,
    });
    m.message_dropped(DropReason::Duplicate);
    let out = text(&m);
    for (series, value) in [
        ("dchat_uptime_seconds", 42.0),
        ("dchat_ready", 0.0),
        ("dchat_health_check_ok{check=\"database\"}", 1.0),
        ("dchat_health_check_ok{check=\"chain\"}", 0.0),
        ("dchat_local_accounts", 3.0),
        ("dchat_peers_connected", 5.0),
        ("dchat_chain_height", 9.0),
        ("dchat_mempool_transactions", 2.0),
        ("dchat_database_size_bytes", 4096.0),
        ("dchat_database_wal_size_bytes", 8192.0),
        ("dchat_messages_dropped_total{reason=\"duplicate\"}", 1.0),
    ] {
        assert_eq!(sample(&out, series), Some(value), "{series} in\n{out}");
    }
}

#[test]
fn classic_text_renames_counter_and_info_families_and_drops_openmetrics_lines() {
    let om = "# HELP dchat_build Build.\n# TYPE dchat_build info\ndchat_build_info{version=\"1\"} 1\n\
              # HELP dchat_x Things.\n# TYPE dchat_x counter\ndchat_x_total 3\n\
              # HELP dchat_up_seconds Up.\n# TYPE dchat_up_seconds gauge\n# UNIT dchat_up_seconds seconds\ndchat_up_seconds 5\n\
              # HELP dchat_weird Odd.\n# TYPE dchat_weird stateset\ndchat_weird 1\n# EOF\n";
    let classic = exposition::to_classic_text(om);
    assert_eq!(
        classic,
        "# HELP dchat_build_info Build.\n# TYPE dchat_build_info gauge\ndchat_build_info{version=\"1\"} 1\n\
         # HELP dchat_x_total Things.\n# TYPE dchat_x_total counter\ndchat_x_total 3\n\
         # HELP dchat_up_seconds Up.\n# TYPE dchat_up_seconds gauge\ndchat_up_seconds 5\n\
         # HELP dchat_weird Odd.\n# TYPE dchat_weird untyped\ndchat_weird 1\n"
    );
    // The OpenMetrics rendering is prometheus-client's own, ending in EOF.
    let m = Metrics::new();
    let openmetrics = exposition::encode(m.registry(), Format::OpenMetrics).unwrap();
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE dchat_messages_sent counter\n"));
}

#[test]
fn content_negotiation_follows_the_accept_header() {
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
    // What Prometheus 2.x sends.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain")),
        Format::Text
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0")),
        Format::Text
    );
}

fn parse(head: &str) -> Result<Request, u16> {
    http::parse_head(head.as_bytes(), &Limits::default()).map_err(|r| r.status)
}

#[test]
fn request_heads_are_parsed_strictly() {
    let ok = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n").unwrap();
    assert_eq!(
        ok,
        Request {
            method: Method::Get,
            path: "/metrics".into(),
            accept: Some("text/plain".into())
        }
    );
    assert_eq!(parse("HEAD /ready HTTP/1.0\n\n").unwrap().method, Method::Head);
    assert_eq!(parse("POST /metrics HTTP/1.1\r\n\r\n"), Err(405));
    assert_eq!(parse("DELETE /ready HTTP/1.1\r\n\r\n"), Err(405));
    assert_eq!(parse("GET /metrics HTTP/2.0\r\n\r\n"), Err(505));
    assert_eq!(parse("GET /metrics\r\n\r\n"), Err(400));
    assert_eq!(parse("GET  /metrics HTTP/1.1\r\n\r\n"), Err(400));
    assert_eq!(parse("GET http://x/metrics HTTP/1.1\r\n\r\n"), Err(400));
    assert_eq!(parse("G@T /metrics HTTP/1.1\r\n\r\n"), Err(400));
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n"), Err(400));
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), Err(400));
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), Err(413));
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Err(400));
    assert_eq!(
        parse("GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .path,
        "/metrics"
    );
    assert_eq!(
        parse("GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(413)
    );
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
    assert_eq!(parse(&long_target), Err(414));
}

async fn read(bytes: &[u8]) -> Result<Request, Refused> {
    let mut io = bytes;
    http::read_request(&mut io, &Limits::default()).await
}

fn status_of(r: Result<Request, Refused>) -> Option<u16> {
    match r {
        Err(Refused::Respond(resp)) => Some(resp.status),
        _ => None,
    }
}

#[tokio::test]
async fn reading_stops_at_the_caps() {
    assert!(read(b"GET /health HTTP/1.1\r\n\r\nextra body").await.is_ok());
    assert_eq!(read(b"").await, Err(Refused::Gone));
    assert_eq!(status_of(read(b"GET /health HTTP/1.1\r\nHost: x\r\n").await), Some(400));
    let huge_header = format!("GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    assert_eq!(status_of(read(huge_header.as_bytes()).await), Some(431));
    let endless_line = "G".repeat(20_000);
    assert_eq!(status_of(read(endless_line.as_bytes()).await), Some(414));
}

#[test]
fn responses_close_the_connection_and_head_has_no_body() {
    let r = http::Response::new(200, http::JSON, "{}");
    let get = String::from_utf8(r.to_bytes(false)).unwrap();
    assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
    assert!(get.contains("Content-Length: 2\r\n") && get.contains("Connection: close\r\n"));
    assert!(get.ends_with("\r\n\r\n{}"));
    let head = String::from_utf8(r.to_bytes(true)).unwrap();
    assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 2\r\n"));
    let not_allowed = String::from_utf8(http::Response::error(405, "no").to_bytes(false)).unwrap();
    assert!(not_allowed.contains("Allow: GET, HEAD\r\n"), "{not_allowed}");
}
