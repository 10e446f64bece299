//! Just enough HTTP/1.1 for probes and scrapers: one GET or HEAD per
//! connection, no request body, `Connection: close`. Everything else is
//! refused with the fitting 4xx. Why not hyper: docs/adr/0007-observability.md.
//!
//! The request head is read under a size cap and a deadline (a client that
//! trickles bytes is cut off), parsed strictly, and only the request line and
//! the headers we use are looked at.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Longest request line, in bytes.
    pub max_request_line: usize,
    /// Time from accept to the end of the request head.
    pub head_timeout: Duration,
    /// Time to write the response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_request_line: 2 * 1024,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A request we are willing to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    pub accept: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// An error response with a one-line plain-text reason.
    pub fn error(status: u16, reason: &str) -> Response {
        Response::new(status, TEXT, format!("{status} {}: {reason}\n", reason_phrase(status)))
    }

    /// The bytes on the wire; HEAD gets the headers of the GET answer only.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// How reading a request ended, when it did not give a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Answer with this response, then close.
    Respond(Response),
    /// The client left (or sent nothing): close without a word.
    Gone,
}

/// Reads and parses one request head from `io` within the limits. The
/// caller applies `limits.head_timeout` around it.
pub async fn read_request<R: AsyncRead + Unpin>(io: &mut R, limits: &Limits) -> Result<Request, Refused> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            return parse_head(&buf[..end], limits).map_err(Refused::Respond);
        }
        let line_done = buf.contains(&b'\n');
        if !line_done && buf.len() > limits.max_request_line {
            return Err(Refused::Respond(Response::error(414, "request line too long")));
        }
        if buf.len() > limits.max_head {
            return Err(Refused::Respond(Response::error(431, "request head too large")));
        }
        let n = match io.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Err(Refused::Gone),
            Ok(0) => return Err(Refused::Respond(Response::error(400, "incomplete request head"))),
            Ok(n) => n,
            Err(_) => return Err(Refused::Gone),
        };
        // Never hold more than the cap (plus what proves it was exceeded).
        let room = (limits.max_head + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// Where the head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a complete request head (request line, headers, blank line).
pub fn parse_head(head: &[u8], limits: &Limits) -> Result<Request, Response> {
    let bad = |reason: &str| Response::error(400, reason);
    if head.len() > limits.max_head {
        return Err(Response::error(431, "request head too large"));
    }
    let text = std::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    if request_line.len() > limits.max_request_line {
        return Err(Response::error(414, "request line too long"));
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("request line is not METHOD TARGET HTTP/1.x"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(bad("invalid method"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") && v.len() > 5 && v[5..].bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            return Err(Response::error(505, "only HTTP/1.0 and HTTP/1.1 are served"));
        }
        _ => return Err(bad("invalid HTTP version")),
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("request target must be a path"));
    }

    let mut accept = None;
    let mut body = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad("folded header lines are not accepted"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("header line without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(bad("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            body = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(0) => {}
                Ok(_) => body = true,
                Err(_) => return Err(bad("invalid Content-Length")),
            }
        }
    }

    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(Response::error(405, "only GET and HEAD are served")),
    };
    if body {
        return Err(Response::error(413, "requests with a body are not accepted"));
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_string();
    Ok(Request { method, path, accept })
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Writes `response` and closes our side. What the client still sends (a
/// body we refused, a pipelined request) is read and discarded for a moment,
/// so closing does not reset the connection before the response is read.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    response: &Response,
    head_only: bool,
    limits: &Limits,
) {
    let bytes = response.to_bytes(head_only);
    let written = tokio::time::timeout(limits.write_timeout, async {
        io.write_all(&bytes).await?;
        io.flush().await?;
        io.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// How long, and how much, is read and discarded after the response.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1 << 20;
