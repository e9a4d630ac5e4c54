//! Sockets inside a node's network namespace, from the harness process: a
//! short-lived thread enters the namespace (`setns(2)` affects only the
//! calling thread), connects, and returns. Used to probe that a server
//! listens and to fetch `/stats` JSON from realservers and balancers.
//! The HTTP response parser is pure ([`parse_response`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use crate::exec::NETNS_DIR;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The namespace could not be entered.
    #[error("cannot enter namespace {ns}: {source}")]
    Enter {
        /// Namespace name.
        ns: String,
        /// OS error.
        source: io::Error,
    },
    /// Connect, send or receive failed.
    #[error("{url} (in {ns}): {source}")]
    Io {
        /// Namespace name.
        ns: String,
        /// What was fetched.
        url: String,
        /// OS error.
        source: io::Error,
    },
    /// The answer is not a complete HTTP response.
    #[error("{url} (in {ns}): bad HTTP response: {msg}")]
    Http {
        /// Namespace name.
        ns: String,
        /// What was fetched.
        url: String,
        /// What is wrong.
        msg: String,
    },
    /// A status other than 200.
    #[error("{url} (in {ns}): HTTP status {status}: {body}")]
    Status {
        /// Namespace name.
        ns: String,
        /// What was fetched.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// Runs `f` on a fresh thread that has entered network namespace `ns`
/// (`/run/netns/NS`), and returns its result.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let handle = std::fs::File::open(Path::new(NETNS_DIR).join(ns))?;
    let t = std::thread::spawn(move || -> io::Result<T> {
        // SAFETY: setns(2) with a valid namespace descriptor that `handle`
        // keeps open; it switches only this (short-lived) thread.
        let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    });
    t.join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Whether something accepts TCP connections at `addr` inside `ns`.
pub fn tcp_probe(ns: &str, addr: SocketAddr, timeout: Duration) -> bool {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, timeout).is_ok()
    })
    .unwrap_or(false)
}

/// `GET path` from `addr` inside `ns` (HTTP/1.1, `Connection: close`);
/// returns the body of a 200 response.
pub fn http_get(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, FetchError> {
    let url = format!("http://{addr}{path}");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = in_netns(ns, move || -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(req.as_bytes())?;
        let mut buf = Vec::new();
        s.take(16 << 20).read_to_end(&mut buf)?;
        Ok(buf)
    })
    .map_err(|source| FetchError::Enter {
        ns: ns.into(),
        source,
    })?
    .map_err(|source| FetchError::Io {
        ns: ns.into(),
        url: url.clone(),
        source,
    })?;
    let (status, body) = parse_response(&raw).map_err(|msg| FetchError::Http {
        ns: ns.into(),
        url: url.clone(),
        msg,
    })?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        return Err(FetchError::Status {
            ns: ns.into(),
            url,
            status,
            body: body.chars().take(200).collect(),
        });
    }
    Ok(body)
}

/// Splits a complete HTTP/1.x response (read until the server closed) into
/// status and body, honouring `Content-Length` and chunked encoding.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of header (\\r\\n\\r\\n) before the connection closed")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "header is not UTF-8")?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line `{status_line}` is not HTTP/1.x"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("status line `{status_line}` has no numeric status"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("header line `{l}` has no colon"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("Content-Length `{v}` is not a number"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    if chunked {
        return dechunk(rest).map(|b| (status, b));
    }
    match length {
        Some(n) if rest.len() < n => Err(format!(
            "body is {} bytes, Content-Length says {n}",
            rest.len()
        )),
        Some(n) => Ok((status, rest[..n].to_vec())),
        None => Ok((status, rest.to_vec())),
    }
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| "chunk size is not UTF-8")?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size `{hex}`"))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if b.len() < n + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(r).unwrap(), (200, b"{\"a\":1}".to_vec()));
    }

    #[test]
    fn chunked_and_eof_bodies() {
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=1\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap().1, b"{\"a\":1}");
        let r = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert_eq!(parse_response(r).unwrap(), (404, b"nope".to_vec()));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for (raw, needle) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
                "Content-Length says 9",
            ),
            (b"HTTP/1.1 200 OK\r\n", "no end of header"),
            (b"SSH-2.0\r\n\r\n", "not HTTP/1.x"),
            (b"HTTP/1.1 abc\r\n\r\n", "no numeric status"),
            (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "no colon"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab",
                "truncated",
            ),
        ] {
            let e = parse_response(raw).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn unknown_namespace_is_an_error() {
        let e = http_get(
            "bal-no-such-ns",
            "127.0.0.1:1".parse().unwrap(),
            "/stats",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::Enter { .. }), "{e}");
        assert!(!tcp_probe(
            "bal-no-such-ns",
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_millis(100)
        ));
    }
}
