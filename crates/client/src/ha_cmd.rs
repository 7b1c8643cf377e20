//! `ctictl ha status` and `ctictl ha switchover`: the HTTP side of a pair of ctid nodes
//! (docs/protocol.md §6.10).
//!
//! * `status` — `GET /api/ha` on each listed server (the HTTP base `http://host:port` is derived
//!   from its WebSocket URL), one table row per server: node, role, term, lease holder,
//!   applied_seq, lag, ready. `--json`: one line per server, `{"server":…,"ha":<the answer>}` or
//!   `{"server":…,"error":…}`. Exit 0 when every server answered, else 1.
//! * `switchover [--to NODE]` — `POST /admin/ha/switchover[?to=NODE]` with the admin token as a
//!   bearer, to the primary: the one whose `/api/ha` says so (or the lease's URL), else each
//!   listed server in turn, skipping those that answer 409 `not primary`. Prints the answer
//!   (exit 0) or the refusal on stderr (exit 1); exit 2 when no server could be reached or no
//!   admin token is given.
//!
//! The client crate has no HTTP client and these are two small requests, so a minimal HTTP/1.1
//! exchange over a tokio `TcpStream` is written here (`Connection: close`, a `Content-Length` or
//! chunked body, size and time bounded) instead of adding a dependency. Like the WebSocket side
//! of ctictl it speaks no TLS: an `https` base is refused with a clear message.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The largest HTTP answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Where a server's HTTP endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBase {
    /// `host:port` as written in the URL (the `Host` header).
    authority: String,
    host: String,
    port: u16,
}

impl HttpBase {
    /// The HTTP base of a ctid URL: `ws://h:p/ws?…` → `http://h:p` (`http://…` is taken as it
    /// is). `wss`/`https` are refused: ctictl speaks no TLS.
    pub fn of(url: &str) -> Result<HttpBase, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL (ws://host:port/ws)"))?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => 80,
            "wss" | "https" => {
                return Err(format!("{url}: ctictl speaks no TLS (wss/https)"));
            }
            other => return Err(format!("{url}: unknown scheme {other:?}")),
        };
        let authority = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unclosed [ in the host"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse()
                .map_err(|_| format!("{url}: {p:?} is not a port"))?,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(HttpBase {
            authority: authority.to_owned(),
            host,
            port,
        })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// One HTTP/1.1 request (`Connection: close`, no body) and its answer, within `timeout`.
pub async fn http(
    base: &HttpBase,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let what = format!("{method} {}{path}", base.url());
    let exchange = async {
        let mut s = TcpStream::connect((base.host.as_str(), base.port))
            .await
            .map_err(|e| format!("{what}: cannot connect: {e}"))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: ctictl\r\n",
            base.authority
        );
        if let Some(t) = bearer {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if method == "POST" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER {
                return Err(format!("{what}: answer larger than {MAX_ANSWER} bytes"));
            }
        }
        parse_answer(&buf).map_err(|e| format!("{what}: {e}"))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(r) => r,
        Err(_elapsed) => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

/// Parses a whole HTTP/1.x answer (read to the end of the connection).
fn parse_answer(buf: &[u8]) -> Result<Answer, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP answer")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            body = body
                .get(..n)
                .ok_or("the body is shorter than its Content-Length")?;
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a chunked body.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut")?;
        let line = String::from_utf8_lossy(&b[..eol]);
        let size = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..n).ok_or("a chunk is cut")?);
        b = b.get(n + 2..).ok_or("a chunk is cut")?;
    }
}

/// `%XX` for every byte outside `A–Z a–z 0–9 - . _ ~`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/ha` of one server: its HTTP base and the answer (JSON), or why there is none.
struct View {
    server: String,
    ha: Result<Value, String>,
}

async fn views(servers: &[String], bearer: Option<&str>, timeout: Duration) -> Vec<View> {
    let mut out = Vec::new();
    for url in servers {
        let (server, ha) = match HttpBase::of(url) {
            Err(e) => (url.clone(), Err(e)),
            Ok(base) => {
                let ha = match http(&base, "GET", "/api/ha", bearer, timeout).await {
                    Ok(a) if a.status == 200 => serde_json::from_str::<Value>(&a.body)
                        .map_err(|e| format!("/api/ha is not JSON ({e}): {}", a.body.trim())),
                    Ok(a) => Err(format!("HTTP {}: {}", a.status, a.body.trim())),
                    Err(e) => Err(e),
                };
                (base.url(), ha)
            }
        };
        out.push(View { server, ha });
    }
    out
}

