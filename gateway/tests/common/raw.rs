//! Raw HTTP/1.1 over TCP for the connection tests: connecting from a chosen
//! loopback source address, reading what the gateway sends until it closes,
//! parsing a response, reading a metric.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

/// Writes all of `buf` (tokio's `net` feature only: no `io-util` here).
pub async fn send(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is there (at least one byte, or 0 at EOF).
pub async fn recv(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The socket address of a `http://127.0.0.1:PORT` URL.
pub fn sock_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a http://IP:PORT url")
}

/// `127.0.0.last`.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Connects to `to` from `from` (any loopback address: Linux routes all of
/// 127.0.0.0/8 to the loopback interface).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// What a connection received until it was closed (or `within` ran out).
#[derive(Debug)]
pub struct Received {
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// The peer closed (EOF or reset) before `within` ran out.
    pub closed: bool,
    /// When the close was seen.
    pub at: Instant,
}

/// Reads until the peer closes or `within` runs out.
pub async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Received {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, recv(s, &mut buf)).await {
            Err(_) => {
                return Received {
                    bytes,
                    closed: false,
                    at: Instant::now(),
                };
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Received {
                    bytes,
                    closed: true,
                    at: Instant::now(),
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Bytes after this response (pipelined answers).
    pub rest: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answer body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// Asserts the API's JSON error shape with `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{status} without a JSON content type: {self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
}

/// Parses one response (with a `content-length` body) from `bytes`.
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let start = end + 4;
    if bytes.len() < start + len {
        return None;
    }
    Some(Response {
        status,
        headers,
        body: bytes[start..start + len].to_vec(),
        rest: bytes[start + len..].to_vec(),
    })
}

/// Sends `request` on `s` and reads one response (within 10 s).
pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> Response {
    send(s, request).await.expect("send the request");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = parse_response(&bytes) {
            return r;
        }
        match tokio::time::timeout_at(deadline, recv(s, &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection closed before a whole answer: {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Err(_) => panic!(
                "no whole answer within 10 s: {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` with keep-alive.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: gateway\r\n\r\n").into_bytes()
}

/// The gateway's `/metrics` text (over a fresh connection from 127.0.0.1).
pub async fn metrics(addr: SocketAddr) -> String {
    let mut s = connect_from(loopback(1), addr).await.expect("connect");
    let r = exchange(&mut s, &get("/metrics")).await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).expect("metrics are text")
}

/// The value of the metric line starting with `series` (name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A spawned gateway that is killed when dropped (also when a test panics).
pub struct Proc(Option<std::process::Child>);

impl Proc {
    /// Takes the child out (it is no longer killed on drop).
    pub fn take(mut self) -> std::process::Child {
        self.0.take().expect("present")
    }
}

impl From<std::process::Child> for Proc {
    fn from(c: std::process::Child) -> Self {
        Proc(Some(c))
    }
}

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("present")
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("present")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
