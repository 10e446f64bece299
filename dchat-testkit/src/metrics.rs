//! The daemon's Prometheus endpoint, as tests read it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::Daemon;

/// Where a daemon started with `DCHAT_METRICS_LISTEN=127.0.0.1:0` serves
/// its metrics, from the line it logs when the listener is bound.
pub fn metrics_addr(daemon: &Daemon, timeout: Duration) -> SocketAddr {
    let line = daemon.wait_log(&["HTTP listener bound", "metrics.listen"], timeout);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
}

/// The value of `series` (a name with its labels, as printed) in a
/// classic-format scrape of `addr`'s /metrics; 0 when it is not there.
pub fn scrape_value(addr: SocketAddr, series: &str) -> f64 {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the scrape");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap_or_else(|_| panic!("{series} is {v:?}")))
}
