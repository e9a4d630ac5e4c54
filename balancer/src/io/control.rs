//! The control endpoint: a tiny HTTP/1.1 server on its own std thread
//! (`GET /stats` → the JSON [`StatusDoc`], `GET /membership` → its
//! membership part, `POST /drain`, `POST /undrain`, `POST
//! /weight?target=T&weight=W` → carried out by the packet thread; 404
//! elsewhere), and the client the `balancer` subcommands use.
//!
//! The packet thread owns the engine, so the control thread never locks
//! it: it sends a reply channel to the packet thread, wakes it through the
//! self-pipe, and waits (bounded) for the document. Requests are handled
//! one at a time with an 8 KiB head limit and deadlines per phase (head
//! [`REQUEST_DEADLINE`] from accept, answer [`ANSWER_WAIT`], reply
//! [`WRITE_DEADLINE`], [`LINGER`]), so a slow or trickling client holds
//! the endpoint for at most 4.75 s in all, and never delays packets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use balancer::sched::Target;
use balancer::status::StatusDoc;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8192;
/// Deadline for a request's head, from the connection's accept: a client
/// that has not sent a whole head by then gets 408.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// Longest wait for the packet thread's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Deadline for writing the reply, from when it is ready.
pub const WRITE_DEADLINE: Duration = Duration::from_millis(500);

/// How long the reply's connection lingers for the client to read it.
pub const LINGER: Duration = Duration::from_millis(250);

/// Time left before `deadline` at `now`; `None` once it has passed (a zero
/// socket timeout would mean "wait forever", so it is never returned).
pub fn time_left(deadline: Instant, now: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(now)
        .filter(|d| !d.is_zero())
}

/// An operator command, carried out by the packet thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Withdraw from ownership (established flows continue).
    Drain,
    /// Undo [`Command::Drain`].
    Undrain,
    /// Set a target's scheduling weight (0 quiesces it).
    Weight {
        /// The target.
        target: Target,
        /// Its new weight.
        weight: u32,
    },
}

/// A request to the packet thread, with the channel for its answer.
#[derive(Debug)]
pub enum Request {
    /// The status document.
    Doc(SyncSender<StatusDoc>),
    /// A command; the answer is a message or why it was refused.
    Command(Command, SyncSender<Result<String, String>>),
}

/// Parses a target name: `local`, `realN` or `real[N]`.
pub fn parse_target(s: &str) -> Option<Target> {
    if s == "local" {
        return Some(Target::Local);
    }
    let n = s.strip_prefix("real")?;
    let n = n
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(n);
    n.parse().ok().map(Target::Real)
}

