//! Helpers for the black-box tests: spawn the compiled binary, talk raw HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running realserver, killed on drop.
pub struct Srv {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    pub startup: String,
    stderr_rest: mpsc::Receiver<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_realserver")
}

/// Starts the binary with `args` and waits (bounded) for its startup line.
pub fn start(args: &[&str]) -> Srv {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let startup = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no startup line from realserver");
    let list = startup
        .split(" listening on ")
        .nth(1)
        .and_then(|s| s.split(" (").next())
        .unwrap_or_else(|| panic!("unexpected startup line: {startup}"));
    let addrs = list.split(", ").map(|a| a.parse().unwrap()).collect();
    Srv {
        child,
        addrs,
        startup,
        stderr_rest: rx,
    }
}

impl Srv {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on the pid of our own child process.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }
    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "realserver did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Further stderr lines printed so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_rest.try_iter().collect()
    }
    /// GET /stats over a fresh connection, parsed.
    pub fn stats(&self) -> serde_json::Value {
        let resp = exchange(
            self.addr(),
            b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        let r = parse_responses(&resp, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        serde_json::from_slice(&r[0].body).unwrap()
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary expecting it to exit by itself (bounded: killed and
/// reported as `None` after 15 s): returns (exit code, stderr).
pub fn run_failing(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until EOF (the server closes); panics on a read timeout.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Writes `req` on a fresh connection and reads until the server closes it.
pub fn exchange(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    read_to_eof(&mut s)
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses consecutive responses (Content-Length framing); `head` = responses to HEAD.
pub fn parse_responses(mut buf: &[u8], head: bool) -> Vec<Resp> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let end = find(buf, b"\r\n\r\n").expect("incomplete response head");
        let text = std::str::from_utf8(&buf[..end]).unwrap();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status = parts.next().unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let mut r = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = if head {
            0
        } else {
            r.header("content-length").map_or(0, |v| v.parse().unwrap())
        };
        let body_start = end + 4;
        r.body = buf[body_start..body_start + len].to_vec();
        buf = &buf[body_start + len..];
        out.push(r);
    }
    out
}

/// Reads exactly one response (Content-Length framed) from a keep-alive connection.
pub fn read_one(s: &mut TcpStream, head: bool) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let text = std::str::from_utf8(&buf[..end])
                .unwrap()
                .to_ascii_lowercase();
            let len: usize = if head {
                0
            } else {
                text.lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap())
            };
            if buf.len() >= end + 4 + len {
                assert_eq!(buf.len(), end + 4 + len, "unexpected extra bytes");
                return parse_responses(&buf, head).remove(0);
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The default 75-byte page.
pub const PAGE: &str =
    "<html><head><title>test</title></head><body>This is a test. </body></html>\n";
