//! Plain HTTP/1.1 by hand, so that the tests can send what no client
//! library would (bad heads, huge bodies, silence) and read the reply as
//! the bytes that came back.

use super::*;

pub(crate) struct HttpReply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// Sends `request` as raw bytes and reads the reply until the server closes.
pub(crate) fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpReply {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => panic!(
                "reading the reply to {:?}: {e}",
                String::from_utf8_lossy(&request[..request.len().min(80)])
            ),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    HttpReply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> HttpReply {
    http_raw(addr, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
}

pub(crate) fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let reply = get(addr, path);
    let body = serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", reply.body));
    (reply.status, body)
}

/// The value of the series `series` (name and labels, as written) in a
/// classic-format scrape; None when absent.
pub(crate) fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}