/// A field of `/api/ha` for the table: `-` when absent.
fn cell(v: &Value, path: &[&str]) -> String {
    let mut at = v;
    for k in path {
        match at.get(k) {
            Some(x) => at = x,
            None => return "-".into(),
        }
    }
    match at {
        Value::Null => "-".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ctictl ha status`; the exit status.
pub async fn status(servers: &[String], bearer: Option<&str>, json: bool, timeout: Duration) -> u8 {
    let views = views(servers, bearer, timeout).await;
    let all = views.iter().all(|v| v.ha.is_ok());
    if json {
        for v in &views {
            let line = match &v.ha {
                Ok(ha) => json!({"server": v.server, "ha": ha}),
                Err(e) => json!({"server": v.server, "error": e}),
            };
            println!("{line}");
        }
        return if all { 0 } else { 1 };
    }
    let header = [
        "SERVER",
        "NODE",
        "ROLE",
        "TERM",
        "LEASE HOLDER",
        "APPLIED_SEQ",
        "LAG",
        "READY",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for v in &views {
        match &v.ha {
            Ok(ha) => rows.push(vec![
                v.server.clone(),
                cell(ha, &["node"]),
                cell(ha, &["role"]),
                cell(ha, &["term"]),
                cell(ha, &["lease", "holder"]),
                cell(ha, &["applied_seq"]),
                cell(ha, &["lag"]),
                cell(ha, &["ready"]),
            ]),
            Err(e) => {
                let prefix = format!("GET {}/api/ha: ", v.server);
                let e = e.strip_prefix(&prefix).unwrap_or(e);
                rows.push(vec![v.server.clone(), format!("error: {e}")]);
            }
        }
    }
    // Widths from the full rows only: an error row's message runs on.
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows.iter().filter(|r| r.len() == header.len()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    widths[0] = widths[0].max(rows.iter().map(|r| r[0].len()).max().unwrap_or(0));
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
    if all {
        0
    } else {
        1
    }
}

/// `ctictl ha switchover [--to NODE]`; the exit status.
pub async fn switchover(
    servers: &[String],
    bearer: Option<&str>,
    admin: &str,
    to: Option<&str>,
    timeout: Duration,
) -> u8 {
    // The primary first (as the nodes see it), then every listed server.
    let views = views(servers, bearer.or(Some(admin)), timeout).await;
    let mut candidates: Vec<HttpBase> = Vec::new();
    let mut add = |url: &str| {
        if let Ok(b) = HttpBase::of(url) {
            if !candidates.contains(&b) {
                candidates.push(b);
            }
        }
    };
    for v in &views {
        if let Ok(ha) = &v.ha {
            if ha.get("role").and_then(Value::as_str) == Some("primary") {
                add(&v.server);
            }
        }
    }
    for v in &views {
        if let Some(url) =
            v.ha.as_ref()
                .ok()
                .and_then(|ha| ha.get("lease")?.get("url")?.as_str())
        {
            add(url);
        }
    }
    for url in servers {
        add(url);
    }
    let path = match to {
        Some(node) => format!("/admin/ha/switchover?to={}", percent_encode(node)),
        None => "/admin/ha/switchover".to_owned(),
    };
    let mut skipped = Vec::new();
    let mut reached = false;
    for base in &candidates {
        match http(base, "POST", &path, Some(admin), timeout).await {
            Ok(a) if a.status == 200 => {
                println!("{}", a.body.trim_end());
                return 0;
            }
            Ok(a) if a.status == 409 && a.body.contains("not primary") => {
                reached = true;
                skipped.push(format!("{}: {}", base.url(), a.body.trim()));
            }
            Ok(a) => {
                eprintln!(
                    "ctictl: switchover refused by {} (HTTP {}): {}",
                    base.url(),
                    a.status,
                    a.body.trim()
                );
                return 1;
            }
            Err(e) => skipped.push(e),
        }
    }
    eprintln!(
        "ctictl: no listed server is the primary ({})",
        skipped.join("; ")
    );
    if reached {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_base_of_a_websocket_url() {
        let b = HttpBase::of("ws://10.0.0.1:7000/ws?token=x").unwrap();
        assert_eq!(
            (b.url(), b.host.as_str(), b.port),
            ("http://10.0.0.1:7000".into(), "10.0.0.1", 7000)
        );
        let b = HttpBase::of("ws://ctid-a/ws").unwrap();
        assert_eq!((b.url(), b.port), ("http://ctid-a".into(), 80));
        let b = HttpBase::of("ws://[::1]:7001/ws").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 7001));
        assert!(HttpBase::of("wss://a:7000/ws")
            .unwrap_err()
            .contains("no TLS"));
        assert!(HttpBase::of("a:7000").is_err());
        assert!(HttpBase::of("ws://a:x/ws").is_err());
    }

    #[test]
    fn answers_with_a_length_or_chunks() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "{}"));
        let a = parse_answer(
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n7\r\nprimary\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((a.status, a.body.as_str()), (409, "not primary"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }
}