fn parse_command(path: &str, query: &str) -> Result<Command, String> {
    match path {
        "/drain" => Ok(Command::Drain),
        "/undrain" => Ok(Command::Undrain),
        _ => {
            let (mut target, mut weight) = (None, None);
            for kv in query.split('&') {
                match kv.split_once('=') {
                    Some(("target", v)) => target = Some(v),
                    Some(("weight", v)) => weight = Some(v),
                    _ => {
                        return Err(format!(
                            "unknown parameter {kv:?} (expected target=T&weight=W)"
                        ))
                    }
                }
            }
            let t = target.ok_or("missing target=local|realN")?;
            let target =
                parse_target(t).ok_or_else(|| format!("target {t:?}: expected local or realN"))?;
            let w = weight.ok_or("missing weight=W")?;
            let weight = w
                .parse::<u32>()
                .ok()
                .filter(|w| i64::from(*w) <= balancer::config::MAX_WEIGHT)
                .ok_or_else(|| format!("weight {w:?}: expected an integer 0..=65535"))?;
            Ok(Command::Weight { target, weight })
        }
    }
}

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /stats` (query string ignored).
    Stats,
    /// `HEAD /stats`.
    StatsHead,
    /// `GET /membership`: the membership part of the document.
    Membership,
    /// `POST /drain`, `/undrain`, `/weight?..`.
    Command(Command),
    /// A command with bad parameters (400, with the reason).
    BadCommand(String),
    /// A path we do not serve.
    NotFound,
    /// Another method on /stats.
    MethodNotAllowed,
}

/// Parses a request head. `Ok(None)`: incomplete, read more. Errors are
/// the HTTP status to answer with.
pub fn parse_head(buf: &[u8]) -> Result<Option<Route>, u16> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= MAX_HEAD {
            return Err(431);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| 400u16)?;
    let line = head.lines().next().unwrap_or_default();
    let mut it = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(505);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(match (method, path) {
        ("GET", "/stats") => Route::Stats,
        ("GET", "/membership") => Route::Membership,
        ("POST", "/drain" | "/undrain" | "/weight") => match parse_command(path, query) {
            Ok(c) => Route::Command(c),
            Err(e) => Route::BadCommand(e),
        },
        ("HEAD", "/stats") => Route::StatsHead,
        (_, "/stats") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }))
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response (always `Connection: close`).
pub fn response(code: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        reason(code),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Binds the control listener (before the loop starts, so a bad address
/// fails at startup).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen on control address {addr}"))
}

/// Starts the control thread. Documents are requested on `requests`; the
/// `wake` handle (the self-pipe's write end) nudges the packet loop.
pub fn spawn(
    listener: TcpListener,
    requests: Sender<Request>,
    wake: std::fs::File,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let deadline = Instant::now() + REQUEST_DEADLINE;
                if let Err(e) = handle(stream, &requests, &wake, deadline) {
                    // Client errors (timeouts, resets) are not ours to shout about.
                    let _ = e;
                }
            }
        })
        .context("cannot start the control thread")?;
    Ok(())
}

/// Reads the request head until it parses or `deadline` passes (408).
fn read_route(s: &mut TcpStream, deadline: Instant) -> std::io::Result<Option<Result<Route, u16>>> {
    let mut buf = [0u8; MAX_HEAD];
    let mut n = 0;
    let route = loop {
        match parse_head(&buf[..n]) {
            Ok(Some(r)) => break Ok(r),
            Err(code) => break Err(code),
            Ok(None) => {}
        }
        let Some(left) = time_left(deadline, Instant::now()) else {
            break Err(408);
        };
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[n..]) {
            Ok(0) => return Ok(None),
            Ok(k) => n += k,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break Err(408)
            }
            Err(e) => return Err(e),
        }
    };
    Ok(Some(route))
}

/// Writes `bytes` unless `deadline` passes first (a client reading slowly
/// gets a cut reply, not the endpoint).
fn write_by(s: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = time_left(deadline, Instant::now())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
        s.set_write_timeout(Some(left))?;
        match s.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(k) => bytes = &bytes[k..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn handle(
    mut s: TcpStream,
    requests: &Sender<Request>,
    wake: &std::fs::File,
    deadline: Instant,
) -> std::io::Result<()> {
    let Some(route) = read_route(&mut s, deadline)? else {
        return Ok(());
    };
    let reply = match route {
        Ok(Route::Stats) | Ok(Route::StatsHead) => {
            let head_only = route == Ok(Route::StatsHead);
            match fetch_doc(requests, wake) {
                Some(d) => response(200, "application/json", &(d.to_json() + "\n"), head_only),
                None => response(503, "text/plain", "packet loop not answering\n", head_only),
            }
        }
        Ok(Route::Membership) => match fetch_doc(requests, wake) {
            Some(StatusDoc {
                membership: Some(m),
                ..
            }) => {
                let body = serde_json::to_string_pretty(&m).unwrap_or_default() + "\n";
                response(200, "application/json", &body, false)
            }
            Some(_) => response(
                404,
                "text/plain",
                "no membership: this balancer has no peers configured\n",
                false,
            ),
            None => response(503, "text/plain", "packet loop not answering\n", false),
        },
        Ok(Route::Command(c)) => {
            let (tx, rx) = mpsc::sync_channel(1);
            let r = requests.send(Request::Command(c, tx)).ok().and_then(|_| {
                let _ = (&mut &*wake).write(&[1]);
                rx.recv_timeout(ANSWER_WAIT).ok()
            });
            match r {
                Some(Ok(m)) => response(200, "text/plain", &(m + "\n"), false),
                Some(Err(e)) => response(409, "text/plain", &(e + "\n"), false),
                None => response(503, "text/plain", "packet loop not answering\n", false),
            }
        }
        Ok(Route::BadCommand(e)) => response(400, "text/plain", &(e + "\n"), false),
        Ok(Route::NotFound) => response(
            404,
            "text/plain",
            "not found (try GET /stats or GET /membership)\n",
            false,
        ),
        Ok(Route::MethodNotAllowed) => response(405, "text/plain", "only GET and HEAD\n", false),
        Err(code) => response(code, "text/plain", &format!("{}\n", reason(code)), false),
    };
    write_by(&mut s, &reply, Instant::now() + WRITE_DEADLINE)?;
    linger(&mut s)
}

/// After the reply: send FIN, then discard what the client still sends
/// for at most [`LINGER`], so that closing with unread input (a trickler
/// cut off by the deadline) does not reset the connection before the
/// client has read its reply (the reason for Apache's lingering close).
fn linger(s: &mut TcpStream) -> std::io::Result<()> {
    s.shutdown(std::net::Shutdown::Write)?;
    let end = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    while let Some(left) = time_left(end, Instant::now()) {
        s.set_read_timeout(Some(left))?;
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Asks the packet thread for a document (bounded wait).
fn fetch_doc(requests: &Sender<Request>, mut wake: &std::fs::File) -> Option<StatusDoc> {
    let (tx, rx) = mpsc::sync_channel(1);
    requests.send(Request::Doc(tx)).ok().and_then(|_| {
        let _ = wake.write(&[1]);
        rx.recv_timeout(ANSWER_WAIT).ok()
    })
}

/// Splits an HTTP/1.x response into status code and body.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            anyhow!(
                "incomplete HTTP response ({} bytes, no end of head)",
                raw.len()
            )
        })?;
    let head = std::str::from_utf8(&raw[..end]).context("HTTP response head is not UTF-8")?;
    let status = head.lines().next().unwrap_or_default();
    let code: u16 = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {status:?}"))?;
    let mut body = &raw[end + 4..];
    let len = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    });
    if let Some(len) = len {
        if body.len() < len {
            bail!("HTTP body cut short: {} of {len} bytes", body.len());
        }
        body = &body[..len];
    }
    Ok((code, String::from_utf8_lossy(body).into_owned()))
}

/// `GET path` from a control endpoint; the body of a 200 reply.
pub fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<String> {
    request(addr, "GET", path, timeout)
}

/// `METHOD path` to a control endpoint; the body of a 200 reply.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to the balancer control endpoint {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending the request to {addr}"))?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the reply from {addr}"))?;
    let (code, body) = parse_response(&raw).with_context(|| format!("reply from {addr}"))?;
    if code != 200 {
        bail!("{addr}{path}: HTTP {code}: {}", body.trim());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        assert_eq!(
            parse_head(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Route::Stats))
        );
        assert_eq!(
            parse_head(b"GET /stats?x=1 HTTP/1.0\r\n\r\n"),
            Ok(Some(Route::Stats))
        );
        assert_eq!(
            parse_head(b"HEAD /stats HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::StatsHead))
        );
        assert_eq!(
            parse_head(b"POST /stats HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::MethodNotAllowed))
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::NotFound))
        );
        assert_eq!(
            parse_head(b"POST /drain HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::Command(Command::Drain)))
        );
        assert_eq!(
            parse_head(b"POST /weight?target=real[1]&weight=0 HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::Command(Command::Weight {
                target: Target::Real(1),
                weight: 0
            })))
        );
        assert_eq!(
            parse_head(b"POST /weight?target=rs1&weight=0 HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::BadCommand(
                "target \"rs1\": expected local or realN".into()
            )))
        );
        assert_eq!(
            parse_head(b"POST /weight?target=local&weight=70000 HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::BadCommand(
                "weight \"70000\": expected an integer 0..=65535".into()
            )))
        );
        assert_eq!(parse_head(b"GET /stats HTTP/1.1\r\n"), Ok(None));
        assert_eq!(parse_head(b"GARBAGE\r\n\r\n"), Err(400));
        assert_eq!(parse_head(b"GET /stats SPDY/3\r\n\r\n"), Err(505));
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Err(400));
        assert_eq!(parse_head(&[b'a'; MAX_HEAD]), Err(431));
    }

    #[test]
    fn responses_round_trip() {
        let r = response(200, "application/json", "{\"a\":1}\n", false);
        assert_eq!(
            parse_response(&r).unwrap(),
            (200, "{\"a\":1}\n".to_string())
        );
        let r = response(404, "text/plain", "nope", false);
        assert_eq!(parse_response(&r).unwrap().0, 404);
        let h = response(200, "text/plain", "body", true);
        assert!(String::from_utf8(h).unwrap().ends_with(
            "Content-Length: 4\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        ));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap_err()
                .to_string()
                .contains("cut short")
        );
        assert!(parse_response(b"junk").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    /// A control server on an ephemeral loopback port with a stand-in
    /// packet loop answering document requests.
    fn start_server() -> SocketAddr {
        use balancer::config::Config;
        use balancer::engine::{Balancer, Interfaces};
        use balancer::status::ProcessInfo;
        use balancer::wire::MacAddr;

        let cfg = Config::from_toml_str(
            "[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n[[real_servers]]\naddr = \"10.1.0.2\"\n",
        )
        .unwrap();
        let b = Balancer::new(
            &cfg,
            Interfaces {
                front_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                back_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            },
        )
        .unwrap();
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let waker = crate::io::sys::Waker::new().unwrap();
        spawn(l, tx, waker.handle().unwrap()).unwrap();
        // Stand-in packet loop.
        std::thread::spawn(move || loop {
            let mut fds = [libc::pollfd {
                fd: waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let _ = crate::io::sys::poll(&mut fds, Duration::from_millis(100));
            waker.drain();
            while let Ok(r) = rx.try_recv() {
                if let Request::Doc(reply) = r {
                    let _ = reply.try_send(StatusDoc {
                        snapshot: b.snapshot(),
                        process: ProcessInfo {
                            pid: 7,
                            ..Default::default()
                        },
                        membership: None,
                        health: None,
                    });
                }
            }
        });
        addr
    }

    #[test]
    fn time_left_never_returns_zero() {
        let t = Instant::now();
        let d = t + Duration::from_millis(5);
        assert_eq!(time_left(d, t), Some(Duration::from_millis(5)));
        assert_eq!(time_left(d, d), None);
        assert_eq!(time_left(t, d), None);
    }

    /// Most one request holds the endpoint: head, answer, reply and linger.
    const REQUEST_MAX: Duration = REQUEST_DEADLINE
        .saturating_add(ANSWER_WAIT)
        .saturating_add(WRITE_DEADLINE)
        .saturating_add(LINGER);

    #[test]
    fn a_trickling_client_is_cut_off_at_the_request_deadline() {
        assert_eq!(REQUEST_MAX, Duration::from_millis(4750), "module doc");
        let addr = start_server();
        // One byte of a never-ending head every 100 ms: each read returns
        // quickly, so only the overall deadline can end it.
        let mut slow = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let writer = {
            let mut w = slow.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(b"GET /stats HTTP/1.1\r\n");
                for _ in 0..100 {
                    if w.write_all(b"X").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        // A well-behaved client queued behind it is served once it is cut.
        let queued = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            let r = fetch(addr, "/stats", Duration::from_secs(10));
            (r.is_ok(), t.elapsed())
        });
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut r = Vec::new();
        let _ = slow.read_to_end(&mut r);
        let took = start.elapsed();
        assert!(
            String::from_utf8_lossy(&r).starts_with("HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&r)
        );
        assert!(took >= REQUEST_DEADLINE && took < REQUEST_MAX, "{took:?}");
        let (ok, waited) = queued.join().unwrap();
        assert!(ok);
        assert!(waited < REQUEST_MAX, "{waited:?}");
        drop(slow);
        let _ = writer.join();
    }

    #[test]
    fn server_answers_over_loopback() {
        let addr = start_server();
        let body = fetch(addr, "/stats", Duration::from_secs(2)).unwrap();
        let d: StatusDoc = serde_json::from_str(&body).unwrap();
        assert_eq!(d.process.pid, 7);
        assert_eq!(d.snapshot.service, "10.0.0.1:80");
        let e = fetch(addr, "/nope", Duration::from_secs(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTP 404"), "{e}");
        // A client that sends an endless head gets 431, and the server lives on.
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&[b'x'; MAX_HEAD]);
        let mut r = Vec::new();
        let _ = s.read_to_end(&mut r);
        assert!(String::from_utf8_lossy(&r).starts_with("HTTP/1.1 431"));
        assert!(fetch(addr, "/stats", Duration::from_secs(2)).is_ok());
    }
}
